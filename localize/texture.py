"""The `texture` baseline: a per-pixel classifier on local residual statistics.

It says how much of a localizer's score local texture alone explains, as the location prior
does for where fakes sit. Per training split: sample pixels of the split's training fakes
(and of real training faces, which are all real), fit scikit-learn's
HistGradientBoostingClassifier on the features of `localize.residuals` (the same statistics
`unet-tex` takes as inputs), smooth its probability map with a small box filter, and choose
the threshold that maximizes the mean IoU of the valid fakes. A U-Net that does not beat it
has not earned its FLOPs.

Everything is seeded (`texture.seed`): the pixel sample and the classifier's own randomness.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier

from localize.batches import to_input
from localize.metrics import iou_per_image
from localize.params import TextureParams
from localize.pixel_sample import Pairs, image_batches, sampled_batches
from localize.residuals import residual_features

BATCH = 64  # images per feature batch


def features(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, H, W, F): the residual statistics of every pixel."""
    with torch.no_grad():
        f = residual_features(to_input(np.asarray(images)))
    return f.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)


def sample_pixels(pairs: Pairs, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` pixels drawn uniformly from every image of `pairs`: features (n, F) and labels (n,)."""
    xs, ys = [], []
    for batch, labels, local in sampled_batches(pairs, n, rng, BATCH):
        f = features(batch)
        xs.append(f.reshape(-1, f.shape[-1])[local])
        ys.append(labels)
    if not xs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.uint8)
    return np.concatenate(xs), np.concatenate(ys).astype(np.uint8)


def fit(fakes: Pairs, reals: Pairs, p: TextureParams) -> HistGradientBoostingClassifier:
    """The split's classifier, on `p.pixels` pixels: (1 - p.real) of them from fakes, the rest from reals."""
    rng = np.random.default_rng(p.seed)
    n_real = int(round(p.pixels * p.real)) if reals else 0
    x_fake, y_fake = sample_pixels(fakes, p.pixels - n_real, rng)
    parts = [(x_fake, y_fake)]
    if n_real:
        parts.append(sample_pixels(reals, n_real, rng))
    x = np.concatenate([a for a, _ in parts])
    y = np.concatenate([b for _, b in parts])
    if len(np.unique(y)) < 2:
        raise ValueError("texture: the sampled training pixels are all of one class; the masks hold no fake pixel")
    model = HistGradientBoostingClassifier(max_iter=p.iterations, learning_rate=p.learning_rate,
                                           max_leaf_nodes=p.leaves, early_stopping=False, random_state=p.seed)
    return model.fit(x, y)


def interpolate_grid(coarse: torch.Tensor, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) values at pixels (stride·i, stride·j) -> (B, 1, *size): exact linear interpolation
    between them, the last row and column carried to the border."""
    if stride == 1:
        return coarse
    h, w = coarse.shape[-2:]
    fine = F.interpolate(coarse, size=(stride * (h - 1) + 1, stride * (w - 1) + 1), mode="bilinear",
                         align_corners=True)
    return F.pad(fine, (0, size[1] - fine.shape[-1], 0, size[0] - fine.shape[-2]), mode="replicate")


def probability_maps(model: HistGradientBoostingClassifier, images: np.ndarray, smooth: int,
                     stride: int = 1) -> Iterator[np.ndarray]:
    """Per batch of `images`, the smoothed fake-probability maps, float32 (B, H, W).

    `stride` > 1 classifies every stride-th pixel of every stride-th row (the features are still
    computed at every pixel) and interpolates between them: stride² fewer predictions, the cost
    of this baseline, for a map that the box filter smooths anyway.
    """
    for _, batch in image_batches(images, BATCH):
        f = features(batch)[:, ::stride, ::stride]
        b, h, w, k = f.shape
        prob = model.predict_proba(f.reshape(-1, k))[:, 1].reshape(b, 1, h, w).astype(np.float32)
        prob = interpolate_grid(torch.from_numpy(prob), stride, batch.shape[1:3])
        if smooth > 1:
            pad = smooth // 2
            prob = F.avg_pool2d(F.pad(prob, (pad,) * 4, mode="replicate"), smooth, 1)
        yield prob.numpy()[:, 0]


def maps(model: HistGradientBoostingClassifier, images: np.ndarray, smooth: int, stride: int = 1) -> np.ndarray:
    """All smoothed maps of `images` at once, float32 (N, H, W)."""
    out = list(probability_maps(model, images, smooth, stride))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def choose_threshold(valid_maps: list[np.ndarray], valid_masks: list[np.ndarray]) -> float:
    """The threshold of THRESHOLDS with the best mean per-image IoU over the valid fakes (ties: the lower)."""
    scores = [np.mean(np.concatenate([iou_per_image(m >= t, np.asarray(y) != 0)
                                      for m, y in zip(valid_maps, valid_masks)])) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(scores))])
