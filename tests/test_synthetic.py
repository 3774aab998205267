"""Self-blended training fakes: the label matches what changed, and training uses them."""

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

    def spy(real, generator):
        fake, label = synthetic.self_blend(real, generator)
        seen.append((real.clone(), fake, label))
        return fake, label

    monkeypatch.setattr(training, "self_blend", spy)
    tp = recipe("train", source="alpha", epochs=1, steps_per_epoch=2, batch_size=8, synthetic=0.25,
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
