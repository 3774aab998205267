"""A training run's budget in units a user can reason about: steps, images, passes over the fakes.

`train.epochs` x `train.steps_per_epoch` (null: one pass over the split's training fakes per
epoch), capped at `train.max_steps`, is the most a model trains; `train.patience` may stop it
sooner. A pass counts the generators' training fakes only: a batch also holds real faces
(`train.real`) and self-blends (`train.synthetic`), or half real faces under weak supervision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def fakes_per_batch(batch_size: int, supervision: str, synthetic: float, real: float) -> int:
    """How many of the generators' fakes one training batch holds (localize.training.epoch_batches,
    localize.supervision.weak_batches)."""
    if supervision == "weak":
        return batch_size - batch_size // 2
    return batch_size - round(batch_size * synthetic) - round(batch_size * real)


@dataclass(frozen=True)
class Budget:
    """The planned budget of one model: what its split's data and `train` params allow at most."""

    train_fakes: int  # the split's training fakes (every training generator pooled)
    batch_size: int
    fakes_per_batch: int
    steps_per_epoch: int
    epochs: int  # epochs that run (the last one shortened where max_steps cuts it)
    steps: int  # optimizer steps in all, at most

    @property
    def images_seen(self) -> int:
        return self.steps * self.batch_size

    @property
    def passes(self) -> float:
        """Passes over the training fakes that the whole budget makes."""
        return self.steps * self.fakes_per_batch / self.train_fakes if self.train_fakes else math.inf

    def steps_in(self, epoch: int) -> int:
        """Steps of 1-based `epoch`: steps_per_epoch, except a last epoch that max_steps shortens."""
        return max(0, min(self.steps_per_epoch, self.steps - (epoch - 1) * self.steps_per_epoch))

    def record(self, trained_steps: int | None = None, stopped: str | None = None) -> dict[str, Any]:
        """What a saved model keeps (models/<split>.pt `budget`) and evaluate reports."""
        steps = self.steps if trained_steps is None else trained_steps
        return {"steps": steps, "planned_steps": self.steps, "batch_size": self.batch_size,
                "images_seen": steps * self.batch_size, "train_fakes": self.train_fakes,
                "passes": round(steps * self.fakes_per_batch / self.train_fakes, 4) if self.train_fakes else None,
                "stopped": stopped}


def plan_budget(train_fakes: int, tp: Any) -> Budget:
    """The budget of `tp` (TrainParams) on a split with `train_fakes` training fakes."""
    per_batch = fakes_per_batch(tp.batch_size, tp.supervision, tp.synthetic, tp.real)
    steps_per_epoch = tp.steps_per_epoch or max(1, math.ceil(train_fakes / per_batch))
    steps = tp.epochs * steps_per_epoch
    if tp.max_steps is not None:
        steps = min(steps, tp.max_steps)
    return Budget(train_fakes=train_fakes, batch_size=tp.batch_size, fakes_per_batch=per_batch,
                  steps_per_epoch=steps_per_epoch, epochs=math.ceil(steps / steps_per_epoch), steps=steps)


def under_one_pass(budgets: dict[str, Budget]) -> str | None:
    """One line naming the splits whose whole budget covers less than one pass over their training
    fakes, with the numbers; None when every split gets at least one pass."""
    short = {s: b for s, b in budgets.items() if b.passes < 1}
    if not short:
        return None
    fakes = sorted(x.train_fakes for x in short.values())
    worst = min(short, key=lambda s: short[s].passes)
    b = short[worst]
    span = f"{fakes[0]:,}" if fakes[0] == fakes[-1] else f"{fakes[0]:,} to {fakes[-1]:,}"
    return (f"budget: {len(short)} of {len(budgets)} models train on less than one pass over their training fakes "
            f"({span}): {worst} trains {b.steps:,} steps x {b.batch_size} = {b.images_seen:,} images, "
            f"{b.steps * b.fakes_per_batch:,} of them its {b.train_fakes:,} fakes, {b.passes:.2f} of a pass; "
            "train.steps_per_epoch: null makes each epoch one pass (recorded in metrics/summary.json `budget`)")


def summary_record(budgets: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """summary.json's `budget`, compact for `dvc metrics show`: how many models trained on less than one
    pass over their training fakes, and the least-trained one's steps, images_seen, train_fakes and
    passes. None when every model had a pass or more (the key is then left out)."""
    short = {s: b for s, b in budgets.items() if b and b.get("passes") is not None and b["passes"] < 1}
    if not short:
        return None
    split = min(short, key=lambda s: short[s]["passes"])
    return {"under_one_pass": len(short), "models": len(budgets), "least_trained": split,
            **{k: short[split][k] for k in ("steps", "images_seen", "train_fakes", "passes")}}
