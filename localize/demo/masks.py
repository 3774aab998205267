"""Seeded inpainting masks over regions of the face and head: free-form brush strokes, boxes and ellipses.

Masks are boolean arrays, True = fake (the pipeline's convention). Each shape is anchored on one
region, as in Dolos (eyes, brows, nose, mouth, cheeks, chin, ears, hair, and beyond the face:
neck, shoulders, background near the head), located from the face-box geometry. Position, size
and shape then vary widely: a large jitter around the anchor, a fake fraction drawn log-uniformly
between the bounds, one to three shapes on independent regions. So the mean training mask is a
flat haze, and a location prior (localize.prior) predicts little: a localizer has to look at
the pixels. A draw is rejected and redrawn until its fake fraction lies inside the bounds.
"""

from __future__ import annotations

import math
import zlib

import cv2
import numpy as np

from localize.demo.faces import Box

SHAPES = ("stroke", "box", "ellipse")
MAX_TRIES = 1000
MAX_SHAPES = 3
# Standard deviation of a shape's centre around its region's anchor, in face widths: wide
# enough that neighbouring regions overlap, so no pixel is much likelier to be fake than another.
JITTER = 0.15
ASPECT = 3.0  # boxes and ellipses are at most this many times longer than wide

# Region anchors (x, y) in face-box units: (0, 0) is the box's top-left corner, (1, 1) its
# bottom-right. The LBP frontal-face box runs from the eyebrows to just under the mouth; the
# ratios were read off the demo crops (see the contact sheet). Left and right as seen in the image.
REGIONS: dict[str, tuple[float, float]] = {
    "eye-left": (0.30, 0.38),
    "eye-right": (0.70, 0.38),
    "brow-left": (0.30, 0.20),
    "brow-right": (0.70, 0.20),
    "nose": (0.50, 0.60),
    "mouth": (0.50, 0.84),
    "cheek-left": (0.18, 0.66),
    "cheek-right": (0.82, 0.66),
    "chin": (0.50, 1.04),
    "ear-left": (-0.06, 0.50),
    "ear-right": (1.06, 0.50),
    "hair": (0.50, -0.12),
    "hair-left": (0.08, -0.02),
    "hair-right": (0.92, -0.02),
    "neck": (0.50, 1.30),
    "shoulder-left": (-0.25, 1.55),
    "shoulder-right": (1.25, 1.55),
    "background-left": (-0.38, 0.20),
    "background-right": (1.38, 0.20),
    "background-top": (0.50, -0.40),
}


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded by `seed` and string keys, stable across runs and processes.

    zlib.crc32, not hash(): Python salts str hashes per process (PYTHONHASHSEED).
    """
    return np.random.default_rng([seed, *(zlib.crc32(k.encode("utf-8")) for k in keys)])


def anchors(box: Box) -> dict[str, tuple[float, float]]:
    """Every region's anchor (x, y) in the crop's pixels."""
    return {name: (box.x + fx * box.w, box.y + fy * box.h) for name, (fx, fy) in REGIONS.items()}


def _point(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _half_sides(rng: np.random.Generator, area: float, shape_area: float) -> tuple[float, float]:
    """Half-axes (a, b) of a shape of `area` pixels whose area is shape_area * a * b."""
    aspect = math.exp(rng.uniform(-math.log(ASPECT), math.log(ASPECT)))
    ab = area / shape_area
    return math.sqrt(ab * aspect), math.sqrt(ab / aspect)


def _draw_shape(canvas: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], area: float) -> None:
    """Draw one shape (value 1) of about `area` pixels around `centre`."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    cx, cy = centre
    if shape == "box":
        a, b = _half_sides(rng, area, 4.0)
        cv2.rectangle(canvas, _point(cx - a, cy - b), _point(cx + a, cy + b), 1, thickness=-1)
    elif shape == "ellipse":
        a, b = _half_sides(rng, area, math.pi)
        angle = float(rng.uniform(0.0, 180.0))
        cv2.ellipse(canvas, _point(cx, cy), _point(a, b), angle, 0.0, 360.0, 1, thickness=-1)
    else:
        # A free-form brush stroke as in DeepFill/LaMa training masks: a random walk of
        # thick line segments, whose width times length makes up the area.
        width = max(2, round(math.sqrt(area) * rng.uniform(0.2, 0.45)))
        segments = int(rng.integers(2, 7))
        mean_step = area / width / segments
        angle = rng.uniform(0.0, 2 * math.pi)
        x, y = cx, cy
        for _ in range(segments):
            angle += rng.uniform(-math.pi / 2, math.pi / 2)
            step = mean_step * rng.uniform(0.6, 1.4)
            nx, ny = x + step * math.cos(angle), y + step * math.sin(angle)
            cv2.line(canvas, _point(x, y), _point(nx, ny), 1, thickness=width, lineType=cv2.LINE_8)
            x, y = nx, ny


def draw_mask(rng: np.random.Generator, size: int, box: Box, min_fake: float, max_fake: float) -> np.ndarray:
    """A size x size boolean mask (True = fake) whose fake fraction lies in [min_fake, max_fake]."""
    points = anchors(box)
    names = sorted(points)
    face = max(box.w, box.h)
    for _ in range(MAX_TRIES):
        canvas = np.zeros((size, size), np.uint8)
        # Log-uniform: as many masks from 3% to 6% of the image as from 20% to 40%, so small
        # edits are common, as in Dolos, and no one blob fits most masks.
        target = math.exp(rng.uniform(math.log(min_fake), math.log(max_fake))) * size * size
        count = int(rng.integers(1, MAX_SHAPES + 1))
        for _ in range(count):
            x, y = points[names[int(rng.integers(len(names)))]]
            centre = (x + rng.normal(0.0, JITTER * face), y + rng.normal(0.0, JITTER * face))
            _draw_shape(canvas, rng, centre, target / count)
        fraction = float(canvas.mean())
        if min_fake <= fraction <= max_fake:
            return canvas.astype(bool)
    raise ValueError(
        f"no mask with a fake fraction in [{min_fake}, {max_fake}] after {MAX_TRIES} draws; "
        "widen demo.min_fake/demo.max_fake"
    )
