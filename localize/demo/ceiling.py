"""The `visible change` ceiling (demo data only): what a perfect detector of changed pixels scores.

The demo keeps the real photo behind every fake (`real/<split>/<id>.png` behind
`fake/<generator>/images/<split>/<id>-<k>.png`), so the pixels a generator visibly changed can
be measured: those that differ from the real source by at least `min_change` grey levels in some
channel. For a `-jpeg` generator, which re-encodes the whole image, the reference is the real's
own JPEG round trip at the same quality, so that only the fill counts as change. The prediction
"exactly the visibly changed pixels", resized as preprocess resizes masks, is scored with Dolos'
IoU against the true mask: no model can be expected to find the pixels that did not change, so
every cell is to be read against this row, not against 1.
"""

from __future__ import annotations

import numpy as np

from localize.demo.generators import JPEG_SUFFIX, jpeg_round_trip


def source_id(fake_id: str) -> str:
    """The demo's fake `<id>-<k>` comes from the real photo `<id>`."""
    return fake_id.rsplit("-", 1)[0]


def visible_change(fake: np.ndarray, real: np.ndarray, generator: str, jpeg_quality: int,
                   min_change: float) -> np.ndarray:
    """Boolean (H, W): where `fake` differs from its real source by >= `min_change` in some channel."""
    if fake.shape != real.shape:
        raise ValueError(f"fake {fake.shape} and its real source {real.shape} differ in size")
    reference = jpeg_round_trip(real, jpeg_quality) if generator.endswith(JPEG_SUFFIX) else real
    return (np.abs(fake.astype(np.int16) - reference.astype(np.int16)).max(axis=2)) >= min_change
