"""Running a trained model: probability maps in batches, and loading saved models."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from localize.batches import to_input
from localize.config import ParamsError, parse_section
from localize.models import ModelParams, build_model
from localize.prepared import MAX_SIZE
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
    """A model saved by the train stage, and its metadata (split, size, generators, ...).

    However the file is bad (not a checkpoint, truncated, a pickle that would run code,
    keys or weights that do not match a model of its settings, a size it cannot run at),
    the error is ValueError("<path>: not a model saved by the train stage (<reason>)").
    """
    path = Path(path)
    try:
        model, saved = _load_checked(path, device)
    except _NotAModel as e:
        raise ValueError(f"{path}: not a model saved by the train stage ({e})") from None
    return model, saved


class _NotAModel(Exception):
    """Why a file is not a model saved by the train stage (the reason, in words)."""


def _first_line(e: BaseException, skip: str = "", limit: int = 200) -> str:
    """The first line of an error's message that does not start with `skip`, shortened to `limit`."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    kept = [line for line in lines if not (skip and line.startswith(skip))] or lines
    text = kept[0] if kept else type(e).__name__
    if len(text) > limit and ". " in text:
        text = text[: text.index(". ")]  # the first sentence
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_checked(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """Load and check every part of a saved model; _NotAModel says what is wrong."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise _NotAModel("it is a folder") from None
    except pickle.UnpicklingError as e:
        # weights_only refuses any object but tensors and plain values: e.g. a pickle whose
        # __reduce__ would run a command. torch's message spans many lines; keep its gist.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise _NotAModel(f"it holds objects other than tensors and plain values{what}, which loading could run "
                         "as code; refused") from None
    except OSError as e:
        raise _NotAModel(f"cannot be read: {e.strerror or _first_line(e)}") from None
    except Exception as e:  # truncated, empty or foreign files: torch raises many types
        size = path.stat().st_size if path.is_file() else -1
        reason = "empty file (0 bytes)" if size == 0 else f"truncated, or not a file torch saved: {_first_line(e)}"
        raise _NotAModel(reason) from None
    if not isinstance(saved, dict):
        raise _NotAModel(f"it holds a {type(saved).__name__}, not the train stage's dict")
    missing = [k for k in ("model", "state_dict", "size") if k not in saved]
    if missing:
        raise _NotAModel(f"no {', '.join(repr(k) for k in missing)} entry")
    if not isinstance(saved["model"], dict):
        raise _NotAModel(f"'model' is a {type(saved['model']).__name__}, not the model settings")
    try:
        params = parse_section(ModelParams, saved["model"], "model")
    except ParamsError as e:
        raise _NotAModel(f"bad model settings: {str(e).replace('params ', '', 1)}") from None
    size = saved["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise _NotAModel(f"'size' is {size!r}, not an image side between 1 and {MAX_SIZE} pixels")
    state = saved["state_dict"]
    if not isinstance(state, dict) or not state:
        raise _NotAModel("'state_dict' holds no weights")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise _NotAModel("'state_dict' holds entries that are not named tensors")
    model = build_model(params)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        raise _NotAModel(f"its weights do not fit a {params.arch} of width {params.width}: "
                         f"{_first_line(e, skip='Error(s) in loading state_dict')}") from None
    model.to(device).to(memory_format=torch.channels_last).eval()
    try:  # one blank image at its own size: a size this architecture cannot take fails here, not per image
        with torch.inference_mode():
            out = model(torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last))
    except RuntimeError as e:
        raise _NotAModel(f"a {params.arch} cannot run at its size {size}: {_first_line(e)}") from None
    if tuple(out.shape) != (1, 1, size, size):
        raise _NotAModel(f"a {params.arch} at size {size} gives maps of shape {tuple(out.shape)}")
    return model, saved
