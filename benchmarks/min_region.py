"""Clean real faces from a post-process: drop flagged regions smaller than k pixels.

    python benchmarks/min_region.py [--models models] [--prepared data/prepared] [--areas 0 8 16 32 64]

Dolos' IoU gives a real face 1 only when no pixel is flagged, so one stray blob fails it. This
scores the trained models of `--models` (the committed table's, by default) at the evaluate
threshold 0.5 with every flagged connected region (4-connected) smaller than k pixels removed,
for each k of `--areas`, on the valid and on the test split: the in-domain and held-out mean IoU
(95% bootstrap intervals over test images, evaluate's resamples) and the share of real faces
left clean, averaged over the models. k = 0 is the table without the post-process, which
evaluate now applies with each model's own k chosen on valid (`evaluate.min_region`,
localize/regions.py); this fixes one k for every model. A measurement: nothing here changes the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localize.evaluation import (  # noqa: E402
    Bootstrap,
    held_out_cells,
    in_domain_cells,
    ordered_model_files,
    real_clean,
)
from localize.inference import predict_probs  # noqa: E402
from localize.layout import REAL  # noqa: E402
from localize.metrics import binarize, iou_per_image  # noqa: E402
from localize.prepared import Prepared  # noqa: E402
from localize.regions import drop_small_regions  # noqa: E402
from localize.saved_model import load_model  # noqa: E402


def maps(model, images: np.ndarray) -> np.ndarray:
    return binarize(predict_probs(model, images, batch_size=64), 0.5)


def score(model_files: list[Path], prepared: Prepared, part: str, areas: list[int]) -> dict[int, tuple]:
    """Per k: (IoU per model and test set, share of real faces clean per model)."""
    ious = {k: {} for k in areas}
    clean = {k: [] for k in areas}
    for path in model_files:
        model, saved = load_model(path)
        real = maps(model, prepared.arrays(REAL, part)[0])
        fakes = {}
        for g in prepared.generators:
            images, masks = prepared.arrays(g, part)
            fakes[g] = maps(model, images), np.asarray(masks, bool)
        for k in areas:
            kept = drop_small_regions(real, k)
            clean[k].append(float(real_clean(kept.reshape(len(kept), -1).mean(1)).mean()))
            ious[k][saved.split] = {g: iou_per_image(drop_small_regions(pred, k), true)
                                    for g, (pred, true) in fakes.items()}
    return {k: (ious[k], clean[k]) for k in areas}


def cell(cells: list[tuple[str, np.ndarray]], boot: Bootstrap | None) -> str:
    mean = 100 * np.mean([v.mean() for _, v in cells])
    if boot is None:
        return f"{mean:.1f}"
    low, high = boot.interval(cells)
    return f"{mean:.1f} ({100 * low:.1f}–{100 * high:.1f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    ap.add_argument("--areas", type=int, nargs="+", default=[0, 8, 16, 32, 64])
    args = ap.parse_args(argv)
    prepared = Prepared(args.prepared)
    files = ordered_model_files(args.models)
    boot = Bootstrap(prepared, 1000, 0)
    side = prepared.size
    print(f"{len(files)} models, {side} px; k in pixels (share of the image)")
    print("| split | k | in-domain IoU | held-out IoU | real faces clean |")
    print("|---|---|---|---|---|")
    for part in ("valid", "test"):
        for k, (ious, clean) in score(files, prepared, part, args.areas).items():
            b = boot if part == "test" else None
            print(f"| {part} | {k} ({100 * k / side**2:.2f}%) | {cell(in_domain_cells(ious), b)} "
                  f"| {cell(held_out_cells(ious, prepared.generators), b)} | {100 * np.mean(clean):.1f} |")


if __name__ == "__main__":
    main()
