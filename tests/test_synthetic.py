"""Self-blended training fakes: the label matches what changed, and training uses them."""

import pytest
import torch
from conftest import recipe

from localize.synthetic import random_masks, self_blend


def test_masks_cover_a_plausible_area():
    g = torch.Generator().manual_seed(0)
    masks = random_masks(32, 32, g)
    area = (masks > 0.5).float().mean((1, 2, 3))
    assert masks.min() >= 0 and masks.max() <= 1
    assert (area > 0.005).all() and (area < 0.8).all()


def test_fakes_keep_the_real_pixels_outside_the_blend():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(6, 3, 24, 24) * 2 - 1
    fake, label = self_blend(real, g)
    assert fake.shape == real.shape and label.shape == (6, 1, 24, 24)
    assert set(label.unique().tolist()) <= {0.0, 1.0}
    far = torch.nn.functional.max_pool2d(label, 5, stride=1, padding=2) == 0  # well outside the soft edge
    assert torch.equal(fake[far.expand_as(fake)], real[far.expand_as(real)])
    inside = label.expand_as(fake) == 1
    assert (fake[inside] != real[inside]).float().mean() > 0.5


def test_training_learns_from_self_blended_fakes(prepared, tmp_path, monkeypatch):
    """With train.synthetic, every training step gets self-blended fakes: changed pixels under a
    non-empty mask. A self_blend returning the real faces with empty masks fails this."""
    from localize import synthetic, training
    from stages import train

    seen = []

    def spy(real, generator, kinds):
        fake, label = synthetic.self_blend(real, generator, kinds)
        seen.append((real.clone(), fake, label))
        return fake, label

    monkeypatch.setattr(training, "self_blend", spy)
    tp = recipe("train", source="alpha", init="scratch", epochs=1, steps_per_epoch=2, batch_size=8, synthetic=0.25,
                precision="fp32", threads=1)
    out = train.run(prepared, tmp_path / "m", tmp_path / "l", tmp_path / "c.png", tmp_path / "k",
                    recipe("model", arch="unet-res-srm", width=4), tp)
    assert len(seen) == tp.steps_per_epoch
    for real, fake, label in seen:
        assert real.shape[0] == round(tp.synthetic * tp.batch_size)
        assert (label.flatten(1).sum(1) > 0).all(), "every self-blended fake has fake pixels"
        inside = label.expand_as(fake) == 1
        assert (fake[inside] != real[inside]).float().mean() > 0.5
    assert out["alpha"].history[0]["train_loss"] > 0


@pytest.mark.parametrize("kind", ["blur", "splice", "shift", "resample", "noise"])
def test_each_kind_of_self_blend_changes_pixels_only_under_its_soft_mask(kind):
    """Every kind pastes an altered donor: the fake differs from the real face inside the mask, and
    is the real face exactly where the soft mask is 0."""
    from localize.synthetic import self_blend

    g = torch.Generator().manual_seed(3)
    real = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1  # texture everywhere, so blur and resample change it
    fake, label = self_blend(real, torch.Generator().manual_seed(0), [kind])
    assert fake.shape == real.shape and label.shape == (4, 1, 32, 32)
    changed = (fake - real).abs().amax(1, keepdim=True) > 1e-6
    assert (label.flatten(1).sum(1) > 0).all()
    assert changed[label.bool()].float().mean() > 0.9, f"{kind}: the donor must differ inside the mask"
    far = torch.nn.functional.max_pool2d(label, 7, 1, 3) == 0  # well outside the soft edge
    assert not changed[far].any(), f"{kind}: pixels outside the mask must stay the real face's"


def test_the_classic_kinds_draw_as_before():
    """`blends: [blur, splice, shift]` (the default before resample and noise) gives the same fakes as
    the default call: configurations that do not name the new kinds keep their bytes."""
    from localize.params import CLASSIC_BLENDS
    from localize.synthetic import self_blend

    real = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = self_blend(real, torch.Generator().manual_seed(5))
    b = self_blend(real, torch.Generator().manual_seed(5), list(CLASSIC_BLENDS))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_unknown_blend_kinds_are_refused_with_the_allowed_ones():
    from localize.config import ParamsError, parse_section
    from localize.params import PretrainParams

    with pytest.raises(ParamsError, match="blur, splice, shift, resample, noise"):
        parse_section(PretrainParams, {"blends": ["blur", "lama"]}, "pretrain")
    with pytest.raises(ParamsError, match="distinct"):
        parse_section(PretrainParams, {"blends": []}, "pretrain")
