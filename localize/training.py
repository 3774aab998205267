"""The training loop: one model per training split, resumable epoch by epoch.

Determinism and resume. Every epoch reseeds torch and numpy from (seed, split, epoch),
so an epoch's batches, flips and dropout depend only on those numbers and on the model
and optimizer state at its start. A checkpoint after each epoch stores exactly that
state (plus the best-so-far weights and the curve), so a killed run that resumes from
its last checkpoint finishes with the same weights as one that never stopped.

Data parallel. Under DDP the global batch stays `train.batch_size`: every rank draws
the same batch and keeps its own slice, so only BatchNorm statistics (per process on
CPU, synchronised on CUDA), dropout draws and float summation order differ from one
process, and a one-process run is the plain loop with no collective call.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from localize import torchrun
from localize.atomic import atomic_file
from localize.batches import ArrayPool, apply_flips, epoch_indices, flip_draws, to_input, to_target
from localize.config import choice
from localize.inference import iter_probs
from localize.losses import LOSSES
from localize.metrics import binarize, iou_per_image
from localize.models import ModelParams, build_model
from localize.runtime import autocast
from localize.synthetic import self_blend
from localize.torchrun import SINGLE, Ranks


@dataclass(frozen=True)
class TrainParams:
    source: str = "table"
    epochs: int = 12
    # Fixed steps per epoch give every split the same compute, whether it pools one
    # generator or several; null means one full pass over the training images.
    steps_per_epoch: int | None = 25
    batch_size: int = 16
    lr: float = 0.001
    weight_decay: float = 0.0
    loss: str = choice(*LOSSES, default="dice")
    augment: str = choice("flip", "none", default="flip")
    # Share of each batch made of self-blended fakes from real training faces
    # (localize/synthetic.py): a generator-agnostic signal against overfitting to the
    # training generators' fingerprints. 0 trains on the generators' fakes alone.
    synthetic: float = 0.0
    seed: int = 0
    device: str = choice("auto", "cpu", "cuda", "mps", default="auto")
    precision: str = choice("auto", "fp32", "bf16", "fp16", default="auto")
    threads: int | None = None  # null: every core this process may use, shared among local processes
    # Training processes on this machine, started with torchrun when > 1 (gloo on CPU, nccl on CUDA).
    procs: int = 1
    # How processes share the work: `data` = DDP, every process takes a slice of every batch
    # (the global batch stays train.batch_size); `splits` = whole splits, one process each.
    distribute: str = choice("data", "splits", default="data")

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "procs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or null, got {self.steps_per_epoch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.synthetic < 1:
            raise ValueError(f"synthetic must be in [0, 1), got {self.synthetic}")


class NonFiniteLoss(FloatingPointError):
    pass


def _epoch_seed(seed: int, split: str, epoch: int) -> int:
    # zlib.crc32 is stable across processes, unlike hash().
    return (seed * 1_000_003 + zlib.crc32(split.encode()) + epoch * 7919) % 2**31


def run_key(split: str, gens: list[str], mp: ModelParams, tp: TrainParams, data_id: str, precision: str,
            data_parallel: int = 1) -> str:
    """What a checkpoint must match to be resumed: everything that shapes the result.

    `data_parallel` is the number of processes that share each batch: their per-process
    BatchNorm statistics and dropout draws make the run differ from a single-process one.
    """
    fields = dataclasses.asdict(tp)
    for transient in ("source", "device", "threads", "procs", "distribute"):
        fields.pop(transient)
    if data_parallel > 1:
        fields["data_parallel"] = data_parallel
    blob = json.dumps(
        {"split": split, "gens": gens, "model": dataclasses.asdict(mp), "train": fields,
         "data": data_id, "precision": precision},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def batch_slice(batch_size: int, group: Ranks) -> tuple[int, int]:
    """This rank's positions [lo, hi) in every global batch; the ranks' slices must be equal,
    so that DDP's average of their gradients is the gradient of the global batch's loss."""
    if batch_size % group.world:
        raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of processes "
                         f"({group.world}) with train.distribute=data")
    share = batch_size // group.world
    return group.rank * share, (group.rank + 1) * share


def mean_iou(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], device, precision,
             batch_size: int, ranks: Ranks = SINGLE) -> float:
    """Mean per-image IoU at threshold 0.5; with several ranks, each scores every world-th image."""
    scores = []
    part = slice(ranks.rank, None, ranks.world)
    for images, masks in pairs:
        images, masks = images[part], masks[part]
        start = 0
        for prob in iter_probs(model, images, batch_size=batch_size, device=device, precision=precision):
            true = np.asarray(masks[start : start + len(prob)]).astype(bool)
            scores.append(iou_per_image(binarize(prob), true))
            start += len(prob)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    total, count = torchrun.all_sum([float(scores.sum()), len(scores)], ranks, device)
    return total / count if count else float("nan")


def fit(
    split: str,
    train_pairs: list[tuple[np.ndarray, np.ndarray]],
    valid_pairs: list[tuple[np.ndarray, np.ndarray]],
    mp: ModelParams,
    tp: TrainParams,
    device: torch.device,
    precision: str,
    checkpoint: Path | None = None,
    real_pairs: list[tuple[np.ndarray, np.ndarray]] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    group: Ranks = SINGLE,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one split; return {"state_dict", "best_epoch", "valid_iou", "history"}.

    `group` is the set of processes that train this split together (DDP). Every rank draws
    the same global batch order, flips and self-blends, then keeps its own contiguous
    slice of the batch, so the processes see exactly the batches one process would. Rank 0
    alone reads and writes the checkpoint and reports progress.
    """
    pool = ArrayPool(train_pairs)
    if len(pool) == 0:
        raise ValueError(f"split {split!r}: no training images")
    n_synthetic = round(tp.batch_size * tp.synthetic)
    n_fake = tp.batch_size - n_synthetic
    real_pool = ArrayPool(real_pairs or [])
    if n_synthetic and len(real_pool) == 0:
        raise ValueError(f"split {split!r}: train.synthetic = {tp.synthetic} needs real training faces (real/train)")
    lo, hi = batch_slice(tp.batch_size, group)  # in every global batch of [fakes..., synthetic fakes...]

    torch.manual_seed(_epoch_seed(tp.seed, split, -1))
    model = build_model(mp).to(device).to(memory_format=torch.channels_last)
    if group.parallel and device.type == "cuda":
        # Per-GPU batches are small; statistics over the global batch keep BatchNorm as one process has it.
        # (SyncBatchNorm runs on accelerators only: CPU processes keep per-process statistics.)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    loss_fn = LOSSES[tp.loss]
    state = {"epoch": 0, "best_iou": -1.0, "best_epoch": 0, "best_state": None, "history": []}

    saved = None
    if group.main and checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu" if group.parallel else device, weights_only=False)
    saved = torchrun.broadcast(saved, group)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        if group.main:
            tqdm.write(f"[{split}] resuming after epoch {state['epoch']} from {checkpoint}")
        for row in state["history"]:
            if on_epoch:
                on_epoch(row)
    trained = model
    if group.parallel:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    steps = tp.steps_per_epoch or math.ceil(len(pool) / tp.batch_size)
    for epoch in range(state["epoch"] + 1, tp.epochs + 1):
        seed = _epoch_seed(tp.seed, split, epoch)
        torch.manual_seed(seed + group.rank)  # dropout: each rank its own draws
        rng = np.random.default_rng(seed)
        flips = torch.Generator().manual_seed(seed)
        order = epoch_indices(len(pool), steps * n_fake, rng)
        real_order = epoch_indices(len(real_pool), steps * n_synthetic, rng) if n_synthetic else None
        model.train()
        total = 0.0
        bar = tqdm(range(steps), desc=f"{split} epoch {epoch}/{tp.epochs}", leave=False, dynamic_ncols=True,
                   disable=not (progress and group.main))
        for step in bar:
            xs, ys = [], []
            if lo < n_fake:
                images, masks = pool.gather(order[step * n_fake + lo : step * n_fake + min(hi, n_fake)])
                xs.append(to_input(images, device))
                ys.append(to_target(masks, device))
            if n_synthetic:
                # Every rank blends the whole synthetic part, so `flips` stays in step across ranks.
                reals, _ = real_pool.gather(real_order[step * n_synthetic : (step + 1) * n_synthetic])
                x_syn, y_syn = self_blend(to_input(reals, device), flips)
                a, b = max(lo, n_fake) - n_fake, hi - n_fake
                if b > a:
                    xs.append(x_syn[a:b])
                    ys.append(y_syn[a:b])
            x = torch.cat(xs).contiguous(memory_format=torch.channels_last) if len(xs) > 1 else xs[0]
            y = torch.cat(ys) if len(ys) > 1 else ys[0]
            if tp.augment == "flip":
                x, y = apply_flips(x, y, flip_draws(tp.batch_size, flips)[lo:hi])
            with autocast(device, precision):
                logits = trained(x)
            # Equal slices: the mean of the ranks' mean losses is the global batch's loss, and
            # DDP's gradient average is its gradient.
            loss = loss_fn(logits, y)
            value = loss.item()
            if group.parallel:
                value = torchrun.all_sum([value], group, device)[0] / group.world
            if not math.isfinite(value):  # every rank sees the same value, so all stop together
                raise NonFiniteLoss(
                    f"split {split!r}: loss is {value} at epoch {epoch}, step {step + 1}; "
                    f"try a lower train.lr (now {tp.lr}) or train.precision=fp32"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += value
            bar.set_postfix(loss=f"{total / (step + 1):.4f}")
        if group.parallel:
            # BatchNorm running statistics as rank 0 has them, so all ranks validate (and save) one model.
            for buffer in model.buffers():
                torch.torchrun.broadcast(buffer, 0)
        # Validation batches no larger than training ones: at 256 px a big batch would set the memory peak.
        valid_iou = mean_iou(model, valid_pairs, device, precision, tp.batch_size, group)
        row = {"epoch": epoch, "train_loss": total / steps, "valid_iou": valid_iou}
        state["history"].append(row)
        state["epoch"] = epoch
        # Ties keep the earlier epoch; NaN (no valid data) keeps the last epoch.
        if valid_iou > state["best_iou"] or (math.isnan(valid_iou) and epoch == tp.epochs):
            state.update(best_iou=valid_iou, best_epoch=epoch, best_state=copy.deepcopy(model.state_dict()))
        if group.main:
            tqdm.write(f"[{split}] epoch {epoch}: loss {row['train_loss']:.4f}  valid IoU {valid_iou:.4f}")
        if on_epoch:
            on_epoch(row)
        if checkpoint is not None and group.main:
            with atomic_file(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, tmp)

    best = state["best_state"] if state["best_state"] is not None else model.state_dict()
    return {
        "state_dict": {k: v.cpu() for k, v in best.items()},
        "best_epoch": state["best_epoch"],
        "valid_iou": state["best_iou"],
        "history": state["history"],
    }
