"""The one file format of a trained model: what the train stage writes and evaluate and predict read."""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from localize.config import ParamsError, parse_section
from localize.models import ModelParams, build_model
from localize.prepared import MAX_SIZE

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
    # steps, images_seen, train_fakes, passes, ... (localize.budget.Budget.record); None in older files
    budget: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return canonical({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def save(self, path: str | Path) -> None:
        save_file(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device = CPU) -> SavedModel:
        """Read and check a saved model's record; however the file is bad (not a checkpoint, truncated,
        a pickle that would run code, missing or ill-typed entries), ValueError names the file and why."""
        path = Path(path)
        try:
            return cls(**_checked_fields(_read(path, device), [f.name for f in dataclasses.fields(cls)
                                                                if f.default is dataclasses.MISSING]))
        except _NotAModel as e:
            raise ValueError(f"{path}: not a model saved by the train stage ({e})") from None

    def build(self, device: torch.device = CPU) -> nn.Module:
        """The network with these weights, in eval mode on `device`."""
        model = build_model(ModelParams(**self.model))
        model.load_state_dict(self.state_dict)
        return model.to(device).to(memory_format=torch.channels_last).eval()


def save_file(obj: Any, path: str | Path) -> None:
    """torch.save, with an error that names the file and says why (a full disk gives torch's
    "enforce fail ... unexpected pos", which names neither).

    Serialized to memory first: torch names the archive's inner folder after the file it writes,
    and a stage writes through a random temporary name (localize.atomic), so saving to the path
    would give other bytes on every run and DVC would rerun everything downstream.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        Path(path).write_bytes(buffer.getbuffer())
    except (RuntimeError, OSError) as e:
        try:
            free = f"; {shutil.disk_usage(Path(path).parent).free:,} bytes free there"
        except OSError:
            free = ""
        raise OSError(f"{path}: cannot be written, is the disk full? ({_first_line(e)}{free})") from None


def canonical(value: Any) -> Any:
    """`value` rebuilt from plain dicts and lists, with every string interned.

    Pickle writes a string once and refers back to it only where the *same object* recurs, so
    equal records could be saved as different bytes: a history read back from a checkpoint
    holds its own copies of "valid_score", a fresh one the interned literal. Interned, equal
    strings are one object, and the saved bytes depend on the values alone (resume gives the
    uninterrupted run's md5, which is what DVC compares).
    """
    if isinstance(value, str):
        return sys.intern(str(value))
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(canonical(v) for v in value)
    return value


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


def _read(path: Path, device: torch.device) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
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


def _checked_fields(saved: Any, names: list[str]) -> dict[str, Any]:
    if not isinstance(saved, dict):
        raise _NotAModel(f"it holds a {type(saved).__name__}, not the train stage's dict")
    missing = [k for k in names if k not in saved]
    if missing:
        raise _NotAModel(f"no {', '.join(repr(k) for k in missing)} entry")
    if not isinstance(saved["model"], dict):
        raise _NotAModel(f"'model' is a {type(saved['model']).__name__}, not the model settings")
    try:
        saved["model"] = dataclasses.asdict(parse_section(ModelParams, saved["model"], "model"))
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
    if not isinstance(saved.get("budget"), (dict, type(None))):
        raise _NotAModel(f"'budget' is a {type(saved['budget']).__name__}, not the budget record")
    return {name: saved[name] for name in [*names, "budget"] if name in saved}


def load_model(path: str | Path, device: torch.device = CPU) -> tuple[nn.Module, SavedModel]:
    """A model saved by the train stage, ready to run, and its record (split, size, generators, ...).

    Its weights must fit its settings, and it must run at its own size: checked here with one
    blank image, so a bad file fails once, with ValueError naming it, not on every image.
    """
    path = Path(path)
    saved = SavedModel.load(path, device)
    arch, width, size = saved.model["arch"], saved.model["width"], saved.size
    try:
        model = saved.build(device)
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        raise ValueError(f"{path}: not a model saved by the train stage (its weights do not fit a {arch} of width "
                         f"{width}: {_first_line(e, skip='Error(s) in loading state_dict')})") from None
    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last))
    except RuntimeError as e:
        raise ValueError(f"{path}: not a model saved by the train stage (a {arch} cannot run at its size {size}: "
                         f"{_first_line(e)})") from None
    if tuple(out.shape) != (1, 1, size, size):
        raise ValueError(f"{path}: not a model saved by the train stage (a {arch} at size {size} gives maps of "
                         f"shape {tuple(out.shape)})")
    return model, saved
