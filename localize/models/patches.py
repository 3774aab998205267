"""Patch Forensics (Chai, Bau, Lim & Isola, ECCV 2020): a truncated Xception that classifies patches.

The layout is Xception's (Chollet 2017) entry flow up to the end of its second block:
- stem: Conv 3x3 stride 2 (32) + BN + ReLU, Conv 3x3 (64) + BN + ReLU, both unpadded;
- block 1: SepConv 128 + BN, ReLU, SepConv 128 + BN, MaxPool 3x3 stride 2, plus a 1x1 stride-2
  conv + BN shortcut (no ReLU before the first SepConv, as in Xception);
- block 2: the same with 256 channels, a ReLU before each SepConv;
- head: 1x1 conv to 2 classes (real, fake) per position: about 0.19 M parameters, trained from
  scratch. At 299 px the patch map is 37 x 37, each patch seeing 43 x 43 pixels.

Where this differs from Xception, and why:
- the head returns one logit per patch, fake minus real, not the two class logits: a softmax
  over two classes is the sigmoid of their difference, so the per-patch cross-entropy is the same
  number, and the pipeline's losses, maps and thresholds all take one fake logit per location;
- `forward` upsamples that patch map bilinearly to the input size, so evaluation and predict read
  it like a U-Net's map (Dolos' protocol: upsample the patch map to the mask's size); training
  asks for the patch map itself with `grid=True`.
Nothing else changes; the grid at any size follows from the unpadded stem and the two padded
stride-2 pools (`grid_size`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RECEPTIVE_FIELD = 43  # pixels one patch logit sees (stem 7, block 1 to 19, block 2 to 43)


def grid_size(size: int) -> int:
    """Side of the patch map for a `size` x `size` input."""
    side = (size - 3) // 2 + 1 - 2  # the two unpadded stem convs
    for _ in range(2):  # each block's MaxPool 3x3, stride 2, padding 1
        side = (side - 1) // 2 + 1
    return side


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, Xception's separable convolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False))


class XceptionBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, start_with_relu: bool):
        super().__init__()
        layers = [nn.ReLU()] if start_with_relu else []
        layers += [SeparableConv(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(),
                   SeparableConv(c_out, c_out), nn.BatchNorm2d(c_out), nn.MaxPool2d(3, 2, padding=1)]
        self.body = nn.Sequential(*layers)
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class PatchForensics(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        )
        self.block1 = XceptionBlock(64, 128, start_with_relu=False)
        self.block2 = XceptionBlock(128, 256, start_with_relu=True)
        self.head = nn.Conv2d(256, 2, 1)

    def forward(self, x: torch.Tensor, grid: bool = False) -> torch.Tensor:
        classes = self.head(self.block2(self.block1(self.stem(x))))  # (N, 2, g, g)
        logits = classes[:, 1:2] - classes[:, 0:1]  # (N, 1, g, g): fake minus real
        if grid:
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
