"""The one file format of a trained model: what the train stage writes and evaluate and predict read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from localize.models import ModelParams, build_model

CPU = torch.device("cpu")


@dataclass
class SavedModel:
    """models/<split>.pt: the best epoch's weights and how they came to be.

    Saved as a plain dict (tensors, numbers, strings), so `torch.load(weights_only=True)` reads
    it and no code runs on load. The field order is the dict's key order, which fixes the bytes
    of the file: keep it.
    """

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    valid_score: float  # the selection score of the best epoch (localize.training.validate)
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, valid_iou, valid_real_clean, valid_score
    split: str
    train_generators: list[str]
    size: int  # preprocess.size it was trained at; inputs are resized to it
    model: dict[str, Any]  # ModelParams as a dict
    precision: str  # how it was trained: precision, device type, threads per process
    device: str
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def save(self, path: str | Path) -> None:
        torch.save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device = CPU) -> SavedModel:
        path = Path(path)
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: model file not found") from None
        except Exception as e:  # a truncated or foreign file
            raise ValueError(f"{path}: not a model saved by the train stage ({e})") from None
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(saved, dict) or any(name not in saved for name in names):
            raise ValueError(f"{path}: not a model saved by the train stage")
        return cls(**{name: saved[name] for name in names})

    def build(self, device: torch.device = CPU) -> nn.Module:
        """The network with these weights, in eval mode on `device`."""
        model = build_model(ModelParams(**self.model))
        model.load_state_dict(self.state_dict)
        return model.to(device).to(memory_format=torch.channels_last).eval()


def load_model(path: str | Path, device: torch.device = CPU) -> tuple[nn.Module, SavedModel]:
    """A model saved by the train stage, ready to run, and its record (split, size, generators, ...)."""
    saved = SavedModel.load(path, device)
    return saved.build(device), saved
