"""One prepared GPU check, in under 5 minutes on one GPU; one line per figure.

    python benchmarks/gpu_check.py            # or: benchmarks/gpu_check.sh
    python benchmarks/gpu_check.py --quick    # fewer timed steps, a smaller dvc repro

Lines (each starts with `gpu_check:`):
  1. the device: name, memory, torch and CUDA versions, GPU count;
  2. training images/s at 256 px, batch 32, for the default model (params.yaml `model`, unet-hp) and
     unet-seed, each under bf16 autocast and in fp32 (forward, Dice + BCE, backward, Adam step;
     after warm-up steps, timed between CUDA synchronisations), with that run's peak GPU memory;
  3. torchrun with nccl, one process per GPU: an all_reduce checked for its value, then DDP steps of the
     default model at 256 px, with images/s over all processes;
  4. a tiny `dvc repro` (demo data -> index -> preprocess -> train on cuda -> evaluate) in a temporary
     copy of the project, which ends by printing its metrics/table.md;
  5. the peak GPU memory of the whole check.
On a machine without CUDA it prints one line, `gpu_check: no CUDA device ...`, and exits 0.
A figure that fails prints `gpu_check: FAILED <what>: <why>` and the check goes on; the exit status is 1
if any figure failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE, BATCH = 256, 32
# What a tiny `dvc repro` copies, and the params that make it tiny (cf. tests/test_pipeline_dvc.py).
COPIED = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", "stages", "localize"]


def say(text: str) -> None:
    print(f"gpu_check: {text}", flush=True)


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check (None: it can)."""
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return ("no CUDA device (torch " + torch.__version__ + (f", built for CUDA {built}" if built else
                ", a CPU-only build") + "); nothing to measure, the check is ready for a GPU machine")
    return None


def default_model(arch: str | None = None):
    import yaml

    from localize.config import parse_section
    from localize.models import ModelParams
    mp = parse_section(ModelParams, yaml.safe_load((REPO / "params.yaml").read_text())["model"], "model")
    if not arch:
        return mp
    mp = mp.for_arch(arch)
    return replace(mp, width=32) if arch == "unet-seed" else mp  # the seed's width (metrics/reference/unet-seed)


