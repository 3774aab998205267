"""A localizer built for traces on a CPU budget: noise residuals in, a thin full-resolution
path, a deep encoder for context.

Where the compute goes. The seed U-Net spends most of its multiply-adds on 32- and
64-channel convolutions at full resolution. Here the full-resolution path is one block of
`width // 2` channels: enough to carry the pixel-level residuals to the output, while
the encoder pools four times, so that a 64 px image ends in a 4 x 4 map whose receptive
field covers the whole face. That is about a third of the seed's multiply-adds at the
default width, and the bottleneck sees the region as a whole: a repainted area is
told apart by how its noise differs from the rest of the face, not by where it sits.

What it sees. RGB plus the fixed SRM high-pass residuals (`unet_res.SRMFilter`):
inpainting leaves its strongest trace in the noise (fills too smooth, or texture copied
from elsewhere), and from scratch on little data the first convolution would need many
steps to learn such filters.

`unet-tex` (the default) also sees the local residual statistics that the `texture` baseline
classifies (localize/residuals.py: log residual energies at three window sizes and two scales,
each also relative to the image's median), and adds a per-pixel classifier on them (1 x 1
convolutions) to its logits: the baseline's per-pixel decision is then a few steps away, and the
U-Net spends its steps on the context around it. `unet-tex-inputs` has the inputs, not the head.

`context` > 1 splits the resolutions: the statistics and the per-pixel head stay at the input's
full resolution, where the trace is (a 64 px resize of a 128 px fill averages most of it away),
while the U-Net, the costly part, runs on the image and the statistics averaged over context x
context blocks, and its logits are upsampled bilinearly before the head's are added. The network
then costs what it costs at the lower side; only the fixed statistics and the 1 x 1 head pay for
the full one.

The blocks are the seed's (Conv-BN-ReLU x 2, `parts.ConvBlock`); downsampling is a
max-pool, upsampling bilinear, as in the seed, so only the layout differs. Any input side
works: each up step resizes to its skip's exact size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from localize.models.parts import ConvBlock
from localize.models.unet_res import SRMFilter
from localize.residuals import FEATURES, residual_features


class HighPassUNet(nn.Module):
    def __init__(self, width: int = 32, dropout: float = 0.1, depth: int = 4, residual_stats: bool = False,
                 pixel_head: bool = False, context: int = 1):
        super().__init__()
        self.context = context
        self.srm = SRMFilter()
        # unet-tex: the texture baseline's local residual statistics as extra input channels
        # (localize/residuals.py), normalized by a BatchNorm since their scales are log energies.
        self.stats = nn.BatchNorm2d(FEATURES) if residual_stats else None
        c_in = 3 + 9 + (FEATURES if residual_stats else 0)
        # A per-pixel classifier on those statistics (1x1 convolutions), added to the U-Net's logits:
        # what the texture baseline computes, learnt in few steps; the U-Net adds the context.
        self.pixel = nn.Sequential(nn.Conv2d(FEATURES, 32, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 32, 1),
                                   nn.ReLU(inplace=True), nn.Conv2d(32, 1, 1)) if pixel_head else None
        # Level 0 is full resolution (width // 2 channels); level k > 0 has width * 2**(k-1), capped at 8x.
        widths = [max(width // 2, 1)] + [width * 2 ** min(k - 1, 3) for k in range(1, depth + 1)]
        self.down = nn.ModuleList(
            ConvBlock(c_in if k == 0 else widths[k - 1], widths[k], dropout if k >= 2 else 0.0)
            for k in range(depth + 1)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(ConvBlock(widths[k + 1] + widths[k], widths[k], 0.0) for k in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def downscale(self, x: torch.Tensor) -> torch.Tensor:
        """Block averages over context x context (a partial block at the border averages what it has)."""
        return x if self.context == 1 else F.avg_pool2d(x, self.context, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats, logits = self.forward_parts(x)
        return logits + self.pixel(stats) if self.pixel is not None else logits

    def forward_parts(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(the normalized residual statistics at full size or None, the U-Net's logits at full size):
        forward's two terms before the per-pixel head, so the head can be fitted alone on them."""
        stats = self.stats(residual_features(x).to(x.dtype)) if self.stats is not None else None  # full resolution
        low = self.downscale(x)
        parts = [low, self.srm(low)]  # (N, 12, h, w): colour and noise residuals at the context path's side
        if stats is not None:
            parts.append(self.downscale(stats))
        y = torch.cat(parts, 1)
        skips = []
        for k, block in enumerate(self.down):
            y = block(y if k == 0 else self.pool(y))  # (N, widths[k], H / 2^k, W / 2^k)
            skips.append(y)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        logits = self.head(y)  # (N, 1, h, w)
        if self.context > 1:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return stats, logits
