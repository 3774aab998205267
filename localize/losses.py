"""Losses as pure tensor functions; `train.loss` picks one from LOSSES.

Shapes: logits and target are (N, 1, H, W) or (N, H, W); target is 1 = fake, 0 = real.
"""

from __future__ import annotations

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


LOSSES = {"dice": dice_loss, "dice-bce": dice_bce_loss}
