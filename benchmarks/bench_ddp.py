"""Training throughput with 1 and N processes: DDP (train.distribute=data) against one process.

    python benchmarks/bench_ddp.py                       # 64² and 128², 1 and 2 processes, this machine
    python benchmarks/bench_ddp.py --size 256 --procs 1 2 4 --device cuda --batch 32

For each process count it runs `localize.training.fit` exactly as the train stage does
(processes started with torchrun, gloo on CPU, nccl on CUDA) on random uint8 arrays held
in memory-mapped files, for 1 warm-up epoch and `--epochs` timed ones, and prints rank 0's
training images/s (global batch × steps / epoch seconds; validation left out). On the last
line: `key=value` pairs, with each count's images/s and its speedup over 1 process.
CPU processes split the cores evenly (the stage's default); CUDA processes get a GPU each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `localize` importable without installing it
    sys.path.insert(0, str(ROOT))

from localize import distributed  # noqa: E402
from localize.config import parse_section  # noqa: E402
from localize.models import ModelParams  # noqa: E402
from localize.runtime import Runtime, pick_device, pick_precision, setup_threads  # noqa: E402
from localize.training import SplitData, TrainParams, fit  # noqa: E402


def make_arrays(folder: Path, n: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    np.save(folder / "images.npy", rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, size // 4 : size // 2, size // 4 : size // 2] = 1
    np.save(folder / "masks.npy", masks)
    return [(np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "masks.npy", mmap_mode="r"))]


def worker(args: argparse.Namespace) -> None:
    ranks = distributed.from_env()
    threads = setup_threads(None, processes=ranks.local_world)
    device = distributed.local_device(pick_device(args.device), ranks)
    precision = pick_precision(args.precision, device)
    distributed.init(ranks, device)
    try:
        data = Path(args.data)
        pairs = [(np.load(data / "images.npy", mmap_mode="r"), np.load(data / "masks.npy", mmap_mode="r"))]
        # real 0: the fabricated set has fakes only (the loop's cost per step does not depend on it).
        tp = parse_section(TrainParams, {"epochs": 1 + args.epochs, "steps_per_epoch": args.steps,
                                         "batch_size": args.batch, "precision": precision, "real": 0.0}, "train")
        stamps: list[float] = []
        start = time.perf_counter()
        fit("bench", SplitData(train=pairs, valid=[]), ModelParams(arch=args.arch, width=args.width), tp,
            Runtime(device, precision, threads), group=ranks, verbose=False,
            on_epoch=lambda row: stamps.append(time.perf_counter()))
        epochs = np.diff([start, *stamps])[1:]  # the first epoch is the warm-up
        if ranks.main:
            print(json.dumps({"procs": ranks.world, "device": str(device.type), "precision": precision,
                              "threads": threads, "epoch_s": [round(float(e), 3) for e in epochs],
                              "images_per_s": args.batch * args.steps / statistics.median(epochs)}))
    finally:
        distributed.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=16, help="global batch, as train.batch_size")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--arch", default="unet-seed")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.size = args.size[0]
        return worker(args)

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.size:
            make_arrays(Path(tmp), args.images, size)
            base = None
            for procs in args.procs:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", tmp, "--size", str(size),
                       "--batch", str(args.batch), "--steps", str(args.steps), "--epochs", str(args.epochs),
                       "--arch", args.arch, "--width", str(args.width), "--device", args.device,
                       "--precision", args.precision]
                if procs > 1:
                    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={procs}", *cmd[1:]]
                out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                if out.returncode:
                    sys.exit(f"{procs} processes at {size}² failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                base = base or result["images_per_s"]
                print(f"{size}² procs={procs} {result['device']} {result['precision']} "
                      f"threads/proc={result['threads']} epoch_s={result['epoch_s']} "
                      f"images/s={result['images_per_s']:.1f} speedup={result['images_per_s'] / base:.2f}")
                figures[f"ips_{size}_p{procs}"] = round(result["images_per_s"], 1)
                figures[f"speedup_{size}_p{procs}"] = round(result["images_per_s"] / base, 2)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    torch.set_num_threads(1)  # the parent only launches; the workers set their own threads
    main()
