"""Image degradations as pure functions on uint8 RGB arrays (H, W, 3): what happens to a photo
in the wild. One implementation, shared by the robustness sweep (applied at the source
resolution, before preprocess's resize) and by the training augmentation (`train.degrade`).

Every function returns a new array and is deterministic: noise draws from a generator the
caller seeds, so a perturbed image depends only on (image, kind, strength, seed).
"""

from __future__ import annotations

import cv2
import numpy as np

from localize.imageio import resize_image
from localize.params import KINDS, check  # noqa: F401  (the sweep's kinds and their checks live with the params)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-save as JPEG at `quality` (OpenCV's libjpeg, 4:2:0 chroma) and decode again."""
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Shrink by `scale` and back, with the resize preprocess uses (area down, bilinear up)."""
    h, w = image.shape[:2]
    small = resize_image(image, max(1, round(h * scale)), max(1, round(w * scale)))
    return np.ascontiguousarray(resize_image(small, h, w))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; the kernel spans +-3 sigma (OpenCV's choice for ksize 0)."""
    if sigma == 0:
        return image.copy()
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of `sigma` grey levels, rounded and clipped to 0..255."""
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def apply(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """One perturbation by name; `rng` is used by `noise` only."""
    if kind == "jpeg":
        return jpeg(image, int(strength))
    if kind == "downscale":
        return downscale(image, strength)
    if kind == "blur":
        return blur(image, strength)
    if kind == "noise":
        return noise(image, strength, rng)
    raise ValueError(f"unknown perturbation {kind!r}; choose one of: {', '.join(KINDS)}")


# Training augmentation (train.degrade): the JPEG quality and resize scale ranges TruFor trains with.
TRAIN_QUALITY = (30, 100)
TRAIN_SCALE = (0.5, 1.0)


def degrade_batch(images: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Each image (B, H, W, 3) degraded with `probability`: a resize round trip, then a JPEG re-save,
    at a scale and quality drawn from `rng`. Shapes are kept, so the masks still fit.

    Draws are made for every image whether or not it is degraded, so the images after a
    degraded one get the same draws whatever `probability` decided for it.
    """
    if probability <= 0:
        return images
    out = np.array(images)
    for i in range(len(out)):
        hit = rng.random() < probability
        scale = rng.uniform(*TRAIN_SCALE)
        quality = int(rng.integers(TRAIN_QUALITY[0], TRAIN_QUALITY[1] + 1))
        if hit:
            out[i] = jpeg(downscale(out[i], scale), quality)
    return out
