"""The seed report's U-Net, as its text describes it (docs/models-and-supervision.md, "Models").

Two choices the report leaves open, made here:
- widths: block k has `width * 2**(k-1)` channels (32, 64, 128 by default);
- the third up block: the encoder pools only twice, so after two x2 up blocks the map is
  back at full resolution and up 3 upsamples by 1 (a plain conv block on the last concat).
"""

from __future__ import annotations

import torch
from torch import nn

from localize.models.parts import ConvBlock, UpBlock


class SeedUNet(nn.Module):
    def __init__(self, width: int = 32, dropout: float = 0.2):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.block1 = ConvBlock(3, c1, dropout)
        self.block2 = ConvBlock(c1, c2, dropout)
        self.block3 = ConvBlock(c2, c3, dropout)
        self.pool = nn.MaxPool2d(2)
        self.up1 = UpBlock(c3, c2)
        self.up2 = UpBlock(2 * c2, c1)
        self.up3 = UpBlock(2 * c1, c1, scale=1)
        self.head = nn.Conv2d(c1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.block1(x)  # (N, c1, H, W)
        x2 = self.block2(self.pool(x1))  # (N, c2, H/2, W/2)
        x3 = self.block3(self.pool(x2))  # (N, c3, H/4, W/4)
        y = torch.cat([self.up1(x3), x2], 1)  # (N, 2*c2, H/2, W/2)
        y = torch.cat([self.up2(y), x1], 1)  # (N, 2*c1, H, W)
        return self.head(self.up3(y))  # (N, 1, H, W) logits
