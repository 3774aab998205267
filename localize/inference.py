"""Running a trained model: probability maps in batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from localize.batches import to_input
from localize.runtime import autocast

CPU = torch.device("cpu")


class FlipAverage(nn.Module):
    """Test-time flip averaging: the mean of the logits of an image and of its mirror image
    (mirrored back). Training flips left-right, so both views are in-distribution; the
    average cancels some of the noise of either map, at twice the inference cost."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(x.flip(-1)).flip(-1)) / 2


def with_tta(model: nn.Module, tta: str) -> nn.Module:
    """`evaluate.tta`: `none` runs the model as it is, `flip` wraps it in FlipAverage."""
    return FlipAverage(model) if tta == "flip" else model


def iter_probs(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int = 64,
    device: torch.device = CPU,
    precision: str = "fp32",
) -> Iterator[np.ndarray]:
    """Fake-probability maps float32 (B,H,W) for uint8 images (N,H,W,3), batch by batch."""
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            # A copy: memory-mapped slices are read-only, and torch wants writable memory.
            x = to_input(np.array(images[start : start + batch_size]), device)
            with autocast(device, precision):
                logits = model(x)
            yield torch.sigmoid(logits.float())[:, 0].cpu().numpy()


def iter_probs_with_masks(
    model: nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int = 64,
    device: torch.device = CPU,
    precision: str = "fp32",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(fake probabilities (B,H,W), true masks as bool (B,H,W)) batch by batch, aligned."""
    start = 0
    for prob in iter_probs(model, images, batch_size=batch_size, device=device, precision=precision):
        yield prob, np.asarray(masks[start : start + len(prob)]).astype(bool)
        start += len(prob)


def predict_probs(model: nn.Module, images: np.ndarray, **kwargs: Any) -> np.ndarray:
    """All of `iter_probs` as one float32 (N,H,W) array."""
    size = images.shape[1:3]
    parts = list(iter_probs(model, images, **kwargs))
    return np.concatenate(parts) if parts else np.zeros((0, *size), np.float32)
