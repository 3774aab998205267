"""Shared fixtures: tiny prepared datasets with a learnable signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from localize.layout import REAL


def make_prepared(root: Path, generators=("alpha", "beta"), size=16, counts=None, seed=0) -> Path:
    """Arrays in the preprocess stage's format, where fakes are an easy-to-see bright patch.

    Each generator paints its patch with its own noise level, so models can learn it in a
    few steps and the leave-one-out columns still differ from the in-domain ones.
    """
    counts = counts or {"train": 24, "valid": 8, "test": 8}
    rng = np.random.default_rng(seed)
    splits = {}
    for k, name in enumerate([REAL, *generators]):
        splits[name] = {}
        for split, n in counts.items():
            images = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
            masks = np.zeros((n, size, size), np.uint8)
            if name != REAL:
                for i in range(n):
                    y, x = rng.integers(0, size // 2, 2)
                    masks[i, y : y + size // 2, x : x + size // 2] = 1
                level = 200 + 20 * k
                patch = rng.integers(level - 10 * k, level + 1, (n, size, size, 3)).astype(np.uint8)
                images = np.where(masks[..., None] == 1, patch, images)
            folder = root / name / split
            folder.mkdir(parents=True)
            np.save(folder / "images.npy", images)
            np.save(folder / "masks.npy", masks)
            (folder / "ids.txt").write_text("".join(f"{name}-{split}-{i:03d}\n" for i in range(n)))
            splits[name][split] = n
    (root / "manifest.json").write_text(json.dumps({"size": size, "generators": sorted(generators),
                                                    "splits": splits}))
    return root


@pytest.fixture
def prepared(tmp_path) -> Path:
    return make_prepared(tmp_path / "prepared")
