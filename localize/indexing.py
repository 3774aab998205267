"""List every image of a Dolos-layout tree, check it, and write data/index.csv.

The `index` stage's work; stages/index.py is its command line.

    <root>/real/<split>/<id>.png
    <root>/fake/<folder>/images/<split>/<id>.png
    <root>/fake/<folder>/masks/<split>/<id>.png      0 = fake, 255 = real (RGB or L)

Folders map to the short names users type (localize.layout.generator_name). Dolos' fully
generated `fake/p2` (images, no masks) is indexed as `p2` with no mask, for weak training
only (setup A); other folders without images/ and masks/ are ignored with a note, and any
subset (a generator, a split, real/) may be missing.

Checks are cheap but real: each image's header, size and mode, and every PNG chunk's
CRC (so truncated and damaged files show) without decoding the pixels; masks, flat and
cheap to decode, are decoded in full for the fake fraction and the grey-value count.
Every problem goes, with its path, into the problems report, which is written
whatever happens. `on_error: fail` stops with a summary and writes no index;
`on_error: skip` drops the bad pairs and counts them in the metrics.

Every file is read through localize.imageio's bounded readers: a header that declares
more than `index.max_pixels` pixels is refused before anything is decoded, and a mask
whose header size differs from its image's is refused before its decode too.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from localize.atomic import atomic_file
from localize.imageio import (
    MAX_FILE_BYTES_PER_PIXEL,
    ImageReadError,
    ImageSizeError,
    ImageTooLargeError,
    check_image,
    fake_from_channel0,
    is_image_file,
    load_mask_channel0,
)
from localize.index_csv import INDEX_COLUMNS, printable, unstorable
from localize.layout import DOLOS_FOLDERS, FULLY_GENERATED, REAL, SPLITS, generator_name
from localize.params import IndexParams
from localize.process_pool import ordered_map
from localize.runtime import available_cores

PROBLEM_COLUMNS = ["severity", "kind", "generator", "split", "path", "problem"]
ERROR, NOTE = "error", "note"


class IndexDataError(ValueError):
    """The data root cannot be indexed as it is; the message says what to fix."""


@dataclass(frozen=True)
class Problem:
    severity: str  # ERROR stops (or drops the pair); NOTE is reported and the run goes on
    kind: str
    generator: str
    split: str
    path: str
    problem: str
    id: str = ""  # the pair this problem belongs to, so skip mode can drop it

    def row(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in PROBLEM_COLUMNS}


@dataclass(frozen=True)
class Pair:
    generator: str
    split: str
    id: str
    image: str
    mask: str  # "" for real images


# ---- scanning the tree: cheap, in this process ----


def _link_problem(path: str | Path) -> tuple[str, str] | None:
    """(kind, text) for a symlink that leads to no file: dangling, or a loop. None for anything else."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
        return None
    except OSError as e:
        try:
            target = printable(os.readlink(path))
        except OSError:
            target = "?"
        if e.errno == errno.ELOOP:
            return "symlink-loop", f"symlink loop: {target} leads back to itself and never reaches a file"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken-symlink", f"broken symlink → {target} (no such file)"
        return None  # a target that exists but cannot be read: the read reports it


def _usable_folder(path: Path, generator: str, split: str, problems: list[Problem]) -> bool:
    """True if `path` is a folder; a symlink to nowhere is an error row (not a missing folder)."""
    link = _link_problem(path)
    if link is not None:
        problems.append(Problem(ERROR, link[0], generator, split, printable(str(path)), link[1]))
        return False
    return path.is_dir()


