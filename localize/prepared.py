"""Read access to the arrays that the preprocess stage writes.

    <root>/manifest.json                       {"size": S, "generators": [...], "splits": {name: {split: n}}}
    <root>/<generator>/<split>/images.npy      uint8 (N, S, S, 3)
    <root>/<generator>/<split>/masks.npy       uint8 (N, S, S), 1 = fake (all zeros for real faces)
    <root>/<generator>/<split>/ids.txt         one id per line, in array order
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class Prepared:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        try:
            meta = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{manifest}: missing; run the preprocess stage first") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{manifest}: not valid JSON ({e})") from None
        self.size: int = int(meta["size"])
        self.generators: list[str] = list(meta["generators"])
        self.splits: dict[str, dict[str, int]] = meta["splits"]

    def has(self, name: str, split: str) -> bool:
        return self.splits.get(name, {}).get(split, 0) > 0

    def arrays(self, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped (images, masks) of one generator (or `real`) and split."""
        if not self.has(name, split):
            available = ", ".join(f"{n}/{s}" for n, d in self.splits.items() for s, c in d.items() if c)
            raise KeyError(f"{self.root}: no {name}/{split} arrays; available: {available}")
        folder = self.root / name / split
        return (np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "masks.npy", mmap_mode="r"))

    def ids(self, name: str, split: str) -> list[str]:
        return (self.root / name / split / "ids.txt").read_text().split()
