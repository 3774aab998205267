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


def binarize(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    return prob > threshold


class PixelHistogram:
    """Streaming pixel-level PR statistics from histograms of quantized probabilities.

    Exact average precision over millions of pixels would need them all in memory;
    binning probabilities into `bins` levels keeps memory constant and is exact up to
    ties within a bin (1/bins wide).
    """

    def __init__(self, bins: int = 1000):
        self.bins = bins
        self.pos = np.zeros(bins, dtype=np.int64)
        self.neg = np.zeros(bins, dtype=np.int64)

    def update(self, prob: np.ndarray, true: np.ndarray) -> None:
        idx = np.clip((prob.ravel() * self.bins).astype(np.int64), 0, self.bins - 1)
        t = true.ravel().astype(bool)
        self.pos += np.bincount(idx[t], minlength=self.bins)
        self.neg += np.bincount(idx[~t], minlength=self.bins)

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        # Thresholds from high to low: predicted positive = bins at or above the threshold.
        tp = np.cumsum(self.pos[::-1])
        fp = np.cumsum(self.neg[::-1])
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
