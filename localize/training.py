"""The training loop: one model per training split, resumable epoch by epoch.

Determinism and resume. Every epoch reseeds torch and numpy from (seed, split, epoch),
so an epoch's batches, flips and dropout depend only on those numbers and on the model
and optimizer state at its start. A checkpoint after each epoch stores exactly that
state (plus the best-so-far weights and the curve), so a killed run that resumes from
its last checkpoint finishes with the same weights as one that never stopped.

Data parallel. Under DDP the global batch stays `train.batch_size`: every rank builds
the batch one process would (`epoch_batches`) and keeps its own slice, so only BatchNorm
statistics (per process on CPU, synchronised on CUDA), dropout draws and float summation
order differ from one process, and a one-process run is the plain loop with no collective
call.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from localize import distributed
from localize.atomic import atomic_file
from localize.batches import ArrayPool, apply_flips, epoch_indices, flip_draws, to_input, to_target
from localize.budget import plan_budget
from localize.degrade import degrade_batch
from localize.distributed import SINGLE, Ranks
from localize.head_fit import has_head, refit_pixel_head
from localize.inference import iter_probs_with_masks
from localize.metrics import binarize, iou_per_image, selection_score
from localize.models import PATCH_ARCHS, ModelParams, build_model
from localize.params import CLASSIC_BLENDS, TrainParams
from localize.runtime import Runtime, autocast
from localize.saved_model import _first_line, save_file
from localize.supervision import check_weak_data, training_loss, weak_batches, weak_score_on_valid
from localize.synthetic import self_blend

Pairs = list[tuple[np.ndarray, np.ndarray]]  # (images, masks) array pairs, usually memory-mapped


@dataclass(frozen=True)
class SplitData:
    """What one split trains and selects on."""

    train: Pairs  # the training generators' train fakes
    valid: Pairs  # their valid fakes: best-epoch selection ...
    real_valid: Pairs = ()  # ... together with the valid real faces, which should stay unflagged
    real_train: Pairs = ()  # real training faces: batch members (train.real) and self-blends' material


@dataclass
class Progress:
    """Where a split's training stands after an epoch; a checkpoint stores it beside the weights."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0  # optimizer steps taken so far
    stopped: str | None = None  # why training ended before its planned budget: "patience" (None: it did not)
    ema_state: dict[str, torch.Tensor] | None = None  # train.ema: the moving average, to resume it

    def record(self, row: dict[str, float], model: torch.nn.Module, last_epoch: bool) -> None:
        self.history.append(row)
        self.epoch = row["epoch"]
        # Ties keep the earlier epoch; NaN (no valid data) keeps the last epoch.
        if row["valid_score"] > self.best_score or (math.isnan(row["valid_score"]) and last_epoch):
            self.best_score, self.best_epoch = row["valid_score"], row["epoch"]
            self.best_state = copy.deepcopy(model.state_dict())

    def best_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        best = self.best_state if self.best_state is not None else model.state_dict()
        return {k: v.cpu() for k, v in best.items()}


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
    # Unset, these leave the key (and so old checkpoints) as they were.
    for off in ("patience", "max_steps", "crop", "ema"):
        if fields[off] is None:
            fields.pop(off)
    if fields["blends"] == list(CLASSIC_BLENDS):
        fields.pop("blends")
    if data_parallel > 1:
        fields["data_parallel"] = data_parallel
    blob = json.dumps(
        {"split": split, "gens": gens, "model": dataclasses.asdict(mp), "train": fields,
         "data": data_id, "precision": precision},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def learning_rate(tp: TrainParams, step: int, total: int) -> float:
    """The rate for global step `step` (0-based) of `total`. Cosine: a linear warm-up over the
    first 5% of steps (Adam's early updates are noisy at the full rate), then a half cosine to 0."""
    if tp.schedule == "constant":
        return tp.lr
    warmup = max(1, total // 20)
    if step < warmup:
        return tp.lr * (step + 1) / warmup
    return tp.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def batch_slice(batch_size: int, group: Ranks) -> tuple[int, int]:
    """This rank's positions [lo, hi) in every global batch; the ranks' slices must be equal,
    so that DDP's average of their gradients is the gradient of the global batch's loss."""
    if batch_size % group.world:
        raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of processes "
                         f"({group.world}) with train.distribute=data")
    share = batch_size // group.world
    return group.rank * share, (group.rank + 1) * share


def epoch_batches(fakes: ArrayPool, reals: ArrayPool, tp: TrainParams, split: str, epoch: int, steps: int,
                  device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's global batches, as one process trains on them: (x, y), each `tp.batch_size` long.

    A batch is the generators' fakes, then self-blended fakes made from real faces, then plain
    real faces with empty masks, then random flips of the whole. Everything depends only on
    (train.seed, split, epoch) and the data, so every rank builds the same batches.
    """
    seed = _epoch_seed(tp.seed, split, epoch)
    rng = np.random.default_rng(seed)
    flips = torch.Generator().manual_seed(seed)  # flips and self-blends, in draw order
    degrades = np.random.default_rng([seed, 1])  # its own stream: degrade 0 changes no other draw
    crops = np.random.default_rng([seed, 2])  # likewise for train.crop
    n_synthetic, n_real = round(tp.batch_size * tp.synthetic), round(tp.batch_size * tp.real)
    n_fake = tp.batch_size - n_synthetic - n_real
    order = epoch_indices(len(fakes), steps * n_fake, rng) if n_fake else None  # none: pretraining
    real_order = epoch_indices(len(reals), steps * n_synthetic, rng) if n_synthetic else None
    # Drawn last, so that train.real = 0 leaves every other draw as it was.
    plain_order = epoch_indices(len(reals), steps * n_real, rng) if n_real else None
    for step in range(steps):
        xs, ys = [], []
        if n_fake:
            images, masks = fakes.gather(order[step * n_fake : (step + 1) * n_fake])
            images = degrade_batch(images, tp.degrade, degrades)
            xs.append(to_input(images, device))
            ys.append(to_target(masks, device))
        if n_synthetic:
            real, _ = reals.gather(real_order[step * n_synthetic : (step + 1) * n_synthetic])
            real = degrade_batch(real, tp.degrade, degrades)
            x_syn, y_syn = self_blend(to_input(real, device), flips, tp.blends)
            xs.append(x_syn)
            ys.append(y_syn)
        if n_real:
            real, empty = reals.gather(plain_order[step * n_real : (step + 1) * n_real])
            real = degrade_batch(real, tp.degrade, degrades)
            xs.append(to_input(real, device))
            ys.append(to_target(empty, device))
        x = torch.cat(xs).contiguous(memory_format=torch.channels_last) if len(xs) > 1 else xs[0]
        y = torch.cat(ys) if len(ys) > 1 else ys[0]
        if tp.augment == "flip":
            x, y = apply_flips(x, y, flip_draws(tp.batch_size, flips))
        if tp.crop is not None:
            x, y = random_crops(x, y, tp.crop, crops)
        yield x, y


def random_crops(x: torch.Tensor, y: torch.Tensor, side: int, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A `side` x `side` crop of every image of the batch and of its target, each at its own offset."""
    h, w = x.shape[-2:]
    if side > min(h, w):
        raise ValueError(f"train.crop = {side} is larger than the {h}x{w} training images; "
                         f"use at most {min(h, w)} or null")
    tops, lefts = rng.integers(0, h - side + 1, len(x)), rng.integers(0, w - side + 1, len(x))
    crop = [(slice(None), slice(t, t + side), slice(v, v + side)) for t, v in zip(tops.tolist(), lefts.tolist())]
    return (torch.stack([a[c] for a, c in zip(x, crop)]).contiguous(memory_format=torch.channels_last),
            torch.stack([a[c] for a, c in zip(y, crop)]))


def mean_iou(model: torch.nn.Module, pairs: Pairs, rt: Runtime, batch_size: int, ranks: Ranks = SINGLE) -> float:
    """Mean per-image IoU at threshold 0.5 (Dolos' protocol: a real face scores 1 if no pixel is
    flagged, else 0); with several ranks, each scores every world-th image."""
    part = slice(ranks.rank, None, ranks.world)
    scores = [iou_per_image(binarize(prob), true)
              for images, masks in pairs
              for prob, true in iter_probs_with_masks(model, images[part], masks[part], batch_size, rt.device,
                                                      rt.precision)]
    scores = np.concatenate(scores) if scores else np.zeros(0)
    total, count = distributed.all_sum([float(scores.sum()), len(scores)], ranks, rt.device)
    return total / count if count else float("nan")


def score_on_valid(model: torch.nn.Module, data: SplitData, rt: Runtime, batch_size: int, ranks: Ranks = SINGLE,
             ) -> dict[str, float]:
    """The selection score (localize.metrics.selection_score): the fakes' IoU, discounted for the real
    faces flagged. Pooled over all images, the more numerous fakes would drown the reals out."""
    fakes = mean_iou(model, data.valid, rt, batch_size, ranks)
    reals = mean_iou(model, data.real_valid, rt, batch_size, ranks)
    score = float(selection_score(fakes, reals))
    return {"valid_iou": fakes, "valid_real_clean": reals, "valid_score": score}


def new_model(mp: ModelParams, tp: TrainParams, split: str, device: torch.device, group: Ranks):
    """The network, seeded from (train.seed, split), and its optimizer."""
    torch.manual_seed(_epoch_seed(tp.seed, split, -1))
    model = build_model(mp).to(device).to(memory_format=torch.channels_last)
    if group.parallel and device.type == "cuda":
        # Per-GPU batches are small; statistics over the global batch keep BatchNorm as one process has it.
        # (SyncBatchNorm runs on accelerators only: CPU processes keep per-process statistics.)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, torch.optim.Adam(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)


def moving_average(model: torch.nn.Module, decay: float | None, state: dict[str, torch.Tensor] | None
                   ) -> torch.optim.swa_utils.AveragedModel | None:
    """train.ema: torch's exponential moving average of `model`'s weights and buffers (BatchNorm's
    statistics too, so the average validates as it stands), resumed from `state`; None when off."""
    if decay is None:
        return None
    average = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    if state is not None:
        average.load_state_dict(state)
    return average


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: Progress):
    with atomic_file(path) as tmp:
        save_file({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "progress": vars(progress)},
                  tmp)


def set_aside(path: Path) -> Path:
    """Rename a bad resume file out of the way (kept for a look, never read again): `<name>.corrupt`."""
    aside = path.with_name(path.name + ".corrupt")
    path.replace(aside)
    return aside


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict | None:
    """A checkpoint's dict, read as safely as a model (`weights_only`: tensors and plain values, no
    code runs). A file that cannot be read as one is named, set aside and reported: its split then
    trains from the start, instead of failing on every rerun. None when there is none."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(saved, dict) or not {"model", "optimizer", "progress"} <= set(saved):
            raise ValueError("not the train stage's checkpoint dict")
        if set(saved["progress"]) != {f.name for f in dataclasses.fields(Progress)}:
            raise ValueError("its progress record has other fields")
        return saved
    except FileNotFoundError:
        return None
    except Exception as e:  # truncated, empty, foreign, or a pickle that would run code
        aside = set_aside(path)
        tqdm.write(f"{path}: not a readable checkpoint ({_first_line(e)}); set aside as {aside.name}, "
                   "this split trains from epoch 1")
        return None


def load_checkpoint(path: Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    group: Ranks, device: torch.device) -> Progress | None:
    """Rank 0 reads the checkpoint, if any, and every rank resumes from its state."""
    saved = None
    if group.main and path is not None and path.exists():
        saved = read_checkpoint(path, "cpu" if group.parallel else device)
    saved = distributed.broadcast(saved, group)
    if saved is None:
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return Progress(**saved["progress"])


def checkpoint_epoch(path: Path) -> int:
    """The last finished epoch a checkpoint holds."""
    return torch.load(path, map_location="cpu", weights_only=True)["progress"]["epoch"]


def check_data(split: str, fakes: ArrayPool, reals: ArrayPool, tp: TrainParams) -> None:
    if len(fakes) == 0:
        raise ValueError(f"split {split!r}: no training images")
    for name in ("synthetic", "real"):
        if round(tp.batch_size * getattr(tp, name)) and len(reals) == 0:
            raise ValueError(f"split {split!r}: train.{name} = {getattr(tp, name)} needs real training faces "
                             "(real/train)")
    if tp.supervision == "weak":
        check_weak_data(split, reals)


def train_batches(fakes: ArrayPool, reals: ArrayPool, tp: TrainParams, split: str, epoch: int, steps: int,
                  device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, targets): masks under full supervision, image labels under weak."""
    if tp.supervision == "weak":
        return weak_batches(fakes, reals, tp.batch_size, tp.augment == "flip", _epoch_seed(tp.seed, split, epoch),
                            steps, device)
    return epoch_batches(fakes, reals, tp, split, epoch, steps, device)


def select_scores(model: torch.nn.Module, data: SplitData, mp: ModelParams, tp: TrainParams, rt: Runtime,
                  ranks: Ranks) -> dict[str, float]:
    """The epoch's valid row: image-level under weak supervision (no mask is read), else `score_on_valid`."""
    if tp.supervision == "weak":
        return weak_score_on_valid(model, data.valid, data.real_valid, rt, tp.batch_size, mp.arch)
    return score_on_valid(model, data, rt, tp.batch_size, ranks)


def stop_early(progress: Progress, patience: int | None) -> bool:
    """train.patience: `patience` epochs have passed since the best valid score. Never without a valid
    score (NaN: no valid data), so a split with nothing to select on trains its whole budget."""
    if patience is None or not progress.history or math.isnan(progress.history[-1]["valid_score"]):
        return False
    return progress.epoch - progress.best_epoch >= patience


def epoch_line(split: str, row: dict[str, float]) -> str:
    values = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch")
    return f"[{split}] epoch {row['epoch']}: {values}"


def fit(split: str, data: SplitData, mp: ModelParams, tp: TrainParams, rt: Runtime, group: Ranks = SINGLE,
        checkpoint: Path | None = None, on_epoch: Callable[[dict[str, float]], None] | None = None,
        verbose: bool = True, init: dict[str, torch.Tensor] | None = None,
        ) -> tuple[dict[str, torch.Tensor], Progress]:
    """Train one split; return the best epoch's weights (on CPU) and the run's progress record.

    `group` is the set of processes that train this split together (DDP): each trains on
    its slice of every global batch. Rank 0 alone reads and writes the checkpoint and reports;
    `verbose` False keeps it quiet too (the other processes of a `splits` run). `init`: the weights
    to start from (train.init: pretrained), else the seeded initialization.
    """
    fakes, reals = ArrayPool(data.train), ArrayPool(data.real_train)
    check_data(split, fakes, reals, tp)
    lo, hi = batch_slice(tp.batch_size, group)
    model, optimizer = new_model(mp, tp, split, rt.device, group)
    if init is not None:  # train.init: pretrained (a checkpoint, below, overrides it when resuming)
        model.load_state_dict(init)
    progress = load_checkpoint(checkpoint, model, optimizer, group, rt.device)
    if progress is None:
        progress = Progress()
        if tp.head_steps and has_head(model):  # a fresh start (a checkpoint already holds the refit head)
            refit_pixel_head(model, data.train, data.real_train, tp.head_steps, tp.real,
                             _epoch_seed(tp.seed, split, 0), rt.device, tp.degrade)
    elif group.main:
        tqdm.write(f"[{split}] resuming after epoch {progress.epoch} from {checkpoint}")
    average = moving_average(model, tp.ema, progress.ema_state)
    selected = average.module if average is not None else model  # what is validated and saved
    for row in progress.history if on_epoch else ():
        on_epoch(row)
    trained = model
    if group.parallel:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    loss_fn = training_loss(mp.arch, tp.supervision, tp.loss)
    forward = {"grid": True} if mp.arch in PATCH_ARCHS else {}  # a patch model learns on its patch map
    budget = plan_budget(len(fakes), tp)
    steps_per_epoch, total_steps = budget.steps_per_epoch, budget.steps

    for epoch in range(progress.epoch + 1, budget.epochs + 1):
        if stop_early(progress, tp.patience):
            break
        steps = budget.steps_in(epoch)
        torch.manual_seed(_epoch_seed(tp.seed, split, epoch) + group.rank)  # dropout: each rank its own draws
        model.train()
        total = 0.0
        bar = tqdm(range(steps), desc=f"{split} epoch {epoch}/{budget.epochs}", leave=False, dynamic_ncols=True,
                   disable=not (verbose and group.main))
        for step, (x, y) in zip(bar, train_batches(fakes, reals, tp, split, epoch, steps, rt.device)):
            with autocast(rt.device, rt.precision):
                logits = trained(x[lo:hi], **forward)
            # Equal slices: the mean of the ranks' mean losses is the global batch's loss, and
            # DDP's gradient average is its gradient.
            loss = loss_fn(logits, y[lo:hi])
            value = loss.item()
            if group.parallel:
                value = distributed.all_sum([value], group, rt.device)[0] / group.world
            if not math.isfinite(value):  # every rank sees the same value, so all stop together
                raise NonFiniteLoss(f"split {split!r}: loss is {value} at epoch {epoch}, step {step + 1}; "
                                    f"try a lower train.lr (now {tp.lr}) or train.precision=fp32")
            for param_group in optimizer.param_groups:
                param_group["lr"] = learning_rate(tp, (epoch - 1) * steps_per_epoch + step, total_steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update_parameters(model)
            total += value
            bar.set_postfix(loss=f"{total / (step + 1):.4f}")
        if group.parallel:
            # BatchNorm running statistics as rank 0 has them, so all ranks validate (and save) one model.
            for buffer in [*model.buffers(), *(average.buffers() if average is not None else ())]:
                torch.distributed.broadcast(buffer, 0)
        # Validation batches no larger than training ones: at 256 px a big batch would set the memory peak.
        row = {"epoch": epoch, "train_loss": total / steps, **select_scores(selected, data, mp, tp, rt, group)}
        progress.steps += steps
        progress.record(row, selected, last_epoch=epoch == budget.epochs)
        if average is not None:
            progress.ema_state = copy.deepcopy(average.state_dict())
        if stop_early(progress, tp.patience) and epoch < budget.epochs:
            progress.stopped = "patience"
        if group.main:
            tqdm.write(epoch_line(split, row))
            if progress.stopped and verbose:
                tqdm.write(f"[{split}] stopped after epoch {epoch} of {budget.epochs}: no better valid score for "
                           f"{tp.patience} epochs since epoch {progress.best_epoch} (train.patience)")
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, progress)
        if on_epoch:
            on_epoch(row)
    return progress.best_weights(selected), progress
