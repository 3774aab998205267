"""The index, preprocess and train stages on a synthetic tree with Dolos' shape, at a stated fraction
of Dolos' counts, at two sizes: wall time, files/s, peak RSS, CPU use (cores busy), disk.

    python benchmarks/dolos_scale.py                       # 1% and 2% of Dolos' CelebA-HQ counts, 256 px
    python benchmarks/dolos_scale.py --fractions 0.002 --size 64 --steps 2   # a smoke run of seconds

The tree: celebahq/real/{train,valid,test}/<id>.png and fake/<folder>/{images,masks}/<split>/<id>.png
for Dolos' four generator folders, RGB masks with 0 = fake and 255 = real, lossless PNGs. Images are
smooth colour fields plus pixel noise, so PNG sizes and decode costs are of a photo's order (a
noise-free field compresses far better than a face). Every stage runs as `dvc repro` runs it
(`python -m stages.<name>`, in a folder of its own with a params.yaml); the process tree's RSS is
sampled every 50 ms, CPU time is the children's user + system time. The last line holds the figures
as key=value pairs, and a projection to the full counts (linear in files for index and preprocess;
per optimizer step for training).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "valid", "test")
FOLDERS = ("repaint-p2-9k", "lama", "pluralistic", "ldm")  # Dolos' CelebA-HQ generator folders
# Dolos' CelebA-HQ counts per split, as assumed here (this machine cannot download Dolos to count them):
# 9,000 training fakes per generator (the `9k` of repaint-p2-9k), 900 valid and 900 test, and as many
# real faces. The index stage prints the real counts of an unzipped tree; scale by them.
DOLOS_COUNTS = {"train": 9000, "valid": 900, "test": 900}


def dolos_files(counts: dict[str, int] = DOLOS_COUNTS, folders=FOLDERS) -> int:
    """PNG files in a tree: real faces, and per generator an image and a mask per fake."""
    per_split = sum(counts.values())
    return per_split * (1 + 2 * len(folders))


def scaled(fraction: float, counts: dict[str, int] = DOLOS_COUNTS) -> dict[str, int]:
    return {split: max(2, round(n * fraction)) for split, n in counts.items()}


def face_like(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour field (bilinear upsampling of a coarse grid) plus sensor-like noise."""
    coarse = Image.fromarray(rng.integers(40, 220, (8, 8, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.int16)
    noise = rng.normal(0, 3, (size, size, 3)).round().astype(np.int16)
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def dolos_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """An RGB mask as Dolos ships them: 0 = fake inside an ellipse, 255 = real elsewhere."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    ry, rx = rng.uniform(0.08, 0.25, 2) * size
    fake = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return np.repeat(np.where(fake, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def write_tree(root: Path, counts: dict[str, int], size: int = 256, folders=FOLDERS, seed: int = 0) -> int:
    """A Dolos-shaped tree under `root` (the celebahq folder); returns the number of files written."""
    rng = np.random.default_rng(seed)
    files, n = 0, 0
    for split, count in counts.items():
        for _ in range(count):
            n += 1
            ident = f"{n:05d}"
            out = root / "real" / split / f"{ident}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face_like(rng, size)).save(out)
            files += 1
            for folder in folders:
                for kind, array in (("images", face_like(rng, size)), ("masks", dolos_mask(rng, size))):
                    out = root / "fake" / folder / kind / split / f"{ident}.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(out)
                    files += 1
    return files


def du(path: Path) -> int:
    """Bytes on disk under `path` (allocated blocks, as `du` counts)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def measured(command: list[str], cwd: Path) -> dict:
    """Run `command`; its wall time, the peak RSS of its whole process tree, and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, done, cpu_by_pid = [0], threading.Event(), {}

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                rss = 0
                for p in procs:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        cpu_by_pid[p.pid] = t.user + t.system
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{output[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Processes that did a real share of the work: under load (others' jobs on the same cores) CPU / wall
    # falls below 1 even when the work is spread over both cores, so count the busy processes too.
    busy = sum(1 for t in cpu_by_pid.values() if t >= 0.2 * max(cpu_by_pid.values(), default=0) and t > 0.5)
    return {"wall_s": wall, "peak_rss_mb": peak[0] / 2**20, "cpu_s": cpu, "cores_busy": cpu / wall,
            "busy_processes": busy, "load_1min": os.getloadavg()[0],
            "cpu_s_by_process": sorted((round(t, 2) for t in cpu_by_pid.values()), reverse=True)[:4],
            "output": output[-2000:]}


def stage(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"stages.{name}", *args]


def write_params(work: Path, root: Path, size: int, steps: int, batch: int) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(root)
    params["preprocess"]["size"] = size
    # init scratch: the train stage is timed alone (the pretrain stage is another stage; where a
    # model starts does not change what a step costs).
    params["train"].update(source="lama", epochs=1, steps_per_epoch=steps, batch_size=batch, init="scratch")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def step_rate(prepared: Path, steps: int, batch: int, arch: str = "unet-hp") -> dict:
    """Training images/s of the default model on the prepared lama arrays, after one warm-up step,
    at the precision `auto` picks here; and the FLOPs of one training step (forward + backward)."""
    sys.path.insert(0, str(REPO))
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.bench_train import train_step  # the step exactly as localize.training.fit takes it
    from localize.batches import ArrayPool, to_input, to_target
    from localize.config import parse_section
    from localize.losses import LOSSES
    from localize.models import ModelParams, build_model
    from localize.prepared import Prepared
    from localize.runtime import pick_precision, setup_threads

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    threads = setup_threads(None)
    device = torch.device("cpu")
    precision = pick_precision("auto", device)
    mp = parse_section(ModelParams, params["model"], "model").for_arch(arch)
    model = build_model(mp).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = LOSSES[params["train"]["loss"]]
    pool = ArrayPool([Prepared(prepared).arrays("lama", "train")])
    rng = np.random.default_rng(0)

    def one_step():
        images, masks = pool.gather(np.sort(rng.integers(0, len(pool), batch)))
        train_step(model, optimizer, loss_fn, to_input(images), to_target(masks), device, precision)

    with FlopCounterMode(display=False) as counter:
        one_step()  # also the warm-up
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    seconds = (time.perf_counter() - start) / steps
    return {"arch": arch, "precision": precision, "threads": threads, "step_s": seconds, "batch": batch,
            "images_per_s": batch / seconds, "train_flops_per_image": counter.get_total_flops() / batch}


def run_size(fraction: float, size: int, steps: int, batch: int, base: Path) -> dict:
    counts = scaled(fraction)
    work = base / f"f{fraction:g}"
    root = work / "celebahq"
    t0 = time.perf_counter()
    files = write_tree(root, counts, size)
    write_s = time.perf_counter() - t0
    write_params(work, root, size, steps, batch)
    out = {"fraction": fraction, "counts": counts, "files": files, "write_s": write_s, "tree_mb": du(root) / 2**20}
    out["index"] = measured(stage("index", "--root", str(root), "--out", "data/index.csv", "--problems",
                                  "data/index-problems.csv", "--metrics", "metrics/data.json"), work)
    out["preprocess"] = measured(stage("preprocess", "--index", "data/index.csv", "--out", "data/prepared"), work)
    out["prepared_mb"] = du(work / "data" / "prepared") / 2**20
    out["train"] = measured(stage("train", "--prepared", "data/prepared", "--models", "models", "--live", "dvclive",
                                  "--curves", "plots/curves.png", "--checkpoints", ".checkpoints"), work)
    out["rate"] = step_rate(work / "data" / "prepared", steps, batch)
    for name in ("index", "preprocess"):
        out[name]["files_per_s"] = files / out[name]["wall_s"]
    return out


def projection(big: dict, recipe_steps: int, recipe_batch: int, models: int) -> dict:
    """Full-Dolos time on this machine: index and preprocess at the larger run's seconds per file,
    training at the measured seconds per image."""
    full = dolos_files()
    out = {"files": full}
    for name in ("index", "preprocess"):
        # The larger run's seconds per file, start-up included (an upper bound): with other jobs on the
        # cores, the difference between the two sizes is too noisy to split off a fixed cost.
        out[f"{name}_s"] = big[name]["wall_s"] / big["files"] * full
        out[f"{name}_cpu_s"] = big[name]["cpu_s"] / big["files"] * full
    per_image = big["rate"]["step_s"] / big["rate"]["batch"]
    out["train_s"] = models * recipe_steps * recipe_batch * per_image
    out["disk_gb"] = (big["tree_mb"] + big["prepared_mb"]) * full / big["files"] / 1024
    return out


def report(runs: list[dict], proj: dict, recipe: tuple[int, int, int]) -> str:
    lines = []
    for r in runs:
        lines.append(f"fraction {r['fraction']:g} of Dolos ({r['counts']} per split and generator): {r['files']:,} PNG "
                     f"files, {r['tree_mb']:.0f} MB on disk (written in {r['write_s']:.0f} s); prepared arrays "
                     f"{r['prepared_mb']:.0f} MB")
        for name in ("index", "preprocess", "train"):
            m = r[name]
            rate = f", {m['files_per_s']:.0f} files/s" if "files_per_s" in m else ""
            lines.append(f"  {name:<10} {m['wall_s']:7.1f} s wall{rate}, peak RSS {m['peak_rss_mb']:.0f} MB, "
                         f"CPU {m['cpu_s']:.1f} s = {m['cores_busy']:.2f} cores busy, {m['busy_processes']} busy "
                         f"processes (CPU s of the busiest: {m['cpu_s_by_process']}), load {m['load_1min']:.1f}")
        rt = r["rate"]
        lines.append(f"  steps      {rt['arch']} {rt['precision']} {rt['threads']} threads: {rt['step_s']:.2f} s/step, "
                     f"{rt['images_per_s']:.1f} images/s, {rt['train_flops_per_image'] / 1e9:.2f} GFLOP per training "
                     "image (forward + backward)")
    steps, batch, models = recipe
    lines.append(f"projected full Dolos ({proj['files']:,} files) on this machine: "
                 f"index {proj['index_s'] / 60:.0f} min ({proj['index_cpu_s'] / 60:.0f} CPU min), "
                 f"preprocess {proj['preprocess_s'] / 60:.0f} min ({proj['preprocess_cpu_s'] / 60:.0f} CPU min), "
                 f"disk {proj['disk_gb']:.1f} GB; the Dolos recipe's "
                 f"training ({models} models x {steps:,} steps x {batch}) {proj['train_s'] / 86400:.0f} days on CPU")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.02])
    ap.add_argument("--size", type=int, default=256, help="side of the PNGs and of preprocess.size")
    ap.add_argument("--steps", type=int, default=4, help="training steps timed (and the train stage's steps)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=None, help="where the trees go (default: a temp folder, removed)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="dolos-scale-"))
    try:
        runs = []
        for fraction in sorted(args.fractions):
            runs.append(run_size(fraction, args.size, args.steps, args.batch, base))
        # The Dolos recipe (metrics/reference/dolos): 8 models, at most 25,000 steps of 32 images each.
        recipe = (25000, 32, 8)
        proj = projection(runs[-1], *recipe)
        print(report(runs, proj, recipe))
        flat = {f"{k}_{r['fraction']:g}": round(v, 3) for r in runs for k, v in (
            ("index_files_per_s", r["index"]["files_per_s"]),
            ("preprocess_files_per_s", r["preprocess"]["files_per_s"]),
            ("index_rss_mb", r["index"]["peak_rss_mb"]), ("preprocess_rss_mb", r["preprocess"]["peak_rss_mb"]),
            ("train_rss_mb", r["train"]["peak_rss_mb"]), ("index_cores", r["index"]["cores_busy"]),
            ("preprocess_cores", r["preprocess"]["cores_busy"]), ("images_per_s", r["rate"]["images_per_s"]),
            ("index_busy_processes", r["index"]["busy_processes"]),
            ("preprocess_busy_processes", r["preprocess"]["busy_processes"]))}
        flat.update({f"projected_{k}": round(v, 1) for k, v in proj.items()})
        if args.json:
            args.json.write_text(json.dumps({"runs": [{k: v for k, v in r.items()} for r in runs], "projection": proj},
                                            indent=1, default=str))
        print(" ".join(f"{k}={v}" for k, v in flat.items()))
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