def train_rate(arch: str | None, precision: str, steps: int, warmup: int = 3, device: str = "cuda") -> dict:
    """Images/s of full training steps at 256 px, batch 32, on random inputs and masks."""
    from localize.losses import LOSSES
    from localize.models import build_model
    from localize.runtime import autocast
    dev = torch.device(device)
    mp = default_model(arch)
    model = build_model(mp).to(dev).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = LOSSES["dice-bce"]
    x = torch.randn(BATCH, 3, SIZE, SIZE, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(BATCH, 1, SIZE, SIZE, device=dev) > 0.8).float()
    torch.cuda.reset_peak_memory_stats(dev)

    def step():
        with autocast(dev, precision):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    return {"arch": mp.arch, "width": mp.width, "precision": precision, "images_per_s": steps * BATCH / seconds,
            "peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20}


def ddp_worker(steps: int) -> None:
    """One torchrun process: nccl all_reduce, then DDP training steps of the default model."""
    import torch.distributed as dist
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    dev = torch.device("cuda", local)
    value = torch.tensor([rank + 1.0], device=dev)
    dist.all_reduce(value)
    expected = world * (world + 1) / 2
    from localize.losses import LOSSES
    from localize.models import build_model
    from localize.runtime import autocast
    model = build_model(default_model()).to(dev).to(memory_format=torch.channels_last)
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local])
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    share = BATCH // world or 1
    x = torch.randn(share, 3, SIZE, SIZE, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(share, 1, SIZE, SIZE, device=dev) > 0.8).float()
    timed = 0.0
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize(dev)
            dist.barrier()
            start = time.perf_counter()
        with autocast(dev, "bf16"):
            logits = ddp(x)
        loss = LOSSES["dice-bce"](logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize(dev)
    dist.barrier()
    timed = time.perf_counter() - start
    if rank == 0:
        ok = "ok" if abs(value.item() - expected) < 1e-6 else f"WRONG ({value.item()} != {expected})"
        say(f"torchrun nccl: {world} process(es), one per GPU, all_reduce {ok}; DDP {default_model().arch} "
            f"{SIZE}px bf16, global batch {share * world}: {steps * share * world / timed:.0f} images/s")
    dist.destroy_process_group()


def torchrun_check(steps: int) -> bool:
    gpus = torch.cuda.device_count()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               str(Path(__file__).resolve()), "--ddp-worker", "--steps", str(steps)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    print(proc.stdout, end="", flush=True)
    if proc.returncode:
        say(f"FAILED torchrun nccl ({gpus} processes, exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        return False
    return True


def tiny_repro(quick: bool) -> bool:
    """`dvc repro evaluate` of the tiny demo pipeline, training on cuda, in a temporary copy."""
    import yaml
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in COPIED:
            src, dst = REPO / name, root / name
            if not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy(src, dst)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["demo"].update(size=64, max_faces=12 if quick else 30)
        params["preprocess"]["size"] = 64
        params["train"].update(epochs=2, steps_per_epoch=5, batch_size=16, device="cuda", precision="bf16",
                               source="table")
        params["evaluate"].update(overlay_images=2, bootstrap=100)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        git = ["git", "-c", "user.name=check", "-c", "user.email=check@localhost"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "tiny"]):
            subprocess.run(git[:1] + args if args[0] == "init" else git + args, cwd=root, check=True,
                           capture_output=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "evaluate"], cwd=root, capture_output=True,
                              text=True, timeout=240)
        wall = time.perf_counter() - start
        if proc.returncode:
            say(f"FAILED tiny dvc repro (exit {proc.returncode}): {(proc.stdout + proc.stderr).strip()[-1500:]}")
            return False
        trained_on = "cuda" if "on cuda" in proc.stdout + proc.stderr else "NOT cuda"
        say(f"tiny dvc repro (demo {params['demo']['max_faces']} faces, 64px, 10 models x 10 steps, trained on "
            f"{trained_on}): {wall:.0f} s; its table:")
        print((root / "metrics" / "table.md").read_text(), flush=True)
        return trained_on == "cuda"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer timed steps and a smaller dvc repro")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per figure (default 30, quick 10)")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    steps = args.steps or (10 if args.quick else 30)
    reason = no_cuda_reason()
    if reason:
        say(reason)
        return 0
    if args.ddp_worker:
        ddp_worker(steps)
        return 0
    started = time.perf_counter()
    props = torch.cuda.get_device_properties(0)
    say(f"device {props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} GPU(s), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}")
    torch.backends.cudnn.benchmark = True
    failed = []
    peak = 0.0
    for arch in (None, "unet-seed"):
        for precision in ("bf16", "fp32"):
            try:
                r = train_rate(arch, precision, steps)
                peak = max(peak, r["peak_mb"])
                say(f"train {r['arch']} width {r['width']} {SIZE}px batch {BATCH} {precision}"
                    f"{' autocast' if precision != 'fp32' else ''}: {r['images_per_s']:.0f} images/s, "
                    f"peak GPU memory {r['peak_mb']:.0f} MiB")
            except Exception as e:  # one figure's failure must not hide the others
                failed.append(f"{arch or 'default'} {precision}")
                say(f"FAILED train {arch or 'default'} {precision}: {type(e).__name__}: {e}")
            torch.cuda.empty_cache()
    if not torchrun_check(steps):
        failed.append("torchrun")
    if not tiny_repro(args.quick):
        failed.append("dvc repro")
    say(f"peak GPU memory of the in-process figures: {peak:.0f} MiB "
        f"(of {props.total_memory / 2**20:.0f}); whole check {time.perf_counter() - started:.0f} s")
    if failed:
        say(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
