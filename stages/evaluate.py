"""Evaluate every trained split on every generator's test split, with the Dolos protocol.

    python -m stages.evaluate --prepared data/prepared --models models --iou metrics/iou.json \
        --scores metrics/scores.json --summary metrics/summary.json --table metrics/table.md \
        --heatmap plots/evaluate/iou_heatmap.png --overlays plots/evaluate/overlays

Localization: per image, binarize the fake probability at 0.5 and take IoU (1.0 when
prediction and truth are both empty); the score is the mean over a generator's test
images (DESIGN.md §4). Beside it: per-image F1 at 0.5, pixel-level average precision and
best-threshold F1 (pooled pixels), image-level detection AUC of that generator's fakes
against the real test faces, and the mean predicted fake area on real faces.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localize.atomic import atomic_dir, atomic_file
from localize.config import ParamsError, load_section
from localize.inference import iter_probs, load_model
from localize.layout import REAL
from localize.metrics import PixelHistogram, binarize, f1_per_image, iou_per_image, roc_auc
from localize.plots import grid, heatmap, overlay
from localize.preflight import start
from localize.prepared import Prepared
from localize.runtime import setup_threads
from localize.splits import held_out


@dataclass(frozen=True)
class EvaluateParams:
    # Dolos' protocol fixes the threshold at 0.5; other values are for exploration only.
    threshold: float = 0.5
    batch_size: int = 64
    # How an image's fake-probability map becomes one detection score.
    detection_score: str = "max"
    overlay_images: int = 6

    def validate(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.detection_score not in ("max", "mean"):
            raise ValueError(f"detection_score {self.detection_score!r}: choose one of: max, mean")


def _image_score(prob: np.ndarray, how: str) -> np.ndarray:
    flat = prob.reshape(len(prob), -1)
    return flat.max(1) if how == "max" else flat.mean(1)


def evaluate_model(model, prepared: Prepared, ep: EvaluateParams) -> tuple[dict, dict, dict]:
    """IoU per test generator, the other scores, and the overlay probabilities."""
    iou, scores, kept = {}, {}, {}
    real_scores = np.zeros(0)
    if prepared.has(REAL, "test"):
        images, _ = prepared.arrays(REAL, "test")
        probs = list(iter_probs(model, images, batch_size=ep.batch_size))
        real_probs = np.concatenate(probs) if probs else np.zeros((0, prepared.size, prepared.size))
        real_scores = _image_score(real_probs, ep.detection_score)
        scores[REAL] = {"fake_area": float(binarize(real_probs, ep.threshold).mean()) if len(real_probs) else math.nan}
    for gen in prepared.generators:
        if not prepared.has(gen, "test"):
            continue
        images, masks = prepared.arrays(gen, "test")
        ious, f1s, fake_scores, hist = [], [], [], PixelHistogram()
        start = 0
        for prob in iter_probs(model, images, batch_size=ep.batch_size):
            true = np.asarray(masks[start : start + len(prob)]).astype(bool)
            pred = binarize(prob, ep.threshold)
            ious.append(iou_per_image(pred, true))
            f1s.append(f1_per_image(pred, true))
            fake_scores.append(_image_score(prob, ep.detection_score))
            hist.update(prob, true)
            if start < ep.overlay_images:
                kept[gen] = prob[: ep.overlay_images - start]
            start += len(prob)
        fake_scores = np.concatenate(fake_scores)
        iou[gen] = float(np.concatenate(ious).mean())
        labels = np.r_[np.ones(len(fake_scores)), np.zeros(len(real_scores))]
        scores[gen] = {
            "iou": iou[gen],
            "f1": float(np.concatenate(f1s).mean()),
            "ap": hist.average_precision(),
            "best_f1": hist.best_f1(),
            "auc": roc_auc(np.r_[fake_scores, real_scores], labels),
        }
    iou["mean"] = float(np.mean(list(iou.values())))
    return iou, scores, kept


def baselines(prepared: Prepared) -> dict[str, dict[str, float]]:
    """IoU of the two trivial predictors: every pixel fake, and every pixel real."""
    out: dict[str, dict[str, float]] = {"all-fake": {}, "all-real": {}}
    for gen in prepared.generators:
        if prepared.has(gen, "test"):
            _, masks = prepared.arrays(gen, "test")
            true = np.asarray(masks).astype(bool)
            out["all-fake"][gen] = float(iou_per_image(np.ones_like(true), true).mean())
            out["all-real"][gen] = float(iou_per_image(np.zeros_like(true), true).mean())
    for row in out.values():
        row["mean"] = float(np.mean(list(row.values()))) if row else math.nan
    return out


def summarize(table: dict[str, dict[str, float]], generators: list[str]) -> dict[str, float]:
    in_domain = [table[g][g] for g in generators if g in table and g in table[g]]
    outside = [table[s][held_out(s, generators)] for s in table if held_out(s, generators) in table[s]]
    return {
        "in_domain_mean": float(np.mean(in_domain)) if in_domain else math.nan,
        "held_out_mean": float(np.mean(outside)) if outside else math.nan,
    }


def markdown_table(table: dict[str, dict[str, float]], generators: list[str], base: dict) -> str:
    cols = [g for g in generators if any(g in row for row in table.values())]
    lines = ["| trained on | " + " | ".join(cols) + " | mean |", "|---" * (len(cols) + 2) + "|"]

    def fmt(row: dict, split: str | None) -> str:
        cells = []
        for g in cols:
            v = row.get(g, math.nan)
            cell = "–" if math.isnan(v) else f"{100 * v:.1f}"
            # In-domain cells in bold, held-out (generalization) cells in italics.
            if split == g:
                cell = f"**{cell}**"
            elif split is not None and held_out(split, generators) == g:
                cell = f"*{cell}*"
            cells.append(cell)
        return " | ".join(cells) + f" | {100 * row.get('mean', math.nan):.1f} |"

    for split, row in table.items():
        lines.append(f"| {split} | " + fmt(row, split))
    for name, row in base.items():
        lines.append(f"| _baseline: {name}_ | " + fmt(row, None))
    return "\n".join(lines) + "\n"


def run(prepared_dir: Path, models_dir: Path, out: dict[str, Path], ep: EvaluateParams) -> dict:
    prepared = Prepared(prepared_dir)
    setup_threads(None)
    # Rows: single generators, then leave-one-out splits, then anything else (`all`).
    model_files = sorted(models_dir.glob("*.pt"), key=lambda p: (p.stem.startswith("no-"), p.stem == "all", p.stem))
    if not model_files:
        raise FileNotFoundError(f"{models_dir}: no trained models (*.pt) to evaluate")
    table, all_scores, kept = {}, {}, {}
    for path in model_files:
        model, saved = load_model(path)
        if saved["size"] != prepared.size:
            raise ValueError(f"{path}: trained at {saved['size']}px but the prepared data is {prepared.size}px")
        split = saved["split"]
        table[split], all_scores[split], kept[split] = evaluate_model(model, prepared, ep)
        print(f"{split:>20}: " + "  ".join(f"{g} {100 * v:.1f}" for g, v in table[split].items()))
    gens = prepared.generators
    base = baselines(prepared)
    summary = {**summarize(table, gens), "baselines": base}

    for key, obj in (("iou", table), ("scores", all_scores), ("summary", summary)):
        with atomic_file(out[key]) as tmp:
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    with atomic_file(out["table"]) as tmp:
        tmp.write_text(markdown_table(table, gens, base))
    out["heatmap"].parent.mkdir(parents=True, exist_ok=True)
    heatmap(table, [g for g in gens if any(g in r for r in table.values())] + ["mean"], out["heatmap"],
            f"IoU x100, test split, {prepared.size}px")
    with atomic_dir(out["overlays"]) as tmp:
        for gen in gens:
            shown = [s for s in table if gen in kept[s]]
            # The model trained on this generator, then the one that never saw it, then the rest.
            shown.sort(key=lambda s: (s != gen, held_out(s, gens) != gen, s))
            shown = shown[:4]
            if not shown:
                continue
            images, masks = prepared.arrays(gen, "test")
            rows = []
            for i in range(len(kept[shown[0]][gen])):
                img = np.asarray(images[i])
                rows.append([img, overlay(img, masks[i], (0, 255, 0))]
                            + [overlay(img, binarize(kept[s][gen][i], ep.threshold)) for s in shown])
            grid(rows, ["input", "truth"] + [f"pred: {s}" for s in shown], tmp / f"{gen}.png",
                 f"test generator: {gen}")
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True)
    for name in ("iou", "scores", "summary", "table", "heatmap", "overlays"):
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    out = {k: getattr(args, k) for k in ("iou", "scores", "summary", "table", "heatmap", "overlays")}
    try:
        start(args.params, [args.prepared, args.models, *out.values()])
        ep = load_section(EvaluateParams, "evaluate", args.params)
        run(args.prepared, args.models, out, ep)
    except (ParamsError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
