"""Generator-agnostic training fakes, made on the fly from real faces.

A model trained on a few generators learns their fingerprints and little else, which is
why leave-one-out scores collapse on a generator it never saw. Self-blended fakes
(Shiohara & Yamasaki, CVPR 2022) attack that: paste into a real face a region of a
slightly altered copy of itself, or of another real face, under a random soft-edged
mask. The only cue left is the inconsistency at and inside the blended region, which
every inpainting method also leaves. Everything here runs on tensors in [-1, 1], so no
image is decoded and the real faces' own noise is kept outside the region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from localize.params import CLASSIC_BLENDS


def random_masks(n: int, size: int, generator: torch.Generator, min_area: float = 0.03,
                 max_area: float = 0.4) -> torch.Tensor:
    """(n, 1, size, size) float masks: unions of 1-3 ellipses and boxes, soft-edged."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        target = min_area + (max_area - min_area) * torch.rand((), generator=generator).item()
        for _ in range(int(torch.randint(1, 4, (), generator=generator))):
            cy, cx = (torch.rand(2, generator=generator) * 1.2 - 0.6).tolist()
            ry, rx = (torch.rand(2, generator=generator) * 0.5 + 0.15).mul(target**0.5 * 1.6).tolist()
            if torch.rand((), generator=generator) < 0.5:
                shape = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
            else:
                shape = ((ys - cy).abs() <= ry) & ((xs - cx).abs() <= rx)
            masks[i, 0] = torch.maximum(masks[i, 0], shape.float())
    # A soft edge, as blending tools and inpainting networks leave; the label is the hard region.
    return F.avg_pool2d(masks, 3, stride=1, padding=1, count_include_pad=False)


def _blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


# The kinds of donor a self-blend pastes (localize.params.BLENDS). The first three are the original
# set (and draw the same random numbers as before); `resample` and `noise` add two traces that
# generative inpainters leave whatever their architecture: texture rebuilt from a coarser grid (a
# decoder's upsampling) and a noise level that is not the camera's. Neither is a demo generator.


def _donor(real: torch.Tensor, i: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """The altered copy that self_blend pastes into face `i` of `real` (B,3,H,W) in [-1, 1]."""
    b = real.shape[0]
    face = real[i : i + 1]
    if kind == "blur":  # a smooth fill, as diffusion-style inpainting leaves
        return _blur(face, int(torch.randint(1, 4, (), generator=generator)) * 2 + 1)[0]
    if kind == "splice" and b > 1:  # a splice from another face, as blending leaves
        return real[(i + 1 + int(torch.randint(0, b - 1, (), generator=generator))) % b]
    if kind == "resample":  # texture rebuilt from a coarser grid, as a decoder's upsampling leaves
        factor = int(torch.randint(2, 4, (), generator=generator))
        small = F.interpolate(face, scale_factor=1 / factor, mode="area")
        return F.interpolate(small, size=face.shape[-2:], mode="bilinear", align_corners=False)[0]
    if kind == "noise":  # a noise level that is not the camera's: 1-4 grey levels of Gaussian noise
        sigma = (1 + 3 * torch.rand((), generator=generator)).item() / 127.5
        return (face[0] + sigma * torch.randn(face.shape[1:], generator=generator).to(face)).clamp(-1, 1)
    # shift (and a splice with no other face): the same face, shifted and recoloured: texture that does not line up
    dy, dx = torch.randint(-4, 5, (2,), generator=generator).tolist()
    gain = 1 + 0.1 * (torch.rand(3, 1, 1, generator=generator) - 0.5)
    return (torch.roll(real[i], (dy, dx), (1, 2)) * gain.to(real)).clamp(-1, 1)


def self_blend(real: torch.Tensor, generator: torch.Generator,
               kinds: tuple[str, ...] | list[str] = CLASSIC_BLENDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Fakes and their masks (1 = fake) from real faces (B,3,H,W) in [-1, 1]; each donor one of `kinds`."""
    b, _, h, w = real.shape
    soft = random_masks(b, h, generator).to(real.device, real.dtype)
    donor = real.clone()
    kind = torch.randint(0, len(kinds), (b,), generator=generator)
    for i in range(b):
        donor[i] = _donor(real, i, kinds[int(kind[i])], generator)
    fake = real * (1 - soft) + donor * soft
    return fake, (soft > 0.5).to(real.dtype)
