"""Seeded inpainting masks over face parts: free-form brush strokes, boxes and ellipses.

Masks are boolean arrays, True = fake (the pipeline's convention). Shapes are anchored on the
eyes, nose and mouth located from the face-box geometry and sized relative to the face, so
they cover face parts the way Dolos' masks do. A draw is rejected and redrawn until its fake
fraction lies inside the requested bounds.
"""

from __future__ import annotations

import math
import zlib

import cv2
import numpy as np

from localize.demo.faces import Box, face_parts

SHAPES = ("stroke", "box", "ellipse")
MAX_TRIES = 1000


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded by `seed` and string keys, stable across runs and processes.

    zlib.crc32, not hash(): Python salts str hashes per process (PYTHONHASHSEED).
    """
    return np.random.default_rng([seed, *(zlib.crc32(k.encode("utf-8")) for k in keys)])


def _point(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _draw_shape(canvas: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], face: float,
                scale: float) -> None:
    """Draw one shape (value 1) of about `scale` face widths around `centre`."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    cx = centre[0] + rng.normal(0.0, 0.05 * face)
    cy = centre[1] + rng.normal(0.0, 0.05 * face)
    if shape == "box":
        a, b = face * scale * rng.uniform(0.6, 1.4, size=2)
        cv2.rectangle(canvas, _point(cx - a, cy - b), _point(cx + a, cy + b), 1, thickness=-1)
    elif shape == "ellipse":
        a, b = face * scale * rng.uniform(0.6, 1.4, size=2)
        angle = float(rng.uniform(0.0, 180.0))
        cv2.ellipse(canvas, _point(cx, cy), _point(a, b), angle, 0.0, 360.0, 1, thickness=-1)
    else:
        # A free-form brush stroke as in DeepFill/LaMa training masks: a random walk of
        # thick line segments with round joints.
        width = max(2, round(face * scale * rng.uniform(0.4, 0.8)))
        angle = rng.uniform(0.0, 2 * math.pi)
        x, y = cx, cy
        for _ in range(int(rng.integers(2, 7))):
            angle += rng.uniform(-math.pi / 2, math.pi / 2)
            step = face * scale * rng.uniform(0.6, 1.6)
            nx, ny = x + step * math.cos(angle), y + step * math.sin(angle)
            cv2.line(canvas, _point(x, y), _point(nx, ny), 1, thickness=width, lineType=cv2.LINE_8)
            x, y = nx, ny


def draw_mask(rng: np.random.Generator, size: int, box: Box, min_fake: float, max_fake: float) -> np.ndarray:
    """A size x size boolean mask (True = fake) whose fake fraction lies in [min_fake, max_fake]."""
    parts = face_parts(box)
    names = sorted(parts)
    face = max(box.w, box.h)
    for _ in range(MAX_TRIES):
        canvas = np.zeros((size, size), np.uint8)
        # One scale per mask, so masks range from a small patch on one feature to a large
        # region over several, spreading fake fractions across the allowed range.
        scale = rng.uniform(0.08, 0.5)
        for _ in range(int(rng.integers(1, 4))):
            _draw_shape(canvas, rng, parts[names[int(rng.integers(len(names)))]], face, scale)
        fraction = float(canvas.mean())
        if min_fake <= fraction <= max_fake:
            return canvas.astype(bool)
    raise ValueError(
        f"no mask with a fake fraction in [{min_fake}, {max_fake}] after {MAX_TRIES} draws; "
        "widen demo.min_fake/demo.max_fake"
    )
