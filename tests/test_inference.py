"""Test-time flip averaging on hand-checkable models."""

import torch
from torch import nn

from localize.inference import FlipAverage, with_tta


class Ramp(nn.Module):
    """Logit = first channel times the column index: not mirror-symmetric."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * torch.arange(x.shape[-1], dtype=x.dtype)


def test_flip_average_is_the_mean_of_the_map_and_its_mirror_images_map():
    x = torch.randn(2, 3, 4, 5)
    # Ramp(flip(x)) flipped back is x[:, :1] * (4 - column): with Ramp's x[:, :1] * column, the mean is 2 x[:, :1].
    assert torch.allclose(FlipAverage(Ramp())(x), 2 * x[:, :1])


def test_a_mirror_symmetric_model_is_unchanged():
    conv = nn.Conv2d(3, 1, 1)
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(FlipAverage(conv)(x), conv(x), atol=1e-6)


def test_tta_none_keeps_the_model():
    model = Ramp()
    assert with_tta(model, "none") is model
    assert isinstance(with_tta(model, "flip"), FlipAverage)