def _list_split(folder: Path, generator: str, split: str,
                problems: list[Problem]) -> tuple[dict[str, list[str]], set[str]] | None:
    """Image files by id (file stem) in one split folder, and the ids of image files that cannot be used.

    Unusable: a symlink that leads nowhere, a name that cannot be stored one per line.
    They are errors naming the file; their ids are still returned, so their partner (the
    mask of a broken image, say) is not reported a second time as an orphan. Anything
    else that is not an image is noted and ignored. None if the folder cannot be listed.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        problems.append(Problem(ERROR, "unreadable", generator, split, printable(str(folder)),
                                f"folder cannot be listed ({e.strerror or e})"))
        return None
    files: dict[str, list[str]] = defaultdict(list)
    unusable: set[str] = set()
    for entry in entries:
        path = str(folder / entry.name)
        shown = printable(path)
        stem = Path(entry.name).stem
        image_name = is_image_file(entry.name)
        if entry.name.startswith("."):
            problems.append(Problem(NOTE, "ignored", generator, split, shown, "hidden file: ignored"))
            continue
        if image_name and unstorable(entry.name):
            problems.append(Problem(ERROR, "bad-name", generator, split, shown,
                                    "file name holds a newline, another control character or bytes that are not "
                                    "text, so it cannot be stored one per line: rename the file", stem))
            unusable.add(stem)
            continue
        link = _link_problem(path)
        if link is not None:
            if image_name:
                problems.append(Problem(ERROR, link[0], generator, split, shown, link[1], stem))
                unusable.add(stem)
            else:
                problems.append(Problem(NOTE, "ignored", generator, split, shown, f"{link[1]}: ignored"))
            continue
        try:
            is_file = entry.is_file()
        except OSError as e:
            problems.append(Problem(ERROR, "unreadable", generator, split, shown,
                                    f"cannot be read ({e.strerror or e})", stem if image_name else ""))
            if image_name:
                unusable.add(stem)
            continue
        if not is_file or not image_name:
            what = "folder" if entry.is_dir() else "not an image file"
            problems.append(Problem(NOTE, "ignored", generator, split, shown, f"{what}: ignored"))
            continue
        files[stem].append(path)
    return files, unusable


def _duplicates(files: dict[str, list[str]], generator: str, split: str, problems: list[Problem]) -> set[str]:
    """Ids that more than one file claims (`a.png` and `a.jpg`): which one is meant is unknown."""
    dup = {i for i, paths in files.items() if len(paths) > 1}
    for i in sorted(dup):
        names = ", ".join(Path(p).name for p in files[i])
        for p in files[i]:
            problems.append(Problem(ERROR, "duplicate-id", generator, split, p,
                                    f"id '{i}' is claimed by {len(files[i])} files ({names})", i))
    return dup


def _scan_real(root: Path, problems: list[Problem]) -> list[Pair]:
    real = root / "real"
    if not _usable_folder(real, REAL, "", problems):
        if _link_problem(real) is None:
            problems.append(Problem(NOTE, "missing", REAL, "", str(real),
                                    "no real/ folder: no real faces indexed"))
        return []
    return _scan_unmasked(real, REAL, problems)


def _scan_unmasked(folder: Path, name: str, problems: list[Problem]) -> list[Pair]:
    """Images without masks, <folder>/<split>/<id>.*: real faces, or fully generated ones."""
    pairs = []
    for split in SPLITS:
        split_dir = folder / split
        if not _usable_folder(split_dir, name, split, problems):
            if _link_problem(split_dir) is None:
                problems.append(Problem(NOTE, "missing", name, split, str(split_dir), "split folder not found"))
            continue
        listed = _list_split(split_dir, name, split, problems)
        if listed is None:
            continue
        files, unusable = listed
        if not files and not unusable:
            problems.append(Problem(ERROR, "empty-split", name, split, str(split_dir),
                                    "split folder holds no images"))
        dup = _duplicates(files, name, split, problems)
        pairs += [Pair(name, split, i, files[i][0], "") for i in sorted(files) if i not in dup]
    return pairs


def _scan_fully_generated(fake: Path, problems: list[Problem]) -> list[Pair]:
    """Dolos' fake/p2: fully generated faces, no masks (every pixel is fake), for setup A."""
    folder = fake / FULLY_GENERATED
    if _link_problem(folder) is not None or not folder.is_dir():
        return []
    if (folder / "images").is_dir():  # the inpainting sets' layout, without masks/
        folder = folder / "images"
    problems.append(Problem(NOTE, "fully-generated", FULLY_GENERATED, "", str(fake / FULLY_GENERATED),
                            "fully generated faces, no masks: indexed as 'p2' for weak training only "
                            "(train.source=p2 with train.supervision=weak), never a localization test set"))
    return _scan_unmasked(folder, FULLY_GENERATED, problems)


