"""The demo's inpainting generators: real, published algorithms, each under its own name.

- `telea`: OpenCV `cv2.inpaint`, Telea's fast-marching method (2004).
- `navier-stokes`: OpenCV `cv2.inpaint`, Bertalmio et al.'s Navier-Stokes method (2001).
- `biharmonic`: scikit-image `inpaint_biharmonic` (Damelin & Hoang, 2018).
- `poisson`: OpenCV `seamlessClone`, Poisson image editing (Perez et al., 2003): the same
  region of a donor face is blended in, so the fake carries real texture, not a smooth fill.
- `patchmatch`: PatchMatch (Barnes et al., 2009), the algorithm behind content-aware fill, from
  the `patchmatch-cython` package: the hole is filled with patches of the same photo, real
  texture as LaMa's and Pluralistic's fills carry. Randomized, so seeded per fake.
- `<any of these>-jpeg`: the fill, then a lossy JPEG round trip of the WHOLE image at
  `demo.jpeg_quality`. Like RePaint and LDM in Dolos it alters pixels outside the mask too;
  the others keep every unmasked pixel bit-exact, like LaMa and Pluralistic.

No name may collide with a Dolos generator (repaint, lama, pluralistic, ldm).

`fill` gives the fill pasted into the mask; `generate` adds the round trip of `-jpeg` names.
`changes_visibly` tells whether a fill left a trace: the demo stage redraws masks that did not.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

Fill = Callable[[np.ndarray, np.ndarray, np.ndarray | None, int, int], np.ndarray]
JPEG_SUFFIX = "-jpeg"
PATCH_SIZE = 5  # PatchMatch's patch side: the package default, fixed here so an upgrade cannot change it


def _telea(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int,
           seed: int) -> np.ndarray:
    return cv2.inpaint(image, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def _navier_stokes(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int,
                   seed: int) -> np.ndarray:
    return cv2.inpaint(image, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_NS)


def _biharmonic(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int,
                seed: int) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic  # slow import; only this generator needs it

    filled = inpaint_biharmonic(image, mask, channel_axis=-1)  # float in [0, 1]
    return np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)


def _poisson(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int,
             seed: int) -> np.ndarray:
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


def _patchmatch(image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None, radius: int,
                seed: int) -> np.ndarray:
    from patchmatch_cython import inpaint_pyramid  # only this generator needs it

    # The seed drives every random draw of the solver (its C RNG and the numpy generators it
    # builds from it), so the same image, mask and seed give the same bytes; no global state.
    return inpaint_pyramid(image, mask, patch_size=PATCH_SIZE, seed=seed)


FILLS: dict[str, Fill] = {
    "telea": _telea,
    "navier-stokes": _navier_stokes,
    "biharmonic": _biharmonic,
    "poisson": _poisson,
    "patchmatch": _patchmatch,
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


def fill(name: str, image: np.ndarray, mask: np.ndarray, donor: np.ndarray | None = None, radius: int = 3,
         seed: int = 0) -> np.ndarray:
    """Generator `name`'s fill of RGB uint8 `image` inside boolean `mask` (True = fake), before any re-encoding."""
    if name not in NAMES:
        raise ValueError(f"unknown demo generator {name!r}; choose from: {', '.join(NAMES)}")
    filled = FILLS[base_name(name)](image, mask, donor, radius, seed)
    # Paste the fill back inside the mask only, so every unmasked pixel stays bit-exact
    # whatever the algorithm does near the border (seamlessClone and biharmonic touch more).
    return np.where(mask[..., None], filled, image)


def finish(name: str, filled: np.ndarray, jpeg_quality: int = 75) -> np.ndarray:
    """The fake as written: the fill, re-encoded as a whole for the `-jpeg` generators."""
    return jpeg_round_trip(filled, jpeg_quality) if name.endswith(JPEG_SUFFIX) else filled


def mean_change(image: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference inside the mask, in grey levels (0-255) over pixels and channels."""
    if not mask.any():
        return 0.0
    return float(np.abs(filled[mask].astype(np.int16) - image[mask]).mean())


def changes_visibly(image: np.ndarray, filled: np.ndarray, mask: np.ndarray, min_change: float) -> bool:
    """True when the fill differs from the real by at least `min_change` grey levels on average inside the mask.

    Measured on the fill, before any JPEG round trip: the re-encoding's noise is everywhere
    and must not pass for an edit. A smooth fill of flat studio background changes nothing,
    and a mask there marks pixels no detector can find.
    """
    return mean_change(image, filled, mask) >= min_change
