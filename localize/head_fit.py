"""Refit `unet-tex`'s per-pixel head to convergence before fine-tuning (train.head_steps).

Why: the head is a per-pixel classifier on the residual statistics (localize/residuals.py), the
function the `texture` baseline's trees learn from 80k pixels in seconds. Inside the U-Net it gets
only the fine-tune's few optimizer steps, shared with everything else, and a small network fit that
briefly stays far from what the same statistics allow. Here it is fitted alone, first: on a fixed
sample of the split's training pixels (fakes and real faces, as the trees' sample), by per-pixel BCE
of the whole model's logit, with the rest of the network frozen and in eval mode (its logit is a fixed
offset), so the head learns what the pretrained U-Net does not already say. Then fine-tuning starts
from there as before.

Under train.degrade the sampled images are degraded as the fine-tune's are (localize/degrade.py), so
the head is fitted on the statistics it will be trained and judged on, not on pristine pixels only.

Seeded by (train.seed, split): the pixel sample, its degradations and the minibatches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from localize.batches import to_input
from localize.degrade import degrade_batch
from localize.pixel_sample import Pairs, sampled_batches

PIXELS = 80_000  # sampled training pixels, as the texture baseline's default
BATCH_PIXELS = 4096  # per optimizer step
LR = 3e-3
IMAGES = 64  # images per forward pass while sampling


def has_head(model: torch.nn.Module) -> bool:
    return getattr(model, "pixel", None) is not None and hasattr(model, "forward_parts")


def _sample(model: torch.nn.Module, pairs: Pairs, n: int, rng: np.random.Generator, device: torch.device,
            degrade: float, degrades: np.random.Generator):
    """`n` pixels drawn uniformly from `pairs` (localize/pixel_sample.py), each image first degraded with
    probability `degrade`: normalized statistics (n, F), the frozen rest's logit (n,) and the label (n,);
    None when there is none."""
    stats, offsets, labels = [], [], []
    for batch, batch_labels, local in sampled_batches(pairs, n, rng, IMAGES):
        x = to_input(degrade_batch(batch, degrade, degrades)).to(device).contiguous(memory_format=torch.channels_last)
        s, offset = model.forward_parts(x)
        idx = torch.from_numpy(local)
        stats.append(s.permute(0, 2, 3, 1).reshape(-1, s.shape[1])[idx].float().cpu())
        offsets.append(offset.reshape(-1)[idx].float().cpu())
        labels.append(torch.from_numpy(batch_labels))
    if not labels:
        return None
    return torch.cat(stats), torch.cat(offsets), (torch.cat(labels) != 0).float()


def refit_pixel_head(model: torch.nn.Module, fakes: Pairs, reals: Pairs, steps: int, real_share: float,
                     seed: int, device: torch.device, degrade: float = 0.0) -> None:
    """Fit `model.pixel` in place for `steps` steps on sampled training pixels (their images degraded
    with probability `degrade`, as train.degrade does to the fine-tune's)."""
    rng = np.random.default_rng(seed)
    degrades = np.random.default_rng([seed, 1])  # its own stream: degrade 0 changes no other draw
    n_real = int(round(PIXELS * real_share)) if reals else 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        parts = [p for p in (_sample(model, fakes, PIXELS - n_real, rng, device, degrade, degrades),
                             _sample(model, reals, n_real, rng, device, degrade, degrades)) if p is not None]
    model.train(was_training)
    stats, offsets, labels = (torch.cat(t).to(device) for t in zip(*parts))
    optimizer = torch.optim.Adam(model.pixel.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(labels), (BATCH_PIXELS,), generator=generator).to(device)
        logit = offsets[i] + model.pixel(stats[i][:, :, None, None]).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(logit, labels[i])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