# Names the tables and splits use themselves: a generator called so would collide with them.
RESERVED = {"mean": "a column of every table", "baselines": "a row of metrics/scores.json",
            "all": "the split that pools every generator", "table": "the train.source of the whole table",
            "clean": "the unperturbed column of the robustness table"}


def reserved(name: str) -> str | None:
    """Why a generator may not have this name (it collides with a table column or split), or None."""
    if name.startswith("no-"):
        return "no-<generator> names the leave-one-out splits"
    return RESERVED.get(name)


def _fake_folders(fake: Path, problems: list[Problem]) -> dict[str, Path]:
    """Generator name -> its folder. Folders that cannot be inpainting sets are noted and ignored."""
    candidates: dict[str, list[Path]] = defaultdict(list)
    for entry in sorted(fake.iterdir()):
        link = _link_problem(entry)
        if link is not None:
            problems.append(Problem(ERROR, link[0], entry.name, "", printable(str(entry)), link[1]))
        elif unstorable(entry.name):
            problems.append(Problem(ERROR, "bad-name", printable(entry.name), "", printable(str(entry)),
                                    "folder name holds a newline, another control character or bytes that are "
                                    "not text, so it cannot name a generator: rename the folder"))
        elif not entry.is_dir():
            problems.append(Problem(NOTE, "ignored", "", "", str(entry), "not a generator folder: ignored"))
        elif entry.name == FULLY_GENERATED:
            continue  # scanned on its own (_scan_fully_generated): it has no masks
        elif not (entry / "images").is_dir() and not (entry / "masks").is_dir():
            problems.append(Problem(NOTE, "ignored", entry.name, "", str(entry),
                                    "no images/ and masks/ subfolders (only fake/p2, Dolos' fully generated faces, "
                                    "is read without masks): not used for localization"))
        elif generator_name(entry.name) == REAL:
            problems.append(Problem(NOTE, "ignored", entry.name, "", str(entry),
                                    f"a generator may not be called '{REAL}': ignored"))
        elif reserved(generator_name(entry.name)):
            problems.append(Problem(ERROR, "reserved-name", entry.name, "", str(entry),
                                    f"a generator may not be called '{generator_name(entry.name)}': "
                                    f"{reserved(generator_name(entry.name))}; rename the folder"))
        else:
            candidates[generator_name(entry.name)].append(entry)
    # Dolos' CelebA-HQ part may hold both repaint-p2-9k and the older repaint-p2: keep the
    # one listed first in DOLOS_FOLDERS (the 9k set, the size of the other generators).
    order = list(DOLOS_FOLDERS)
    chosen = {}
    for name, folders in candidates.items():
        folders.sort(key=lambda f: (order.index(f.name) if f.name in order else len(order), f.name))
        chosen[name] = folders[0]
        for other in folders[1:]:
            problems.append(Problem(NOTE, "ignored", name, "", str(other),
                                    f"also maps to '{name}'; using {folders[0].name}"))
    return dict(sorted(chosen.items()))


