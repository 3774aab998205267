"""Decode every indexed image and mask once, into uint8 arrays at one size.

The `preprocess` stage's work; stages/preprocess.py is its command line.

Writes under --out (see localize.prepared for the reader):

    manifest.json                          {"size": S, "generators": [...], "splits": {name: {split: n}}}
    <generator>/<split>/images.npy         uint8 N x S x S x 3 (RGB; other modes converted, alpha on white)
    <generator>/<split>/masks.npy          uint8 N x S x S, 1 = fake (zeros for real faces, ones for p2)
    <generator>/<split>/ids.txt            one id per line, in array order

Every file is read through localize.imageio's bounded readers, at the size the index
recorded: a file whose header declares another size (it changed since indexing) is
refused before it is decoded. Images keep their stored orientation (EXIF is ignored):
that is the orientation the masks were drawn on.

Images shrink with area averaging (bilinear when enlarging). Masks are binarized first
(fake where channel 0 != 255, as Dolos' loader does) and then resized with nearest
neighbour, so they stay 0/1.

Memory stays bounded at Dolos scale (36k images): each worker process decodes one
pair at a time, resizes it and writes its rows straight into the .npy files at their
offsets, so no image crosses between processes and nothing piles up anywhere; the
parent only hands out paths. Rows land at fixed offsets, so the bytes are the same
whatever the number of workers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from localize.atomic import atomic_dir
from localize.imageio import ImageReadError, ImageSizeError, load_fake_mask, load_rgb, resize_image, resize_mask
from localize.index_csv import read_index, unstorable
from localize.layout import FULLY_GENERATED, REAL, SPLITS
from localize.params import PreprocessParams
from localize.process_pool import ordered_map
from localize.runtime import available_cores


class IndexFileError(ValueError):
    """data/index.csv does not describe a usable dataset."""


# ---- per-image work: runs in worker processes ----


def init_worker() -> None:
    # One process per core already; OpenCV's own threads would only oversubscribe them.
    cv2.setNumThreads(1)


def prepare_pair(task: tuple[str, str, int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode one image (and mask) fully, check the size against the index, resize to size x size.

    Returns (uint8 S x S x 3, uint8 S x S with 1 = fake), or None for the mask of a real face.
    Raises ImageReadError naming the file when it cannot be decoded or no longer matches the index;
    the size is checked on the headers, so nothing larger than the indexed size is ever decoded.
    """
    image, mask, width, height, size = task
    try:
        rgb = load_rgb(image, max_pixels=width * height, expected=(width, height))
    except ImageSizeError as e:
        raise ImageReadError(image, f"is {e.size[0]}x{e.size[1]} but the index says {width}x{height}: "
                                    "rerun the index stage") from None
    out_image = np.ascontiguousarray(resize_image(rgb, size, size))
    if not mask:
        return out_image, None
    try:
        fake = load_fake_mask(mask, max_pixels=width * height, expected=(width, height))
    except ImageSizeError as e:
        raise ImageReadError(mask, f"mask is {e.size[0]}x{e.size[1]} but its image is {width}x{height}") from None
    # Binarize at full size, then nearest: the mask stays exactly 0/1 at every size.
    return out_image, np.ascontiguousarray(resize_mask(fake.astype(np.uint8), size, size))


def write_at(path: str, offset: int, row: np.ndarray) -> None:
    """Write one array row into a file at `offset` (pwrite: no shared file position between processes)."""
    data = memoryview(np.ascontiguousarray(row)).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
    finally:
        os.close(fd)


def prepare_row(task: tuple[str, str, int, int, int, str, int, str, int]) -> None:
    """prepare_pair, then write the results into images.npy / masks.npy at the row's offsets."""
    image, mask, width, height, size, images_file, images_at, masks_file, masks_at = task
    rgb, fake = prepare_pair((image, mask, width, height, size))
    write_at(images_file, images_at, rgb)
    if fake is not None:  # real faces: the mask row stays as created, all zeros
        write_at(masks_file, masks_at, fake)


