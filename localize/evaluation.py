"""Scoring trained models and baselines on the prepared test arrays, with bootstrap intervals.

Every score keeps its per-image values, so one bootstrap (a fixed set of resamples of each
test generator's images, shared by every model) gives an interval for each cell and for
any mean of cells: models are compared on the same resampled test sets.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from localize.inference import iter_probs_with_masks, predict_probs
from localize.layout import REAL
from localize.metrics import (
    PixelHistogram,
    binarize,
    bootstrap_aucs,
    bootstrap_means,
    f1_per_image,
    iou_per_image,
    percentile_interval,
    resample_indices,
    roc_auc,
    selection_score,
)
from localize.prepared import Prepared
from localize.prior import fit_prior, prior_iou
from localize.regions import choose_on_valid, drop_small_regions, largest_allowed, smallest_mask_share
from localize.splits import held_out


@dataclass
class ModelScores:
    """One model on every test generator (and the real test faces), per image where it matters."""

    ious: dict[str, np.ndarray] = field(default_factory=dict)  # generator -> per-image IoU
    cells: dict[str, dict[str, float]] = field(default_factory=dict)  # generator -> f1, ap, best_f1, auc
    real_flagged: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per real face: share flagged
    detection: dict[str, np.ndarray] = field(default_factory=dict)  # generator -> per-image detection score
    real_detection: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per real face: detection score
    overlays: dict[str, np.ndarray] = field(default_factory=dict)  # generator -> first probability maps
    # At other thresholds (chosen on valid: `valid_thresholds`), IoU and real faces only, by name.
    at_valid_thresholds: dict[str, ValidThresholdScores] = field(default_factory=dict)
    min_region: int = 0  # flagged regions smaller than this (pixels) were dropped from every map (localize/regions.py)


@dataclass
class ValidThresholdScores:
    threshold: float
    ious: dict[str, np.ndarray] = field(default_factory=dict)  # generator -> per-image IoU at `threshold`
    real_flagged: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per real face: share flagged


def image_scores(prob: np.ndarray, how: str) -> np.ndarray:
    """One detection score per probability map: its max or its mean."""
    flat = prob.reshape(len(prob), -1)
    return flat.max(1) if how == "max" else flat.mean(1)


def decide(prob: np.ndarray, threshold: float, min_region: int = 0) -> np.ndarray:
    """The binary maps: pixels above `threshold`, without flagged regions of fewer than `min_region` pixels."""
    return drop_small_regions(binarize(prob, threshold), min_region)


def flagged_share(prob: np.ndarray, threshold: float, min_region: int = 0) -> np.ndarray:
    """Per map, the share of its pixels flagged (0 = a real face left clean)."""
    return decide(prob, threshold, min_region).reshape(len(prob), -1).mean(1)


def score_model(model: nn.Module, prepared: Prepared, threshold: float, batch_size: int, detection: str,
                keep: int = 0, other_thresholds: dict[str, float] | None = None, min_region: int = 0) -> ModelScores:
    """`min_region`: flagged regions of fewer pixels are dropped from every binary map (IoU, F1, real
    faces); AP, best F1 and AUC read the probabilities and do not depend on it."""
    out = ModelScores(at_valid_thresholds={name: ValidThresholdScores(t)
                                           for name, t in (other_thresholds or {}).items()}, min_region=min_region)
    real_scores = np.zeros(0)
    if prepared.has(REAL, "test"):
        real_probs = predict_probs(model, prepared.arrays(REAL, "test")[0], batch_size=batch_size)
        out.real_flagged = flagged_share(real_probs, threshold, min_region)
        real_scores = image_scores(real_probs, detection)
        out.real_detection = real_scores
        for other in out.at_valid_thresholds.values():
            other.real_flagged = flagged_share(real_probs, other.threshold, min_region)
    for gen in test_generators(prepared):
        images, masks = prepared.arrays(gen, "test")
        ious, f1s, fake_scores, hist, kept = [], [], [], PixelHistogram(), []
        other_ious = {name: [] for name in out.at_valid_thresholds}
        for prob, true in iter_probs_with_masks(model, images, masks, batch_size=batch_size):
            pred = decide(prob, threshold, min_region)
            ious.append(iou_per_image(pred, true))
            for name, other in out.at_valid_thresholds.items():
                other_ious[name].append(iou_per_image(decide(prob, other.threshold, min_region), true))
            f1s.append(f1_per_image(pred, true))
            fake_scores.append(image_scores(prob, detection))
            hist.update(prob, true)
            kept.extend(prob[: max(0, keep - len(kept))])
        fake_scores = np.concatenate(fake_scores)
        labels = np.r_[np.ones(len(fake_scores)), np.zeros(len(real_scores))]
        out.ious[gen] = np.concatenate(ious)
        out.detection[gen] = fake_scores
        out.overlays[gen] = np.array(kept)
        for name, other in out.at_valid_thresholds.items():
            other.ious[gen] = np.concatenate(other_ious[name])
        out.cells[gen] = {
            "f1": float(np.concatenate(f1s).mean()),
            "ap": hist.average_precision(),
            "best_f1": hist.best_f1(),
            "auc": roc_auc(np.r_[fake_scores, real_scores], labels),
        }
    return out


# Where a threshold chosen on valid may lie. A coarse grid: valid sets are small, a finer one would fit noise.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass(frozen=True)
class ValidMaps:
    """One model's single pass over the valid split of its own generators and the valid real faces,
    all that the choices made on valid read: per set, the mean per-image IoU at each of THRESHOLDS,
    and the binary maps at `threshold` (the evaluate threshold)."""

    threshold: float
    mean_ious: dict[str, np.ndarray] = field(default_factory=dict)  # set name -> one mean IoU per THRESHOLDS
    binary: dict[str, np.ndarray] = field(default_factory=dict)  # set name -> bool (N, H, W)


def read_valid(model: nn.Module, prepared: Prepared, generators: list[str], threshold: float, batch_size: int,
               ) -> ValidMaps:
    """Run `model` once over every valid set that valid_thresholds and valid_min_region choose on."""
    names = [g for g in generators if prepared.has(g, "valid")] + ([REAL] if prepared.has(REAL, "valid") else [])
    out = ValidMaps(threshold)
    for name in names:
        images, masks = prepared.arrays(name, "valid")
        sums, binary = np.zeros(len(THRESHOLDS)), []
        for prob, true in iter_probs_with_masks(model, images, masks, batch_size=batch_size):
            sums += [iou_per_image(binarize(prob, t), true).sum() for t in THRESHOLDS]
            binary.append(binarize(prob, threshold))
        out.mean_ious[name] = sums / max(len(images), 1)
        out.binary[name] = np.concatenate(binary) if binary else np.zeros((0, *images.shape[1:3]), bool)
    return out


def valid_thresholds(model: nn.Module, prepared: Prepared, generators: list[str], batch_size: int,
                     maps: ValidMaps | None = None) -> dict[str, float]:
    """Two thresholds from THRESHOLDS, each the best on the valid split of the model's own generators:
    `iou`, for the fakes' mean IoU alone (the table's measure); `selection`, for the training stage's
    selection score (fakes' IoU, discounted for the real faces flagged: localize.metrics.selection_score).
    Ties go to the value nearest 0.5. Empty without valid fakes. `maps`: the model's `read_valid`, if
    already read.

    They are chosen without the test set, and reported beside Dolos' fixed 0.5, never instead of it."""
    chosen = [g for g in generators if prepared.has(g, "valid")]
    if not chosen:
        return {}
    maps = maps or read_valid(model, prepared, generators, 0.5, batch_size)
    counts = [prepared.splits[g]["valid"] for g in chosen]
    fakes = sum(maps.mean_ious[g] * n for g, n in zip(chosen, counts)) / sum(counts)
    selection = fakes
    if REAL in maps.mean_ious:
        selection = selection_score(fakes, maps.mean_ious[REAL])

    def best(score: np.ndarray) -> float:
        return THRESHOLDS[max(range(len(THRESHOLDS)), key=lambda k: (round(score[k], 9), -abs(THRESHOLDS[k] - 0.5)))]

    return {"iou": best(fakes), "selection": best(selection)}


def valid_min_region(model: nn.Module, prepared: Prepared, generators: list[str], threshold: float,
                     candidates: list[float], batch_size: int, maps: ValidMaps | None = None,
                     ) -> tuple[float, dict[float, float]]:
    """The share of the image below which flagged regions are dropped from the model's maps, chosen on
    the valid split of its own generators (localize.regions.choose_on_valid); and each candidate's score.
    `maps`: the model's `read_valid` at `threshold`, if already read."""
    train = [prepared.arrays(g, "train")[1] for g in generators if prepared.has(g, "train")]
    if largest_allowed(candidates, smallest_mask_share(train)) == [0.0]:
        return 0.0, {}  # nothing to choose: no valid inference
    if maps is not None and maps.threshold != threshold:
        raise ValueError(f"valid maps read at threshold {maps.threshold}, asked for {threshold}")
    maps = maps or read_valid(model, prepared, generators, threshold, batch_size)
    fakes = [(maps.binary[g], prepared.arrays(g, "valid")[1]) for g in generators if prepared.has(g, "valid")]
    return choose_on_valid(candidates, train, fakes, maps.binary.get(REAL))


def trivial_ious(prepared: Prepared) -> dict[str, dict[str, np.ndarray]]:
    """Per-image IoU of the two trivial predictors: every pixel fake, every pixel real."""
    out: dict[str, dict[str, np.ndarray]] = {"all-fake": {}, "all-real": {}}
    for gen in test_generators(prepared):
        true = np.asarray(prepared.arrays(gen, "test")[1]).astype(bool)
        out["all-fake"][gen] = iou_per_image(np.ones_like(true), true)
        out["all-real"][gen] = iou_per_image(np.zeros_like(true), true)
    return out


def prior_ious(prepared: Prepared, train_generators: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """The location prior of a training split on every test generator, per image, and the share
    of the image it covers (localize/prior.py: a model trained on masks alone)."""
    train = [prepared.arrays(g, "train")[1] for g in train_generators if prepared.has(g, "train")]
    valid = [prepared.arrays(g, "valid")[1] for g in train_generators if prepared.has(g, "valid")] or train
    prior, _ = fit_prior(train, valid)
    ious = {gen: prior_iou(prior, prepared.arrays(gen, "test")[1]) for gen in test_generators(prepared)}
    return ious, float(prior.mean())


def test_generators(prepared: Prepared) -> list[str]:
    return [g for g in prepared.generators if prepared.has(g, "test")]


class Bootstrap:
    """Resamples of each test set's images, fixed by (seed, test set name) and shared by all models."""

    def __init__(self, prepared: Prepared, draws: int, seed: int):
        self.resamples = {}
        for name in [*test_generators(prepared), REAL]:
            if prepared.has(name, "test"):
                rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                self.resamples[name] = resample_indices(prepared.splits[name]["test"], draws, rng)

    def interval(self, cells: list[tuple[str, np.ndarray]]) -> tuple[float, float]:
        """95% interval of the mean over `cells`, each (test set name, per-image values)."""
        if not cells:
            return math.nan, math.nan
        means = np.mean([bootstrap_means(values, self.resamples[name]) for name, values in cells], axis=0)
        return percentile_interval(means)

    def auc_interval(self, cells: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[float, float]:
        """95% interval of the mean detection AUC over `cells`, each (generator, its fakes' scores, the
        real test faces' scores from the same model): fakes and reals resampled as every other interval is."""
        if not cells or not all(len(reals) for _, _, reals in cells):
            return math.nan, math.nan
        aucs = np.mean([bootstrap_aucs(fakes, reals, self.resamples[name], self.resamples[REAL])
                        for name, fakes, reals in cells], axis=0)
        return percentile_interval(aucs)


def in_domain_cells(ious: dict[str, dict[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """(generator, per-image IoU) of the models trained and tested on the same generator."""
    return [(g, row[g]) for split, row in ious.items() for g in row if g == split]


def held_out_cells(ious: dict[str, dict[str, np.ndarray]], generators: list[str]) -> list[tuple[str, np.ndarray]]:
    """(generator, per-image IoU) of the leave-one-out models on the generator they never saw."""
    return [(held_out(s, generators), row[held_out(s, generators)]) for s, row in ious.items()
            if held_out(s, generators) in row]


def mean_of(cells: list[tuple[str, np.ndarray]]) -> float:
    return float(np.mean([values.mean() for _, values in cells])) if cells else math.nan


def rounded(x: float) -> float | None:
    """A score for JSON: 6 decimals, None for NaN (JSON has no NaN)."""
    return None if math.isnan(x) else round(float(x), 6)


def real_clean(flagged: np.ndarray) -> np.ndarray:
    """Per real face, 1 if no pixel was flagged, else 0 (Dolos' IoU of a real face)."""
    return (flagged == 0).astype(np.float64)


def ordered_model_files(models_dir: Path) -> list[Path]:
    """A models folder's files in table order: single generators, then leave-one-out splits, then the rest (`all`)."""
    return sorted(Path(models_dir).glob("*.pt"), key=lambda p: (p.stem.startswith("no-"), p.stem == "all", p.stem))


def score_record(scores: ModelScores, boot: Bootstrap) -> dict:
    """One model's scores on one test set, compact, for the tables beyond the clean one (robustness,
    other roots): per generator IoU with its interval and AP; the mean over generators with its
    interval; the real-face column (share with no pixel flagged) with its interval."""
    gens = {g: {"iou": rounded(ious.mean()), "iou_ci": [rounded(v) for v in boot.interval([(g, ious)])],
                "ap": rounded(scores.cells[g]["ap"])} for g, ious in scores.ious.items()}
    cells = list(scores.ious.items())
    aps = [g["ap"] for g in gens.values() if g["ap"] is not None]
    out = {"generators": gens, "iou": rounded(mean_of(cells)),
           "iou_ci": [rounded(v) for v in boot.interval(cells)],
           "ap": rounded(float(np.mean(aps))) if aps else None}
    clean = real_clean(scores.real_flagged)
    out["real_clean"] = rounded(clean.mean()) if len(clean) else None
    out["real_clean_ci"] = [rounded(v) for v in boot.interval([(REAL, clean)])] if len(clean) else [None, None]
    return out


def percent(x: float | None, ci: list | tuple | None = None) -> str:
    """A score ×100 for a Markdown table, with its interval when it has one; – when there is none."""
    if x is None or math.isnan(x):
        return "–"
    return f"{100 * x:.1f}" + (f" ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci and ci[0] is not None else "")
