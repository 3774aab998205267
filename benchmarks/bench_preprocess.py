"""Benchmark: index + preprocess on a Dolos-shaped tree, against plain one-process Pillow decoding.

    python benchmarks/bench_preprocess.py                 # 4000 images at 256x256 (+ 3200 masks)
    python benchmarks/bench_preprocess.py --images 500    # a quick look
    python benchmarks/bench_preprocess.py --dir /tmp/bench   # keep the tree there; reruns reuse it

Fabricates real/ and the four Dolos generator folders (repaint-p2-9k, lama, ldm,
pluralistic) with RGB masks (0 = fake) in a temporary folder. The images are smooth
noise, gradients and sensor-like grain, so PNG compresses them about as much as a
photo (~100 kB each at 256x256), not like flat colour. Then it times:

- the index and preprocess stages through their run() functions, on every core;
- decoding the same PNGs (images and masks) with Pillow in one process: the plain cost.

and samples the resident memory of this process and all its children during the
stages. The last line is `preprocess_vs_decode=<ratio> peak_rss_mb=<n>`, where the ratio
is the stages' throughput over plain decoding's (goal >= 1.5: both cores earn their
keep) and the peak is the summed RSS of the process tree (goal <= 1 GB). Summed RSS
counts pages shared after fork once per process, so it overstates the real peak.
This is a benchmark, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from localize import indexing, preprocessing  # noqa: E402
from localize.runtime import available_cores  # noqa: E402

FOLDERS = ("repaint-p2-9k", "lama", "ldm", "pluralistic")
SPLIT_SHARES = (("train", 0.8), ("valid", 0.1), ("test", 0.1))


# ---- fabricating the tree ----


def photo_like(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour fields + a gradient + grain: compresses like a photo, not like flat colour."""
    coarse = cv2.resize(rng.random((6, 6, 3), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    detail = cv2.resize(rng.random((size // 8, size // 8, 3), dtype=np.float32), (size, size),
                        interpolation=cv2.INTER_LINEAR)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    gradient = (ramp[None, :, None] * rng.random(3, dtype=np.float32)
                + ramp[:, None, None] * rng.random(3, dtype=np.float32))
    img = 255 * (0.55 * coarse + 0.25 * detail + 0.2 * gradient) + rng.normal(0, 3.0, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def dolos_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """An RGB Dolos mask: 255 = real, 0 = fake, a few ellipses and strokes over ~3-40% of the image."""
    fake = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 4)):
        centre = tuple(int(v) for v in rng.integers(size // 5, 4 * size // 5, 2))
        axes = tuple(int(v) for v in rng.integers(size // 16, size // 5, 2))
        cv2.ellipse(fake, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    points = rng.integers(size // 8, 7 * size // 8, (4, 2)).astype(np.int32)
    cv2.polylines(fake, [points], False, 1, int(rng.integers(size // 40 + 1, size // 12 + 2)))
    grey = np.where(fake == 1, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _write_one(task: tuple[str, str, int, int]) -> None:
    image, mask, size, seed = task
    rng = np.random.default_rng(seed)
    Image.fromarray(photo_like(rng, size)).save(image)  # Pillow's default PNG settings, like most datasets
    if mask:
        Image.fromarray(dolos_mask(rng, size)).save(mask)


def fabricate(root: Path, images: int, size: int, seed: int) -> tuple[list[str], list[str]]:
    """A Dolos-layout tree of `images` images (a fifth real, the rest split over four generators)."""
    per_group = images // (1 + len(FOLDERS))
    counts = {s: int(per_group * share) for s, share in SPLIT_SHARES}
    counts["train"] += per_group - sum(counts.values())
    tasks = []
    for g, folder in enumerate(("real", *FOLDERS)):
        for split, n in counts.items():
            if folder == "real":
                dirs = (root / "real" / split, None)
            else:
                dirs = (root / "fake" / folder / "images" / split, root / "fake" / folder / "masks" / split)
            for d in dirs:
                if d is not None:
                    d.mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                name = f"{g * 100000 + len(tasks):06d}.png"
                mask = str(dirs[1] / name) if dirs[1] else ""
                tasks.append((str(dirs[0] / name), mask, size, seed * 1_000_003 + len(tasks)))
    with multiprocessing.Pool() as pool:
        for done, _ in enumerate(pool.imap_unordered(_write_one, tasks, chunksize=16), 1):
            if done % 500 == 0:
                print(f"  fabricated {done}/{len(tasks)}", file=sys.stderr)
    return [t[0] for t in tasks], [t[1] for t in tasks if t[1]]


# ---- measuring ----


class PeakRSS:
    """Samples the summed RSS of this process and all its descendants in a background thread."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # a child that just ended
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_stall_total() -> float | None:
    """Linux PSI: total seconds in which some runnable task waited for a CPU (None if unavailable)."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(some.split("total=")[1]) / 1e6


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def free_cores(workers: int, n: int = 2_000_000) -> float:
    """How many cores this machine gives us right now: pure-Python work on 1 process vs `workers`."""
    start = time.perf_counter()
    for _ in range(workers):
        _spin(n)
    one = time.perf_counter() - start
    with multiprocessing.Pool(workers) as pool:
        start = time.perf_counter()
        pool.map(_spin, [n] * workers)
        many = time.perf_counter() - start
    return one / many


def plain_decode(paths: list[str]) -> float:
    """Seconds to decode every file with Pillow in this one process."""
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            img.load()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="images in the tree (masks come on top)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the PNGs (Dolos: 256)")
    parser.add_argument("--size", type=int, default=64, help="preprocess.size")
    parser.add_argument("--workers", type=int, default=0, help="index/preprocess workers; 0 = every core")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-dir", action="store_true", help="keep the fabricated tree and outputs")
    parser.add_argument("--dir", type=Path, help="work in this folder and keep it; a tree already there "
                                                 "is reused (--images and --image-size are then ignored)")
    args = parser.parse_args()

    keep = args.keep_dir or args.dir is not None
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        root = tmp / "celebahq"
        start = time.perf_counter()
        if root.is_dir():
            images = sorted(str(p) for p in root.glob("real/*/*.png")) + \
                sorted(str(p) for p in root.glob("fake/*/images/*/*.png"))
            masks = sorted(str(p) for p in root.glob("fake/*/masks/*/*.png"))
        else:
            images, masks = fabricate(root, args.images, args.image_size, args.seed)
        files = images + masks
        mb = sum(os.path.getsize(p) for p in files) / 2**20
        print(f"tree: {len(images)} images + {len(masks)} masks at {args.image_size}px, {mb:.0f} MB, "
              f"mean image {sum(os.path.getsize(p) for p in images) / len(images) / 1024:.0f} kB, "
              f"made in {time.perf_counter() - start:.0f} s under {tmp}")
        for p in files:  # warm the page cache, so both contenders read from memory
            Path(p).read_bytes()

        workers = args.workers or available_cores()  # 0 = every core, as the stages read it
        cores_before = free_cores(workers)
        stall0 = cpu_stall_total()
        cpu0 = cpu_seconds()
        t_decode = plain_decode(files)
        cpu_decode = cpu_seconds() - cpu0
        stall1 = cpu_stall_total()
        with PeakRSS() as rss:
            cpu0 = cpu_seconds()
            start = time.perf_counter()
            indexing.run(root, tmp / "index.csv", tmp / "problems.csv", tmp / "data.json",
                         indexing.IndexParams(workers=args.workers))
            t_index = time.perf_counter() - start
            start = time.perf_counter()
            preprocessing.run(tmp / "index.csv", tmp / "prepared",
                              preprocessing.PreprocessParams(size=args.size, workers=args.workers))
            t_pre = time.perf_counter() - start
            cpu_stages = cpu_seconds() - cpu0  # workers are reaped by now, so their time is counted
        cores_after = free_cores(workers)

        n = len(images)
        t_stages = t_index + t_pre
        ratio = t_decode / t_stages
        print(f"plain Pillow decode, 1 process: {t_decode:6.1f} s {n / t_decode:6.0f} images/s "
              f"({len(files)} PNGs: images and masks)")
        print(f"index, {workers} workers:           {t_index:6.1f} s {n / t_index:6.0f} images/s")
        print(f"preprocess, {workers} workers, {args.size}px: {t_pre:6.1f} s {n / t_pre:6.0f} images/s")
        print(f"index + preprocess:             {t_stages:6.1f} s {n / t_stages:6.0f} images/s")
        print(f"CPU seconds: plain decode {cpu_decode:.1f}, index + preprocess {cpu_stages:.1f} "
              f"(all processes); with {workers} free cores the ratio could reach "
              f"{workers * cpu_decode / cpu_stages:.2f}")
        print(f"one-process decode got {cpu_decode / t_decode:.0%} of a core", end="")
        if stall0 is not None:
            # While only this one process runs, any wait for a CPU is caused by other work.
            print(f"; runnable work waited for a CPU {(stall1 - stall0) / t_decode:.0%} of that time", end="")
        print(": well below 100% / well above 0% means other work on the machine disturbed the timings")
        print(f"{workers} processes of pure-Python work ran {cores_before:.2f}x (before) and "
              f"{cores_after:.2f}x (after) as fast as one: that many cores were really free")
        if keep:
            print(f"kept {tmp}")
        print(f"preprocess_vs_decode={ratio:.2f} peak_rss_mb={rss.peak / 2**20:.0f}")
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