def create_npy(path: Path, shape: tuple[int, ...]) -> int:
    """Create a zero-filled uint8 .npy of `shape`; return the byte offset where its data starts.

    open_memmap writes a valid header and sizes the file (unwritten bytes read as 0);
    the workers then write the rows, not through this mapping.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    offset = int(array.offset)
    del array  # unmap: nothing stays mapped in this process
    return offset


def _fill_ones(path: Path) -> None:
    array = np.load(path, mmap_mode="r+")
    array[:] = 1
    array.flush()
    del array


def _check_index(index: Any, path: Path) -> None:
    if index.empty:
        raise IndexFileError(f"{path}: the index lists no images")
    bad_splits = sorted(set(index["split"]) - set(SPLITS))
    if bad_splits:
        raise IndexFileError(f"{path}: unknown split(s) {', '.join(bad_splits)}; "
                             f"expected {', '.join(SPLITS)}")
    if (index["generator"] == "").any() or (index["id"] == "").any():
        raise IndexFileError(f"{path}: rows with an empty generator or id")
    # ids.txt holds one id per line and generators name folders: neither may hold a line break.
    for column in ("generator", "id"):
        broken = index[column].map(unstorable)
        if broken.any():
            raise IndexFileError(f"{path}: {column} {index[column][broken].iloc[0]!r} holds a line break or "
                                 "another control character; rerun the index stage, which refuses such names")
    dup = index.duplicated(["generator", "split", "id"])
    if dup.any():
        row = index[dup].iloc[0]
        raise IndexFileError(f"{path}: id '{row['id']}' appears twice in {row['generator']}/{row['split']}")
    no_mask = index[~index["generator"].isin([REAL, FULLY_GENERATED]) & (index["mask"] == "")]
    if len(no_mask):
        raise IndexFileError(f"{path}: {len(no_mask)} fake image(s) without a mask, "
                             f"e.g. {no_mask['image'].iloc[0]}")
    if not (index["generator"] != REAL).any():
        raise IndexFileError(f"{path}: no fake generator in the index")


def run(index_path: str | Path, out: str | Path, cfg: PreprocessParams) -> dict[str, Any]:
    """Decode, resize and write every indexed pair under `out`. Returns the manifest."""
    index_path, out = Path(index_path), Path(out)
    index = read_index(index_path)
    _check_index(index, index_path)
    # Groups in (generator, split) order, rows by id inside each: the index's own order.
    index = index.sort_values(["generator", "split", "id"]).reset_index(drop=True)
    size = cfg.size

    splits: dict[str, dict[str, int]] = {}
    with atomic_dir(out) as tmp:
        tasks = []
        for (gen, split), rows in index.groupby(["generator", "split"], sort=False):
            folder = tmp / gen / split
            folder.mkdir(parents=True)
            (folder / "ids.txt").write_text("".join(f"{i}\n" for i in rows["id"]))
            n = len(rows)
            images, masks = folder / "images.npy", folder / "masks.npy"
            images_at = create_npy(images, (n, size, size, 3))
            masks_at = create_npy(masks, (n, size, size))
            if gen == FULLY_GENERATED:  # no mask files: every pixel of a fully generated face is fake
                _fill_ones(masks)
            pixels = size * size
            for k, r in enumerate(rows.itertuples(index=False)):
                tasks.append((r.image, r.mask, int(r.width), int(r.height), size,
                              str(images), images_at + k * pixels * 3, str(masks), masks_at + k * pixels))
            splits.setdefault(gen, {})[split] = n
        with tqdm(total=len(tasks), desc="preprocess", unit="img", file=sys.stderr, mininterval=0.5) as bar:
            for _ in ordered_map(prepare_row, tasks, cfg.workers or available_cores(), max_chunk=16,
                                 initializer=init_worker):
                bar.update()
        manifest = {
            "size": size,
            # Partly inpainted generators only: p2 trains (weakly) but is never a localization test set.
            "generators": sorted(g for g in splits if g not in (REAL, FULLY_GENERATED)),
            "splits": {g: {s: splits[g][s] for s in SPLITS if s in splits[g]} for g in sorted(splits)},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = ", ".join(f"{g} {sum(c.values())}" for g, c in manifest["splits"].items())
    print(f"preprocess: {len(tasks)} images at {size}x{size} into {out} ({total})", file=sys.stderr)
    return manifest