def _scan_fake(name: str, folder: Path, problems: list[Problem]) -> list[Pair]:
    pairs = []
    for split in SPLITS:
        img_dir, mask_dir = folder / "images" / split, folder / "masks" / split
        links = [d for d in (img_dir, mask_dir) if _link_problem(d) is not None]
        has_images = _usable_folder(img_dir, name, split, problems)
        has_masks = _usable_folder(mask_dir, name, split, problems)
        if links:  # reported: the split cannot be paired
            continue
        if not has_images and not has_masks:
            problems.append(Problem(NOTE, "missing", name, split, str(img_dir), "split folder not found"))
            continue
        listed_images = _list_split(img_dir, name, split, problems) if has_images else ({}, set())
        listed_masks = _list_split(mask_dir, name, split, problems) if has_masks else ({}, set())
        if listed_images is None or listed_masks is None:
            continue
        (images, bad_images), (masks, bad_masks) = listed_images, listed_masks
        unusable = bad_images | bad_masks
        if not images and not bad_images:
            problems.append(Problem(ERROR, "empty-split", name, split, str(img_dir),
                                    "split folder holds no images" if has_images else
                                    "masks exist but the images folder is missing"))
        bad = _duplicates(images, name, split, problems) | _duplicates(masks, name, split, problems)
        for i in sorted(images.keys() - masks.keys() - unusable):
            problems.append(Problem(ERROR, "missing-mask", name, split, images[i][0],
                                    f"image without a mask (no {mask_dir}/{i}.*)", i))
        for i in sorted(masks.keys() - images.keys() - unusable):
            problems.append(Problem(ERROR, "missing-image", name, split, masks[i][0],
                                    f"mask without an image (no {img_dir}/{i}.*)", i))
        pairs += [Pair(name, split, i, images[i][0], masks[i][0])
                  for i in sorted(images.keys() & masks.keys()) if i not in bad and i not in unusable]
    return pairs


def _ids_in_several_splits(pairs: list[Pair], problems: list[Problem]) -> None:
    """An id in two splits of one generator may be a train/test leak; noted, not fatal."""
    splits: dict[tuple[str, str], list[Pair]] = defaultdict(list)
    for p in pairs:
        splits[p.generator, p.id].append(p)
    for (gen, i), ps in sorted(splits.items()):
        if len(ps) > 1:
            names = ", ".join(p.split for p in ps)
            for p in ps:
                problems.append(Problem(NOTE, "id-in-several-splits", gen, p.split, p.image,
                                        f"id '{i}' is in splits {names}: possible leak between splits"))


def scan(root: Path, problems: list[Problem]) -> list[Pair]:
    """Every candidate pair under root, in (generator, split, id) order; layout problems go to `problems`."""
    link = _link_problem(root)
    if link is not None:
        raise IndexDataError(f"data root {root}: {link[1]}; set data.root to the folder that holds real/ and fake/")
    if not root.is_dir():
        raise IndexDataError(f"data root {root} not found (or not a folder): set data.root to the folder "
                             "that holds real/ and fake/, e.g. <unzipped Dolos>/celebahq")
    fake = root / "fake"
    link = _link_problem(fake)
    if link is not None:
        raise IndexDataError(f"{fake}: {link[1]}")
    hint = ""
    if any((root / part / "fake").is_dir() for part in ("celebahq", "ffhq")):
        hint = f"; it holds celebahq/ or ffhq/: point data.root at one of those, e.g. {root / 'celebahq'}"
    if not fake.is_dir():
        raise IndexDataError(f"{root} has no fake/ folder, so no generator to index{hint}")
    folders = _fake_folders(fake, problems)
    if not folders:
        raise IndexDataError(f"{fake} holds no generator folder with images/ and masks/ "
                             "(e.g. fake/lama/images/train and fake/lama/masks/train)")
    pairs = _scan_real(root, problems) + _scan_fully_generated(fake, problems)
    for name, folder in folders.items():
        pairs += _scan_fake(name, folder, problems)
    _ids_in_several_splits(pairs, problems)
    return sorted(pairs, key=lambda p: (p.generator, p.split, p.id))


# ---- checking files: runs in worker processes ----


