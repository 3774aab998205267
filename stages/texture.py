"""The `texture` baseline, trained per training split and scored on every test set.

    python -m stages.texture --prepared data/prepared --out data/texture

For each split that `train.source` names (the same splits the train stage trains), fit the
per-pixel classifier of localize/texture.py on that split's training pixels, choose its
threshold on the split's valid fakes and its min region (localize/regions.py) on the valid
fakes and real faces, and score every test generator and the real test faces. Writes, per
split, data/texture/<split>.npz: per-image IoU of each test generator (`iou/<generator>`),
the flagged pixels of each real test face (`real_flagged`), the threshold and the min region.
The evaluate stage turns them into the table's `texture` rows, with the same bootstrap
intervals as every model's cells.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from localize.atomic import atomic_dir
from localize.config import ParamsError, load_section
from localize.layout import FULLY_GENERATED, REAL
from localize.metrics import iou_per_image
from localize.params import TextureParams, TrainParams
from localize.preflight import check_and_clear
from localize.prepared import Prepared
from localize.regions import choose_on_valid, drop_small_regions, min_pixels
from localize.runtime import setup_threads
from localize.splits import resolve_source
from localize.texture import choose_threshold, fit, maps


def score_split(prepared: Prepared, generators: list[str], p: TextureParams) -> dict[str, np.ndarray]:
    """One split's texture model, fit, thresholded on valid and scored on every test set."""
    reals = [prepared.arrays(REAL, "train")] if prepared.has(REAL, "train") else []
    model = fit([prepared.arrays(g, "train") for g in generators], reals, p)
    valid = [prepared.arrays(g, "valid") for g in generators if prepared.has(g, "valid")]
    if not valid:
        raise ValueError(f"texture: no valid fakes of {', '.join(generators)} to choose a threshold on")
    valid_maps = [maps(model, images, p.smooth, p.stride) for images, _ in valid]
    threshold = choose_threshold(valid_maps, [m for _, m in valid])
    pixels = valid_min_region(prepared, generators, valid_maps, threshold, model, p)
    out = {"threshold": np.float64(threshold), "min_region": np.int64(pixels)}
    for gen in prepared.generators:
        if prepared.has(gen, "test"):
            images, masks = prepared.arrays(gen, "test")
            flagged = drop_small_regions(maps(model, images, p.smooth, p.stride) >= threshold, pixels)
            out[f"iou/{gen}"] = iou_per_image(flagged, np.asarray(masks) != 0)
    if prepared.has(REAL, "test"):
        real = drop_small_regions(maps(model, prepared.arrays(REAL, "test")[0], p.smooth, p.stride) >= threshold,
                                  pixels)
        out["real_flagged"] = real.reshape(len(real), -1).mean(1)
    return out


def valid_min_region(prepared: Prepared, generators: list[str], valid_maps: list[np.ndarray],
                     threshold: float, model, p: TextureParams) -> int:
    """The pixels below which flagged regions are dropped, chosen on valid as each U-Net's is
    (localize.regions.choose_on_valid)."""
    valid = [prepared.arrays(g, "valid")[1] for g in generators if prepared.has(g, "valid")]
    reals = (maps(model, prepared.arrays(REAL, "valid")[0], p.smooth, p.stride) >= threshold
             if prepared.has(REAL, "valid") else None)
    share, _ = choose_on_valid(p.min_region, [prepared.arrays(g, "train")[1] for g in generators],
                               [(m >= threshold, true) for m, true in zip(valid_maps, valid)], reals)
    return min_pixels(share, *valid[0].shape[1:])


def run(prepared_dir: Path, out: Path, source: str, p: TextureParams) -> None:
    prepared = Prepared(prepared_dir)
    splits = resolve_source(source, prepared.generators, prepared.has(FULLY_GENERATED, "train"))
    setup_threads(None)
    with atomic_dir(out) as tmp:
        for split, generators in splits.items():
            if split == FULLY_GENERATED:  # setup A: every pixel fake, no mask to learn a texture from
                print(f"texture {split}: no baseline (fully generated faces have no masks)")
                continue
            started = time.perf_counter()
            scores = score_split(prepared, generators, p)
            seconds = time.perf_counter() - started  # printed, not saved: the file's bytes are the scores alone
            np.savez(tmp / f"{split}.npz", **scores)
            cells = "  ".join(f"{k[4:]} {100 * v.mean():.1f}" for k, v in scores.items() if k.startswith("iou/"))
            print(f"texture {split:>20}: {cells}  (threshold {float(scores['threshold']):g}, "
                  f"min region {int(scores['min_region'])} px, {seconds:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    try:
        check_and_clear(args.params, [args.out])
        p = load_section(TextureParams, "texture", args.params)
        # The splits are the train stage's: the one key of `train` this stage reads (dvc.yaml: train.source).
        source = load_section(TrainParams, "train", args.params).source
        run(args.prepared, args.out, source, p)
    except (ParamsError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
