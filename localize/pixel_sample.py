"""A uniform sample of pixels from image arrays, read in batches: one rule for every per-pixel fit.

The texture baseline's trees (localize/texture.py) and unet-tex's head refit (localize/head_fit.py)
both fit a per-pixel function on `n` pixels drawn uniformly, without replacement, from every image of
a list of (images, masks) arrays. The draw is one sorted set of flat indices; the arrays are then read
in order, a batch of images at a time, so the features of only one batch are ever in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Pairs = list[tuple[np.ndarray, np.ndarray]]  # (images uint8 (N,H,W,3), masks uint8 (N,H,W), 1 = fake)


def image_batches(images: np.ndarray, batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, images[start : start + batch]) for every batch of `images`, read into memory one at a time."""
    for start in range(0, len(images), batch):
        yield start, np.asarray(images[start : start + batch])


def sampled_batches(pairs: Pairs, n: int, rng: np.random.Generator,
                    batch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Draw min(n, all pixels) pixels of `pairs` uniformly; for each batch of at most `batch` images
    that holds any, yield (its images, its masks' sampled labels, the sampled pixels' flat indices
    within the batch). Nothing is drawn, and nothing yielded, when n <= 0 or `pairs` has no pixel."""
    total = sum(images.shape[0] * images.shape[1] * images.shape[2] for images, _ in pairs)
    if total == 0 or n <= 0:
        return
    chosen = np.sort(rng.choice(total, size=min(n, total), replace=False))
    offset = 0
    for images, masks in pairs:
        per_image = images.shape[1] * images.shape[2]
        for start, images_batch in image_batches(images, batch):
            span = len(images_batch) * per_image
            local = chosen[(chosen >= offset) & (chosen < offset + span)] - offset
            offset += span
            if len(local):
                labels = np.asarray(masks[start : start + len(images_batch)]).reshape(span)[local]
                yield images_batch, labels, local
