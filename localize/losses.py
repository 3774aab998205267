"""Losses as pure tensor functions; `train.loss` picks one from LOSSES.

Shapes: logits and target are (N, 1, H, W) or (N, H, W); target is 1 = fake, 0 = real.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def soft_dice(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-image soft Dice coefficient, shape (N,).

    The smoothing term `eps` handles empty masks explicitly: an image with no fake pixel
    and no predicted mass scores 1, and any predicted mass on it lowers the score, so
    real faces teach the model to stay quiet instead of being ignored.
    """
    prob = prob.flatten(1).float()
    target = target.flatten(1).float()
    inter = (prob * target).sum(1)
    total = prob.sum(1) + target.sum(1)
    return (2 * inter + eps) / (total + eps)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice on sigmoid probabilities (the seed report's loss)."""
    return 1 - soft_dice(torch.sigmoid(logits.float()), target, eps).mean()


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0) -> torch.Tensor:
    """Dice plus per-pixel BCE: Dice fits the region's extent, BCE gives every pixel a gradient."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float().reshape(logits.shape))
    return dice_loss(logits, target) + bce_weight * bce


def max_pixel_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE of each image's most confident pixel against whether the image has any fake pixel.

    Dolos' real-face rule fails a real face on one pixel above the threshold, and per-pixel BCE
    averages that pixel away among thousands; this term's whole gradient goes to it (and, on a
    fake, to the pixel that should be found).
    """
    peak = logits.float().flatten(1).amax(1)
    has_fake = (target.flatten(1) > 0.5).any(1).float()
    return F.binary_cross_entropy_with_logits(peak, has_fake)


def dice_bce_max_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice + per-pixel BCE + the max-pixel BCE (`max_pixel_bce`): fewer real faces with a stray pixel."""
    return dice_bce_loss(logits, target) + max_pixel_bce(logits, target)


LOSSES = {"dice": dice_loss, "dice-bce": dice_bce_loss, "dice-bce-max": dice_bce_max_loss}


def patch_targets(target: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The mask on the patch grid: a patch is fake (1) when at least half of its cell is.

    Each patch's cell is its share of the image (adaptive area average), then thresholded at
    0.5, so the targets are hard labels as in a two-class cross-entropy, not soft fractions.
    """
    target = target.float().reshape(target.shape[0], 1, *target.shape[-2:])
    return (F.adaptive_avg_pool2d(target, grid) >= 0.5).float()


def patch_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-patch cross-entropy against the mask on the patch grid (Patch Forensics, full masks).

    `logits` (N, 1, g, g) are fake-minus-real logits: the two-class cross-entropy is the binary
    cross-entropy of their difference.
    """
    return F.binary_cross_entropy_with_logits(logits.float(), patch_targets(target, logits.shape[-2:]))


def pooled_logit(logits: torch.Tensor) -> torch.Tensor:
    """One image logit from a map (N, 1, H, W) -> (N,): log-mean-exp over the pixels.

    Between the mean (a small fake region would be averaged away) and the max (one pixel would
    take every gradient); a constant map of logit c pools to c, so an image label is a per-pixel
    label too when the map is flat.
    """
    flat = logits.float().flatten(1)
    return torch.logsumexp(flat, 1) - math.log(flat.shape[1])


def image_label_losses(logits: torch.Tensor, labels: torch.Tensor, per_patch: bool) -> torch.Tensor:
    """Weak supervision, per image (N,): BCE against image labels, 1 = fake, 0 = real; no mask is used.

    `per_patch`: the label copied to every patch of a patch map, averaged over the patches
    (Dolos' Patch Forensics); otherwise the map's pooled logit (`pooled_logit`) against the
    label (the U-Nets).
    """
    logits, labels = logits.float(), labels.float()
    if per_patch:
        target = labels.view(-1, 1, 1, 1).expand_as(logits)
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return F.binary_cross_entropy_with_logits(pooled_logit(logits), labels, reduction="none")


def image_label_loss(logits: torch.Tensor, labels: torch.Tensor, per_patch: bool) -> torch.Tensor:
    """The batch mean of `image_label_losses`: the weak training loss."""
    return image_label_losses(logits, labels, per_patch).mean()