def _kind(e: ImageReadError) -> str:
    return "too-large" if isinstance(e, ImageTooLargeError) else "unreadable"


def check_pair(task: tuple[str, str, int, int]) -> dict[str, Any]:
    """Check one image (and its mask, "" for real): size, mode, integrity, fake fraction, grey values.

    No file is decoded whose header declares more than `max_pixels` pixels, and no mask whose
    header size differs from its image's. Returns plain data (it travels back from a worker):
    width, height, fake_fraction, and problems as (severity, kind, path, text) tuples.
    """
    image, mask, max_pixels, max_file_bytes_per_pixel = task
    out: dict[str, Any] = {"width": 0, "height": 0, "fake_fraction": 0.0, "problems": []}
    try:
        info = check_image(image, max_pixels, max_file_bytes_per_pixel)
    except ImageReadError as e:
        out["problems"].append((ERROR, _kind(e), image, e.problem))
        info = None
    else:
        out["width"], out["height"] = info.width, info.height
        if not info.is_rgb:
            what = f"mode {info.mode}" + (" with a transparent colour" if info.transparency else "")
            out["problems"].append((NOTE, "not-rgb", image, f"image is {what}, not RGB: "
                                    "converted to RGB (transparent parts on white)"))
    if not mask:
        return out
    try:
        # A full decode, with the same integrity checks, once the header has passed.
        channel0 = load_mask_channel0(mask, max_pixels=max_pixels,
                                      expected=None if info is None else (info.width, info.height),
                                      max_file_bytes_per_pixel=max_file_bytes_per_pixel)
    except ImageSizeError as e:
        (w, h), (iw, ih) = e.size, e.expected
        out["problems"].append((ERROR, "size-mismatch", mask, f"mask is {w}x{h} but its image is {iw}x{ih}"))
        return out
    except ImageReadError as e:
        out["problems"].append((ERROR, _kind(e), mask, e.problem))
        return out
    h, w = channel0.shape
    fake = int(np.count_nonzero(fake_from_channel0(channel0)))
    out["fake_fraction"] = round(fake / channel0.size, 6)
    grey = fake - int(np.count_nonzero(channel0 == 0))  # fake pixels that are not pure 0
    if grey:
        out["problems"].append((NOTE, "grey-mask", mask,
                                f"{grey} pixel(s) with grey values other than 0/255 in channel 0; "
                                "counted as fake (channel 0 != 255), as Dolos' loader does"))
    if fake == 0:
        out["problems"].append((NOTE, "empty-mask", mask, "mask marks no pixel as fake"))
    return out


def _check_all(pairs: list[Pair], workers: int, max_pixels: int,
               max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> Iterator[dict[str, Any]]:
    """check_pair over every pair, in order, on `workers` processes (results are small)."""
    tasks = [(p.image, p.mask, max_pixels, max_file_bytes_per_pixel) for p in pairs]
    results = ordered_map(check_pair, tasks, workers, max_chunk=64)
    yield from tqdm(results, total=len(tasks), desc="index", unit="img", file=sys.stderr, mininterval=0.5)


# ---- reporting ----


def _summary(errors: list[Problem], problems_path: Path, shown: int = 3) -> str:
    by_kind: dict[str, list[str]] = defaultdict(list)
    for p in errors:
        by_kind[p.kind].append(p.path)
    lines = [f"index: {len(errors)} problem(s) in the data (index.on_error: fail), no index written:"]
    for kind, paths in sorted(by_kind.items()):
        more = f", and {len(paths) - shown} more" if len(paths) > shown else ""
        lines.append(f"  {kind}: {len(paths)} ({', '.join(paths[:shown])}{more})")
    lines.append(f"Every problem, with its path, is in {problems_path}. Fix or remove those files, "
                 "or set index.on_error: skip to drop the bad pairs and carry on.")
    return "\n".join(lines)


def _write_problems(problems: list[Problem], path: Path) -> None:
    rank = {ERROR: 0, NOTE: 1}
    rows = sorted(problems, key=lambda p: (rank[p.severity], p.kind, p.generator, p.split, p.path))
    frame = pd.DataFrame([p.row() for p in rows], columns=PROBLEM_COLUMNS)
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False)


