"""A stronger localizer: a residual U-Net that also sees noise residuals.

Inpainting leaves few traces a person can see, but it breaks the camera's noise: filled
regions are too smooth, or carry another photo's noise. Fixed SRM high-pass filters
(Fridrich & Kodovsky 2012, used for manipulation localization by Zhou et al. 2018) hand
the network those residuals directly instead of hoping the first convolution learns them
from little data. Residual blocks and one more level than the seed give a deeper,
better-conditioned encoder at a similar width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from localize.models.parts import ResBlock

# The three SRM kernels of Zhou et al.: a 2nd-order, a 3rd-order (KV) and an edge residual.
_SRM = torch.tensor(
    [
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
        [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
        [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    ],
    dtype=torch.float32,
) / torch.tensor([2.0, 12.0, 4.0]).view(3, 1, 1)


class SRMFilter(nn.Module):
    """Fixed high-pass filters applied to each colour channel: 3 -> 9 residual channels."""

    def __init__(self):
        super().__init__()
        kernels = _SRM.unsqueeze(1).repeat(3, 1, 1, 1)  # (9, 1, 5, 5): 3 kernels per channel
        self.register_buffer("weight", kernels, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Residuals of [-1, 1] inputs are small; the scale keeps them near unit variance.
        return F.conv2d(x, self.weight.to(x.dtype), padding=2, groups=3) * 4.0


class ResUNet(nn.Module):
    def __init__(self, width: int = 32, depth: int = 4, dropout: float = 0.1, srm: bool = True):
        super().__init__()
        self.srm = SRMFilter() if srm else None
        c_in = 3 + (9 if srm else 0)
        widths = [width * 2**k for k in range(depth)]
        self.stem = nn.Conv2d(c_in, widths[0], 3, padding=1, bias=False)
        self.down = nn.ModuleList(
            ResBlock(widths[max(k - 1, 0)], widths[k], dropout if k else 0.0) for k in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(ResBlock(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(depth - 1)))
        self.head = nn.Sequential(nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.Conv2d(widths[0], 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.srm is not None:
            x = torch.cat([x, self.srm(x)], 1)  # (N, 12, H, W)
        y = self.stem(x)
        skips = []
        for k, block in enumerate(self.down):
            y = block(y if k == 0 else self.pool(y))  # (N, width*2^k, H/2^k, W/2^k)
            skips.append(y)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        return self.head(y)  # (N, 1, H, W) logits
