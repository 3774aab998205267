"""Evaluation metrics as pure functions on numpy arrays.

The localization protocol is Dolos' (`dolos/metrics/iou_ignite.py`): binarize the fake
probability at a fixed threshold (strictly greater than 0.5), then per image
IoU = |P & T| / |P | T|, defined as 1.0 when both are empty, and average over images.
"""

from __future__ import annotations

import numpy as np


def _overlap_counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image of boolean masks (N, H, W): |P & T|, |P|, |T|."""
    pred = pred.reshape(len(pred), -1).astype(bool)
    true = true.reshape(len(true), -1).astype(bool)
    return (pred & true).sum(1), pred.sum(1), true.sum(1)


def _ratio_or_one(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 1.0 where the denominator is 0 (prediction and truth both empty)."""
    out = np.ones(len(denominator), dtype=np.float64)
    nonempty = denominator > 0
    out[nonempty] = numerator[nonempty] / denominator[nonempty]
    return out


def iou_per_image(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """IoU of boolean masks (N, H, W) -> (N,); 1.0 where prediction and truth are both empty."""
    inter, n_pred, n_true = _overlap_counts(pred, true)
    return _ratio_or_one(inter, n_pred + n_true - inter)


def f1_per_image(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pixel F1 (= Dice) of boolean masks per image; 1.0 where both are empty."""
    inter, n_pred, n_true = _overlap_counts(pred, true)
    return _ratio_or_one(2 * inter, n_pred + n_true)


def selection_score(fakes_iou, reals_clean):
    """The score that picks a model's best epoch (and evaluate's `selection` threshold): the valid fakes'
    mean IoU, discounted by half for the share of valid real faces it flags: IoU x (1 + clean) / 2.

    Both must count: scored on fakes alone, selection would never penalize a model that flags every
    real face. But they must not simply add up: with a plain average, an empty map, which fails every
    fake and passes every real face, scores 0.5 and beats any model that localizes but still flags
    faces (IoU 0.3 and half the reals clean make 0.4), and selection picks the collapse. The product
    gives an empty map 0. Works on floats and numpy arrays alike; NaN reals (none) leave the fakes' IoU.
    """
    reals_clean = np.where(np.isnan(reals_clean), 1.0, reals_clean)
    return fakes_iou * (1 + reals_clean) / 2


def check_threshold(threshold: float) -> None:
    """A probability threshold must lie strictly inside (0, 1): 0 or below flags every pixel."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


def binarize(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    return prob > threshold


# Bins of the pixel histogram: the top bits of the float32 distance to the nearer end of [0, 1].
# Dice-trained models put many pixels within 1e-3 of 0 or 1; bins that are fine in that
# distance (relative width 2**-(23 - _SHIFT)) keep those pixels apart, where 1000 equal bins
# of the probability would tie them all in the top bin and bias AP low.
_SHIFT = 12
_HALF = (int(np.float32(0.5).view(np.int32)) >> _SHIFT) + 1  # codes of distances in [0, 0.5]


def probability_bins(prob: np.ndarray) -> np.ndarray:
    """Monotone bin index in [0, 2 * _HALF) for each probability (clipped to [0, 1])."""
    p = np.clip(np.asarray(prob, dtype=np.float32).ravel(), 0, 1)
    low = p < 0.5
    distance = np.where(low, p, np.float32(1) - p)  # exact in float32 for p in [0.5, 1]
    code = distance.view(np.int32) >> _SHIFT  # non-negative floats order like their bit patterns
    return np.where(low, code, 2 * _HALF - 1 - code)


class PixelHistogram:
    """Streaming pixel-level PR statistics: memory stays constant whatever the number of pixels.

    Probabilities are binned by `probability_bins`, fine at both ends of [0, 1], so step-wise
    AP matches the exact value over all pixels (tests: within 0.005 on saturated maps).
    """

    def __init__(self):
        self.pos = np.zeros(2 * _HALF, dtype=np.int64)
        self.neg = np.zeros(2 * _HALF, dtype=np.int64)

    def update(self, prob: np.ndarray, true: np.ndarray) -> None:
        idx = probability_bins(prob)
        t = true.ravel().astype(bool)
        self.pos += np.bincount(idx[t], minlength=len(self.pos))
        self.neg += np.bincount(idx[~t], minlength=len(self.neg))

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        # Thresholds from high to low, at occupied bins only: predicted positive = bins at or above.
        occupied = (self.pos + self.neg)[::-1] > 0
        tp = np.cumsum(self.pos[::-1])[occupied]
        fp = np.cumsum(self.neg[::-1])[occupied]
        n_pos = max(int(self.pos.sum()), 1)
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / n_pos
        return precision, recall

    def average_precision(self) -> float:
        """Step-wise AP = sum over thresholds of (R_k - R_{k-1}) * P_k, as scikit-learn defines it."""
        if self.pos.sum() == 0:
            return float("nan")
        precision, recall = self._curve()
        d_recall = np.diff(np.concatenate([[0.0], recall]))
        return float((d_recall * precision).sum())

    def best_f1(self) -> float:
        """The best pixel F1 over all thresholds (an oracle threshold, reported as such)."""
        if self.pos.sum() == 0:
            return float("nan")
        precision, recall = self._curve()
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(f1.max())


def bootstrap_means(values: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """Means of `values` (N,) over each row of resampled indices (B, N) -> (B,)."""
    return np.asarray(values, dtype=np.float64)[resamples].mean(axis=1)


def resample_indices(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n) indices drawn with replacement: the bootstrap over n test images."""
    return rng.integers(0, n, size=(draws, n))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap samples (the percentile method)."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_aucs(positives: np.ndarray, negatives: np.ndarray, pos_resamples: np.ndarray,
                   neg_resamples: np.ndarray) -> np.ndarray:
    """ROC AUC of positives against negatives on each bootstrap draw (B,): rows of the two
    (B, n) and (B, m) index arrays resample each set on its own.

    AUC is the mean over (positive, negative) pairs of [p > n] + [p = n] / 2, so on a draw it
    is c_pos @ K @ c_neg / (n m), with c the draw's count of each image: one matrix product
    for all draws instead of a sort per draw."""
    pos, neg = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    if not len(pos) or not len(neg):
        return np.full(len(pos_resamples), np.nan)
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    draws = len(pos_resamples)
    c_pos = np.zeros((draws, len(pos)))
    np.add.at(c_pos, (np.arange(draws)[:, None], pos_resamples), 1)
    c_neg = np.zeros((draws, len(neg)))
    np.add.at(c_neg, (np.arange(draws)[:, None], neg_resamples), 1)
    return ((c_pos @ pairs) * c_neg).sum(1) / (pos_resamples.shape[1] * neg_resamples.shape[1])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank for each run of tied scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
