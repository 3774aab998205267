"""The demo's inpainting generators: real, published algorithms, each under its own name.

- `telea`: OpenCV `cv2.inpaint`, Telea's fast-marching method (2004).
- `navier-stokes`: OpenCV `cv2.inpaint`, Bertalmio et al.'s Navier-Stokes method (2001).
- `biharmonic`: scikit-image `inpaint_biharmonic` (Damelin & Hoang, 2018).
- `poisson`: OpenCV `seamlessClone`, Poisson image editing (Perez et al., 2003): the same
  region of a donor face is blended in, so the fake carries real texture, not a smooth fill.
- `<any of these>-jpeg`: the fill, then a lossy JPEG round trip of the WHOLE image at
  `demo.jpeg_quality`. Like RePaint and LDM in Dolos it alters pixels outside the mask too;
  the others keep every unmasked pixel bit-exact, like LaMa and Pluralistic.

No name may collide with a Dolos generator (repaint, lama, pluralistic, ldm).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

Fill = Callable[[np.ndarray, np.ndarray, np.ndarray | None, int], np.ndarray]
JPEG_SUFFIX = "-jpeg"


def _telea(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int) -> np.ndarray:
    return cv2.inpaint(image, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def _navier_stokes(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int) -> np.ndarray:
    return cv2.inpaint(image, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_NS)


def _biharmonic(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic  # slow import; only this generator needs it

    filled = inpaint_biharmonic(image, mask, channel_axis=-1)  # float in [0, 1]
    return np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)


def _poisson(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int) -> np.ndarray:
    if donor is None:
        raise ValueError("the poisson generator needs a donor face")
    # seamlessClone zeroes the mask's outer 1-pixel ring and needs the region inside the
    # destination, so work on copies padded by a margin and cut it off afterwards.
    pad = 2
    src = cv2.copyMakeBorder(donor, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    dst = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    m = cv2.copyMakeBorder(mask.astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(m)
    # OpenCV puts the source's mask bounding box at centre - (w // 2, h // 2) in the
    # destination: this centre lands it on exactly the same region.
    blended = cv2.seamlessClone(src, dst, m, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return blended[pad:-pad, pad:-pad]


FILLS: dict[str, Fill] = {
    "telea": _telea,
    "navier-stokes": _navier_stokes,
    "biharmonic": _biharmonic,
    "poisson": _poisson,
}
NAMES = tuple(FILLS) + tuple(name + JPEG_SUFFIX for name in FILLS)


def base_name(name: str) -> str:
    return name.removesuffix(JPEG_SUFFIX)


def needs_donor(name: str) -> bool:
    return base_name(name) == "poisson"


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode the whole image as baseline JPEG (4:2:0, no metadata) and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def generate(name: str, image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None = None,
             jpeg_quality: int = 75, radius: int = 3) -> np.ndarray:
    """The fake made by generator `name` from RGB uint8 `image` and boolean `mask` (True = fake)."""
    if name not in NAMES:
        raise ValueError(f"unknown demo generator {name!r}; choose from: {', '.join(NAMES)}")
    filled = FILLS[base_name(name)](image, mask, donor, radius)
    # Paste the fill back inside the mask only, so every unmasked pixel stays bit-exact
    # whatever the algorithm does near the border (seamlessClone and biharmonic touch more).
    fake = np.where(mask[..., None], filled, image)
    if name.endswith(JPEG_SUFFIX):
        fake = jpeg_round_trip(fake, jpeg_quality)
    return fake
