"""Every architecture: output shapes, and one training step that lowers the loss."""

import pytest
import torch

from localize.config import ParamsError, parse_section
from localize.losses import dice_loss
from localize.models import ARCHS, ModelParams, build_model
from localize.models.patches import RECEPTIVE_FIELD, grid_size
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


@pytest.mark.parametrize(("size", "grid"), [(64, 8), (299, 37)])
def test_patch_forensics_grid_and_receptive_field(size, grid):
    """Chai et al.'s numbers at 299 px (a 37 x 37 map), the formula at the pipeline's 64 px, and each
    patch logit seeing exactly 43 x 43 pixels: the gradient of one interior patch w.r.t. the input."""
    torch.manual_seed(0)
    model = build_model(ModelParams(arch="patches")).eval()  # eval: BatchNorm does not mix images
    assert sum(p.numel() for p in model.parameters()) == 191_330  # "about 0.19 M"
    assert grid_size(size) == grid
    x = torch.randn(4, 3, size, size, requires_grad=True)
    patches = model(x, grid=True)
    assert patches.shape == (4, 1, grid, grid)
    assert model(x).shape == (4, 1, size, size)  # upsampled for evaluation and predict
    row = col = grid // 2
    patches[:, 0, row, col].sum().backward()  # summed over 4 images: max-pool winners differ between them
    rows, cols = (x.grad.abs().sum((0, 1)) > 0).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 == RECEPTIVE_FIELD == 43
    assert cols.max() - cols.min() + 1 == RECEPTIVE_FIELD
    # Patch (r, c) sees pixels 8r - 18 to 8r + 24: stride 8 (three stride-2 steps), shifted back by the
    # padding of the separable convs and pools (by hand: stem 0..6, block 1 from 4k - 6, block 2 from 8m - 18).
    assert rows.min() == 8 * row - 18 and cols.min() == 8 * col - 18


def test_patch_forensics_ignores_width_and_dropout():
    a = build_model(ModelParams(arch="patches", width=4, dropout=0.0))
    b = build_model(ModelParams(arch="patches", width=64, dropout=0.5))
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize("size", [17, 37, 61])
def test_unet_hp_keeps_odd_sizes(size):
    """Four pools of an odd side round down; each up step resizes to its skip's exact size."""
    model = build_model(ModelParams(arch="unet-hp", width=4)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size + 2))
    assert out.shape == (1, 1, size, size + 2)


def test_unet_hp_widths_and_inputs():
    model = build_model(ModelParams(arch="unet-hp", width=8))
    assert [b.body[0].out_channels for b in model.down] == [4, 8, 16, 32, 64]
    assert model.down[0].body[0].in_channels == 12  # RGB + 9 SRM residuals


@pytest.mark.parametrize("arch", ["unet-tex", "unet-tex-inputs", "unet-hp"])
@pytest.mark.parametrize("size", [32, 37])
def test_context_path_keeps_the_full_size(arch, size):
    """model.context 2: the U-Net runs at half the side, the maps come back at the input's own (odd sides too)."""
    model = build_model(ModelParams(arch=arch, width=4, context=2)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size + 2))
    assert out.shape == (2, 1, size, size + 2)


def test_context_path_sees_block_averages():
    """The context path's first block reads the 2 x 2 block means of the image (and of the statistics)."""
    model = build_model(ModelParams(arch="unet-tex", width=4, context=2)).eval()
    seen = {}
    model.down[0].register_forward_pre_hook(lambda _m, inputs: seen.update(x=inputs[0]))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        model(x)
    assert seen["x"].shape[-2:] == (16, 16)
    assert torch.allclose(seen["x"][:, :3], torch.nn.functional.avg_pool2d(x, 2))  # colour first


def test_context_is_checked():
    with pytest.raises(ParamsError, match="choose one of 1, 2, 4"):
        parse_section(ModelParams, {"context": 3}, "model")
    with pytest.raises(ParamsError, match="needs arch unet-tex"):
        parse_section(ModelParams, {"arch": "unet-seed", "context": 2}, "model")


def test_for_arch_keeps_the_context_only_where_the_arch_has_one():
    mp = ModelParams(arch="unet-tex", width=8, context=2)
    assert mp.for_arch("unet-hp") == ModelParams(arch="unet-hp", width=8, context=2)
    assert mp.for_arch("unet-seed") == ModelParams(arch="unet-seed", width=8, context=1)
    build_model(mp.for_arch("unet-seed"))  # a valid model, where context 2 would be refused
