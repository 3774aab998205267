"""Read access to the arrays that preprocess writes.

    <root>/manifest.json                       {"size": S, "generators": [...], "splits": {name: {split: n}}}
    <root>/<generator>/<split>/images.npy      uint8 (N, S, S, 3), RGB
    <root>/<generator>/<split>/masks.npy       uint8 (N, S, S), 1 = fake (all zeros for real faces)
    <root>/<generator>/<split>/ids.txt         one id per line, in array order

`generators` lists the fake generators only; `splits` also has `real` (localize.layout.REAL)
when the data has real faces. Arrays open memory-mapped (mmap_mode="r"), so reading a
batch touches only its pages and nothing is decoded after preprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAX_SIZE = 4096  # the largest side of prepared images (preprocess.size), so of what a model is trained at


class PreparedError(ValueError, KeyError):
    """Prepared data is absent, incomplete or inconsistent. A KeyError too, for lookups by name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Prepared:
    """One preprocess output folder: `Prepared("data/prepared").arrays("lama", "train")`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        try:
            meta = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{manifest}: missing; run the preprocess stage first") from None
        except json.JSONDecodeError as e:
            raise PreparedError(f"{manifest}: not valid JSON ({e})") from None
        try:
            self.size: int = int(meta["size"])
            self.generators: list[str] = [str(g) for g in meta["generators"]]
            self.splits: dict[str, dict[str, int]] = {
                str(name): {str(s): int(n) for s, n in counts.items()}
                for name, counts in meta["splits"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise PreparedError(f"{manifest}: not a preprocess manifest ({type(e).__name__}: {e})") from None

    def has(self, name: str, split: str) -> bool:
        """True if generator (or `real`) `name` has a non-empty `split`."""
        return self.splits.get(name, {}).get(split, 0) > 0

    def _folder(self, name: str, split: str) -> Path:
        if not self.has(name, split):
            available = ", ".join(f"{n}/{s}" for n, d in self.splits.items() for s, c in d.items() if c)
            raise PreparedError(f"{self.root}: no {name}/{split} arrays; available: {available or 'none'}")
        return self.root / name / split

    def arrays(self, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped (images, masks) of one generator (or `real`) and split.

        Shapes and dtypes are checked against the manifest (cheap: only the headers are read).
        """
        folder = self._folder(name, split)
        images = np.load(folder / "images.npy", mmap_mode="r")
        masks = np.load(folder / "masks.npy", mmap_mode="r")
        n, s = self.splits[name][split], self.size
        if images.shape != (n, s, s, 3) or masks.shape != (n, s, s) or images.dtype != np.uint8 \
                or masks.dtype != np.uint8:
            raise PreparedError(f"{folder}: arrays are {images.dtype} {images.shape} and {masks.dtype} "
                                f"{masks.shape}, but the manifest says {n} images of {s}x{s}: "
                                "rerun preprocess")
        return images, masks

    def ids(self, name: str, split: str) -> list[str]:
        """The image ids of `arrays(name, split)`, in the same order."""
        path = self._folder(name, split) / "ids.txt"
        return path.read_text().splitlines()
