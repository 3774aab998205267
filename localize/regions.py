"""The post-process of every binary map: flagged regions smaller than a share of the image are dropped.

Dolos' IoU fails a real face on a single flagged pixel, and a model's misses on real faces are mostly
small, isolated blobs. Removing every 4-connected flagged region of fewer than k pixels clears them.
k is a prior on the size of a manipulated region, so it is never fixed by hand: each model (and each
texture baseline) takes the share of the image, from a short list of candidates, that scores best on
its own valid split (`choose_min_region`), and a candidate is ruled out when it reaches half of the
smallest region its training masks manipulated (`largest_allowed`): a region as small as any the
training split was shown to detect is never removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from localize.metrics import iou_per_image, selection_score


def min_pixels(share: float, height: int, width: int) -> int:
    """The region size, in pixels, of a share of an image: what `drop_small_regions` takes."""
    return math.ceil(share * height * width)


def drop_small_regions(pred: np.ndarray, min_pixels: int) -> np.ndarray:
    """Boolean maps (N, H, W) without their 4-connected flagged regions of fewer than `min_pixels`."""
    pred = np.asarray(pred, dtype=bool)
    if min_pixels <= 1:
        return pred
    out = np.zeros_like(pred)
    for i, p in enumerate(pred):
        _, labels, stats, _ = cv2.connectedComponentsWithStats(p.astype(np.uint8), connectivity=4)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_pixels)
        out[i] = np.isin(labels, big[big > 0])
    return out


def smallest_mask_share(masks: Sequence[np.ndarray]) -> float:
    """The smallest share of an image that a training mask of `masks` (each (N, H, W), nonzero = fake)
    manipulates; 1.0 where there is none."""
    shares = [np.asarray(m).reshape(len(m), -1).astype(bool).mean(1) for m in masks if len(m)]
    shares = np.concatenate(shares) if shares else np.zeros(0)
    shares = shares[shares > 0]
    return float(shares.min()) if len(shares) else 1.0


def largest_allowed(candidates: Sequence[float], smallest_share: float) -> list[float]:
    """The candidates below half of the smallest manipulated share; 0 (no post-process) always stays."""
    return sorted({0.0, *(float(c) for c in candidates if c < smallest_share / 2)})


def choose_min_region(candidates: Sequence[float], score: Callable[[float], float]) -> tuple[float, dict[float, float]]:
    """The candidate share with the best valid `score`, ties to the smaller; and every candidate's score."""
    scores = {float(c): float(score(float(c))) for c in candidates}
    best = max(scores, key=lambda c: (round(scores[c], 9), -c))
    return best, scores


def choose_on_valid(candidates: Sequence[float], train_masks: Sequence[np.ndarray],
                    fakes: Sequence[tuple[np.ndarray, np.ndarray]], reals: np.ndarray | None,
                    ) -> tuple[float, dict[float, float]]:
    """The share for one model: among the `candidates` below half of the smallest region of its
    `train_masks`, the one whose maps score best on valid by the training stage's selection score
    (valid fakes' IoU x (1 + valid real faces clean) / 2, localize.metrics.selection_score).

    `fakes`: (binary maps, masks) per valid generator, each (N, H, W); `reals`: the binary maps of the
    valid real faces, or None. Returns the share and every allowed candidate's score; (0, {}) without
    valid fakes or with no candidate but 0."""
    allowed = largest_allowed(candidates, smallest_mask_share(train_masks))
    if not fakes or allowed == [0.0]:
        return 0.0, {}
    size = np.asarray(fakes[0][1]).shape[1:]

    def score(share: float) -> float:
        k = min_pixels(share, *size)
        iou = np.concatenate([iou_per_image(drop_small_regions(pred, k), np.asarray(true) != 0)
                              for pred, true in fakes]).mean()
        clean = math.nan if reals is None else float((~drop_small_regions(reals, k).reshape(len(reals), -1).any(1))
                                                     .mean())
        return float(selection_score(iou, clean))

    return choose_min_region(allowed, score)