def _nested_counts(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    counts = Counter(pairs)
    out: dict[str, dict[str, int]] = {}
    for gen in sorted({g for g, _ in counts}):
        out[gen] = {s: counts[gen, s] for s in SPLITS if counts[gen, s]}
    return out


def run(root: str | Path, out: str | Path, problems_path: str | Path, metrics: str | Path,
        cfg: IndexParams) -> pd.DataFrame:
    """Index `root`; write the index, the problems report and the metrics. Returns the index."""
    root, out, problems_path, metrics = Path(root), Path(out), Path(problems_path), Path(metrics)
    problems: list[Problem] = []
    try:
        pairs = scan(root, problems)
    except (IndexDataError, OSError) as e:
        # The report is written in every case: here with what the scan found, and why it stopped.
        problems.append(Problem(ERROR, "layout", "", "", printable(str(root)), printable(str(e))))
        _write_problems(problems, problems_path)
        raise

    rows = []
    results = _check_all(pairs, cfg.workers or available_cores(), cfg.pixel_limit, cfg.max_file_bytes_per_pixel)
    for pair, result in zip(pairs, results, strict=True):
        problems += [Problem(sev, kind, pair.generator, pair.split, path, text, pair.id)
                     for sev, kind, path, text in result["problems"]]
        rows.append({"generator": pair.generator, "split": pair.split, "id": pair.id, "image": pair.image,
                     "mask": pair.mask, "width": result["width"], "height": result["height"],
                     "fake_fraction": 1.0 if pair.generator == FULLY_GENERATED else result["fake_fraction"]})

    errors = [p for p in problems if p.severity == ERROR]
    _write_problems(problems, problems_path)  # written even on failure: it is what the user reads
    if errors and cfg.on_error == "fail":
        raise IndexDataError(_summary(errors, problems_path))

    # Skip mode: drop every pair that has an error; orphans and duplicates are dropped pairs too.
    bad = {(p.generator, p.split, p.id) for p in errors if p.id}
    index = pd.DataFrame([r for r in rows if (r["generator"], r["split"], r["id"]) not in bad],
                         columns=list(INDEX_COLUMNS))
    fakes = sorted(set(index["generator"]) - {REAL})
    if not fakes:
        raise IndexDataError(f"no usable fake image left under {root} ({len(bad)} pair(s) dropped); "
                             f"see {problems_path}")

    counts = _nested_counts(zip(index["generator"], index["split"]))
    notes = [p for p in problems if p.severity == NOTE]
    summary = {
        "images": len(index),
        "pairs": counts,
        "fake_fraction": {g: round(float(index.loc[index["generator"] == g, "fake_fraction"].mean()), 4)
                          for g in fakes},
        "dropped": len(bad),
        "errors": len(errors),
        "notes": len(notes),
        "not_rgb": sum(p.kind == "not-rgb" for p in notes),
        "grey_masks": sum(p.kind == "grey-mask" for p in notes),
    }
    with atomic_file(out) as tmp:
        index.to_csv(tmp, index=False)
    with atomic_file(metrics) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")

    found = "; ".join(f"{g}: " + ", ".join(f"{s} {n}" for s, n in c.items()) for g, c in counts.items())
    print(f"index: {len(index)} images from {root} ({found})", file=sys.stderr)
    if bad:
        print(f"index: dropped {len(bad)} bad pair(s) (index.on_error: skip); see {problems_path}",
              file=sys.stderr)
    if notes:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(Counter(p.kind for p in notes).items()))
        print(f"index: {len(notes)} note(s) ({kinds}); see {problems_path}", file=sys.stderr)
    return index
