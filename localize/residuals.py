"""Local residual statistics of an image: the hand-made features of the `texture` baseline, and
the fixed input channels (and the per-pixel head) of `unet-tex`.

Inpainting leaves its plainest trace in the high-frequency residual: a diffusion fill (Telea,
Navier-Stokes, biharmonic) is too smooth, a copied or blended texture carries another region's
noise. Per pixel, the features are the log energy of the luminance's Laplacian residual in
3, 5 and 9 px windows, at full and half resolution, each also relative to the image's own
median energy (so that a sharp photo and a soft one are judged against themselves); the chroma
residuals' energy; and the local colour (Y, Cb, Cr). One function serves both users, so the
baseline and the network see the very same statistics.

Input: float (N, 3, H, W) RGB in [-1, 1] (`localize.batches.to_input`). Output: float
(N, FEATURES, H, W). Pure tensor code with fixed kernels: no parameter, no state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOWS = (3, 5, 9)
# Names, in channel order.
NAMES = (
    *(f"y_energy_{k}" for k in WINDOWS),
    *(f"y_energy_{k}_rel" for k in WINDOWS),
    *(f"y_half_energy_{k}" for k in WINDOWS),
    *(f"y_half_energy_{k}_rel" for k in WINDOWS),
    "cb_energy_5", "cr_energy_5", "y", "cb", "cr",
)
FEATURES = len(NAMES)

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0
_EPS = 1e-6  # energy floor: [-1, 1] inputs quantized to 8 bits have residuals of ~1e-2 and more


def ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) -> Y, Cb, Cr (ITU-R BT.601), same range."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.cat([y, 0.564 * (b - y), 0.713 * (r - y)], 1)


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Laplacian residual, same size (replicated borders, so edges stay quiet)."""
    c = x.shape[1]
    kernel = _LAPLACIAN.to(x.dtype).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def local_energy(residual: torch.Tensor, window: int) -> torch.Tensor:
    """log of the mean squared residual in a window x window neighbourhood."""
    pad = window // 2
    mean_sq = F.avg_pool2d(F.pad(residual.square(), (pad, pad, pad, pad), mode="replicate"), window, stride=1)
    return torch.log(mean_sq + _EPS)


def relative(log_energy: torch.Tensor) -> torch.Tensor:
    """Log energy minus the image's own median log energy (per image and channel)."""
    median = log_energy.flatten(2).median(dim=2).values[..., None, None]
    return log_energy - median


def _energies(y: torch.Tensor) -> list[torch.Tensor]:
    absolute = [local_energy(laplacian(y), k) for k in WINDOWS]
    return absolute + [relative(e) for e in absolute]


def residual_features(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [-1, 1] -> (N, FEATURES, H, W), channel order as in NAMES."""
    x = x.float()
    yuv = ycbcr(x)
    y = yuv[:, 0:1]
    full = _energies(y)
    h, w = y.shape[-2:]
    half = F.avg_pool2d(y, 2, ceil_mode=True) if min(h, w) >= 2 else y
    coarse = [F.interpolate(e, size=(h, w), mode="bilinear", align_corners=False) for e in _energies(half)]
    chroma = [local_energy(laplacian(yuv[:, c : c + 1]), 5) for c in (1, 2)]
    return torch.cat([*full, *coarse, *chroma, yuv], 1)
