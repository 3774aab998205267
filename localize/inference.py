"""Running a trained model: probability maps in batches, and loading saved models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from localize.batches import to_input
from localize.models import ModelParams, build_model
from localize.runtime import autocast

CPU = torch.device("cpu")


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


def predict_probs(model: nn.Module, images: np.ndarray, **kwargs: Any) -> np.ndarray:
    size = images.shape[1:3]
    parts = list(iter_probs(model, images, **kwargs))
    return np.concatenate(parts) if parts else np.zeros((0, *size), np.float32)


def load_model(path: str | Path, device: torch.device = CPU) -> tuple[nn.Module, dict]:
    """A model saved by the train stage, and its metadata (split, size, generators, ...)."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: model file not found") from None
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not a model saved by the train stage ({e})") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "model" not in saved:
        raise ValueError(f"{path}: not a model saved by the train stage")
    model = build_model(ModelParams(**saved["model"]))
    model.load_state_dict(saved["state_dict"])
    model.to(device).to(memory_format=torch.channels_last).eval()
    return model, saved
