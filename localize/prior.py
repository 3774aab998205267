"""The location prior: a "model" trained on masks alone, as a baseline row for the table.

It predicts one fixed region for every image: the mean training mask, thresholded at the
level that maximizes mean per-image IoU on the valid masks. Whatever a localizer scores
above it, it owes to the pixels, not to where fakes usually sit.

IoU is Dolos' (see localize.metrics): |P & T| / |P | T| per image, 1.0 when both are empty.
Masks are (N, H, W) arrays, nonzero = fake; numpy memory-maps work, and are read in chunks
of about CHUNK_PIXELS pixels, so 20k masks of 256 x 256 never sit in memory as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Masks = np.ndarray | Sequence[np.ndarray]  # one (N, H, W) array, or several (a split's generators)

CHUNK_PIXELS = 1 << 22  # ~4M mask pixels per chunk: a few tens of MB of working memory


def _check(masks: Masks, name: str, shape: tuple[int, int] | None = None) -> list[np.ndarray]:
    """`masks` as a list of (N, H, W) arrays of one image shape, with at least one mask."""
    arrays = [masks] if isinstance(masks, np.ndarray) else list(masks)
    for a in arrays:
        if a.ndim != 3:
            raise ValueError(f"{name}: expected masks of shape (N, H, W), got shape {a.shape}")
    if sum(len(a) for a in arrays) == 0:
        raise ValueError(f"{name}: no masks")
    shapes = {a.shape[1:] for a in arrays} | ({shape} if shape is not None else set())
    if len(shapes) > 1:
        raise ValueError(f"{name}: masks of several sizes {sorted(shapes)}" +
                         (f"; the prior is {shape}" if shape is not None else ""))
    return arrays


def _chunks(arrays: list[np.ndarray]):
    """Flattened boolean (n, H*W) blocks of the masks, read one block at a time."""
    for masks in arrays:
        step = max(1, CHUNK_PIXELS // (masks.shape[1] * masks.shape[2]))
        for start in range(0, len(masks), step):
            block = np.asarray(masks[start : start + step])
            yield block.reshape(len(block), -1) != 0


def mean_mask(masks: Masks) -> np.ndarray:
    """The share of masks that call each pixel fake, (H, W) float64 in [0, 1]."""
    arrays = _check(masks, "train masks")
    shape = arrays[0].shape[1:]
    counts = np.zeros(shape[0] * shape[1], np.int64)
    for block in _chunks(arrays):
        counts += block.sum(0)
    return (counts / sum(len(a) for a in arrays)).reshape(shape)


def _iou(inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
    """Dolos' IoU from areas, broadcasting; 1.0 where prediction and truth are both empty."""
    union = pred_area + true_area - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def fit_prior(train_masks: Masks, valid_masks: Masks) -> tuple[np.ndarray, float]:
    """The prior mask (H, W) bool and its threshold: prior = mean training mask >= threshold.

    Candidates are every distinct value of the mean mask (each gives a different region;
    nothing in between does) and "predict nothing" (threshold = inf). The best one on
    valid wins; ties go to the higher threshold, the smaller region.
    """
    mean = mean_mask(train_masks)
    valid = _check(valid_masks, "valid masks", mean.shape)
    flat = mean.ravel()
    # Pixels from the most to the least often fake: the region for the k-th highest value
    # is a prefix of this order, so intersections are cumulative sums along it.
    order = np.argsort(-flat, kind="stable")
    values, starts = np.unique(-flat[order], return_index=True)
    ends = np.append(starts[1:], flat.size)  # prefix length of the region "mean >= value"
    thresholds = np.concatenate([[np.inf], -values])
    pred_area = np.concatenate([[0], ends])
    total = np.zeros(len(thresholds))
    for block in _chunks(valid):
        inside = np.cumsum(block[:, order], axis=1, dtype=np.int64)[:, ends - 1]
        inter = np.concatenate([np.zeros((len(block), 1), np.int64), inside], axis=1)
        total += _iou(inter, pred_area[None, :], block.sum(1, keepdims=True)).sum(0)
    best = int(np.argmax(total))  # first maximum: thresholds run from high to low
    threshold = float(thresholds[best])
    return mean >= threshold, threshold


def prior_iou(prior: np.ndarray, test_masks: Masks) -> np.ndarray:
    """Per-image IoU (N,) of the one prior mask predicted for every test mask."""
    if prior.ndim != 2:
        raise ValueError(f"prior: expected one (H, W) mask, got shape {prior.shape}")
    test = _check(test_masks, "test masks", prior.shape)
    pred = prior.ravel().astype(bool)
    scores = [_iou(block[:, pred].sum(1), pred.sum(), block.sum(1)) for block in _chunks(test)]
    return np.concatenate(scores).astype(np.float64)
