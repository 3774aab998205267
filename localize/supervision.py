"""What a model learns from (`train.supervision`): full masks, or image labels alone.

- `full`: the masks (today's recipe); a patch model (`model.arch: patches`) learns from the mask
  on its patch grid (losses.patch_loss), a U-Net from `train.loss`.
- `weak`: image labels only, real = 0 and fake = 1, as in the Dolos paper's weak setups. A batch
  is half the training generators' fakes and half real training faces (classes balanced, as
  selection weighs them); a patch model gets the label on every patch, a U-Net the label on its
  map's pooled logit (losses.image_label_loss). Masks are never read: batches and validation
  gather images only. The best epoch is picked by the image-level valid loss, fakes and reals
  weighted equally (Dolos: the checkpoint with the lowest valid loss), never by a mask.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from localize.batches import ArrayPool, epoch_indices, flip_draws, to_input
from localize.losses import LOSSES, image_label_loss, image_label_losses, patch_loss, pooled_logit
from localize.metrics import roc_auc
from localize.models import PATCH_ARCHS
from localize.runtime import Runtime, autocast


def per_patch(arch: str) -> bool:
    """True for models trained on their own patch map (forward(x, grid=True))."""
    return arch in PATCH_ARCHS


def training_loss(arch: str, supervision: str, loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """loss(logits, target): target is the masks (full) or the image labels (weak)."""
    if supervision == "weak":
        return functools.partial(image_label_loss, per_patch=per_patch(arch))
    return patch_loss if per_patch(arch) else LOSSES[loss]


def weak_batches(fakes: ArrayPool, reals: ArrayPool, batch_size: int, flip: bool, seed: int, steps: int,
                 device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (images, labels): half fakes (1), half real faces (0), shuffled, flipped at random.

    The shuffle within a batch matters under DDP: each rank keeps a slice, which would
    otherwise be all fakes on one rank and all reals on another.
    """
    rng = np.random.default_rng(seed)
    draws = torch.Generator().manual_seed(seed)
    n_real = batch_size // 2
    n_fake = batch_size - n_real
    fake_order = epoch_indices(len(fakes), steps * n_fake, rng)
    real_order = epoch_indices(len(reals), steps * n_real, rng)
    labels = torch.cat([torch.ones(n_fake), torch.zeros(n_real)])
    for step in range(steps):
        fake, _ = fakes.gather(fake_order[step * n_fake : (step + 1) * n_fake], masks=False)
        real, _ = reals.gather(real_order[step * n_real : (step + 1) * n_real], masks=False)
        x = to_input(np.concatenate([fake, real]), device)
        order = torch.randperm(batch_size, generator=draws)
        x, y = x[order], labels[order].to(device)
        if flip:
            flipped = flip_draws(batch_size, draws)
            x[flipped] = x[flipped].flip(-1)
        yield x.contiguous(memory_format=torch.channels_last), y


def _image_losses(model: torch.nn.Module, pairs, label: float, rt: Runtime, batch_size: int, patches: bool,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-image weak losses and pooled logits (the image score) of every image in `pairs`."""
    losses, scores = [], []
    with torch.inference_mode():
        for images, _masks in pairs:  # the masks stay unread
            for start in range(0, len(images), batch_size):
                x = to_input(np.array(images[start : start + batch_size]), rt.device)
                with autocast(rt.device, rt.precision):
                    logits = model(x, grid=True) if patches else model(x)
                labels = torch.full((len(x),), label, device=rt.device)
                losses.append(image_label_losses(logits, labels, patches).cpu().numpy())
                scores.append(pooled_logit(logits).cpu().numpy())
    if not losses:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(losses), np.concatenate(scores)


def weak_score_on_valid(model: torch.nn.Module, valid, real_valid, rt: Runtime, batch_size: int, arch: str,
                  ) -> dict[str, float]:
    """Image-level selection: valid loss (fakes and reals weighted equally) and detection AUC.

    `valid_score` is exp(-loss): it orders epochs as the loss does, and stays in (0, 1] like
    the full-supervision score that Progress compares. Every rank scores every image, so
    all ranks pick the same epoch without a collective.
    """
    model.eval()
    fake_loss, fake_score = _image_losses(model, valid, 1.0, rt, batch_size, per_patch(arch))
    real_loss, real_score = _image_losses(model, real_valid, 0.0, rt, batch_size, per_patch(arch))
    if not len(fake_loss) or not len(real_loss):
        nan = float("nan")
        return {"valid_loss": nan, "valid_auc": nan, "valid_score": nan}
    loss = (float(fake_loss.mean()) + float(real_loss.mean())) / 2
    auc = roc_auc(np.concatenate([fake_score, real_score]),
                  np.concatenate([np.ones(len(fake_score)), np.zeros(len(real_score))]))
    return {"valid_loss": loss, "valid_auc": auc, "valid_score": math.exp(-loss)}


def check_weak_data(split: str, reals: ArrayPool) -> None:
    if len(reals) == 0:
        raise ValueError(f"split {split!r}: train.supervision=weak needs real training faces (real/train), "
                         "the images labelled 0; use train.supervision=full")
