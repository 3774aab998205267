"""The training data path: memory-mapped uint8 arrays -> batches of tensors.

No image is decoded after preprocessing. A batch is gathered by index from the
memory-mapped arrays (sorted indices read pages in order), so resident memory is the
batch plus what the OS page cache chooses to keep, whatever the dataset's size.
Augmentation runs on tensors and only moves pixels (flips), so it keeps the noise and
interpolation traces that localization relies on.
"""

from __future__ import annotations

import numpy as np
import torch


class ArrayPool:
    """Several (images, masks) array pairs seen as one indexable dataset."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]):
        self.pairs = [p for p in pairs if len(p[0])]
        self.offsets = np.cumsum([0] + [len(images) for images, _ in self.pairs])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def gather(self, indices: np.ndarray, masks: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows `indices` of the pooled arrays as in-memory uint8 (B,H,W,3) and (B,H,W).

        `masks` False reads no mask row at all (weak supervision) and returns None for them.
        """
        indices = np.asarray(indices)
        order = np.argsort(indices, kind="stable")
        which = np.searchsorted(self.offsets, indices[order], side="right") - 1
        images, rows = [], []
        for k in np.unique(which):
            local = indices[order][which == k] - self.offsets[k]
            imgs, msks = self.pairs[k]
            images.append(imgs[local])
            if masks:
                rows.append(msks[local])
        # Back to the caller's order, so a batch is the same whatever the pool's layout.
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return np.concatenate(images)[inverse], np.concatenate(rows)[inverse] if masks else None


def to_input(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [-1, 1], channels_last in memory."""
    x = _tensor(images).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last)


def to_target(masks: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (B,H,W) with 1 = fake -> float (B,1,H,W)."""
    return _tensor(masks).to(device, non_blocking=True).unsqueeze(1).float()


def _tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    # A read-only array (memory-mapped prepared data) is copied: torch would share it and warn that
    # writing through the tensor is undefined. The uint8 copy costs a quarter of the float one after it.
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array)


def flip_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """Which of `n` samples to flip left-right, each with probability 1/2."""
    return torch.rand(n, generator=generator) < 0.5


def apply_flips(x: torch.Tensor, y: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip the samples where `flip` is True (the same flip for image and mask)."""
    if flip.any():
        x = x.clone()
        y = y.clone()
        x[flip] = x[flip].flip(-1)
        y[flip] = y[flip].flip(-1)
    return x, y


def epoch_indices(n: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`n_samples` indices covering the pool in shuffled passes (no repeats within a pass)."""
    passes = -(-n_samples // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:n_samples]
