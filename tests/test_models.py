"""Every architecture: output shapes, and one training step that lowers the loss."""

import pytest
import torch

from localize.config import ParamsError, parse_section
from localize.losses import dice_loss
from localize.models import ARCHS, ModelParams, build_model
from localize.models.unet_seed import SeedUNet


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [16, 32, 40])
def test_output_shape(arch, size):
    model = build_model(ModelParams(arch=arch, width=4)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, size, size)


def test_seed_unet_follows_the_report():
    model = SeedUNet(width=8)
    blocks = [model.block1, model.block2, model.block3]
    assert [b.body[0].out_channels for b in blocks] == [8, 16, 32]
    # 2 x (Conv + BN + ReLU) then Dropout(0.2) in each block.
    kinds = [type(m).__name__ for m in model.block1.body]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Dropout"]
    assert model.block1.body[-1].p == 0.2


@pytest.mark.parametrize("arch", ARCHS)
def test_one_training_step_lowers_the_loss(arch):
    torch.manual_seed(0)
    model = build_model(ModelParams(arch=arch, width=4, dropout=0.0))
    x = torch.randn(4, 3, 16, 16)
    y = (torch.rand(4, 1, 16, 16) > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = dice_loss(model(x), y)
    for _ in range(5):
        opt.zero_grad()
        loss = dice_loss(model(x), y)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert dice_loss(model(x), y).item() < before.item()


def test_unknown_arch_lists_the_choices():
    with pytest.raises(ParamsError, match="unet-seed"):
        parse_section(ModelParams, {"arch": "transformer"}, "model")
