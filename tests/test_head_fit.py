"""train.head_steps: the per-pixel head refit alone, on sampled training pixels, before fine-tuning."""

from __future__ import annotations

import numpy as np
import torch

from localize.head_fit import has_head, refit_pixel_head
from localize.models import ModelParams, build_model

CPU = torch.device("cpu")


def _pairs(n: int = 6, side: int = 16, seed: int = 0):
    """Fakes whose masked half is noisy and unmasked half flat: a per-pixel statistic tells them apart."""
    rng = np.random.default_rng(seed)
    images = np.full((n, side, side, 3), 128, np.uint8)
    masks = np.zeros((n, side, side), np.uint8)
    masks[:, :, : side // 2] = 1
    images[:, :, : side // 2] = rng.integers(0, 256, (n, side, side // 2, 3), dtype=np.uint8)
    reals = np.full((n, side, side, 3), 128, np.uint8), np.zeros((n, side, side), np.uint8)
    return [(images, masks)], [reals]


def _bce(model, fakes):
    images, masks = fakes[0]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        logits = model.eval()(x)[:, 0]
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(masks).float()))


def test_refit_lowers_the_pixel_loss_and_touches_only_the_head():
    torch.manual_seed(0)
    model = build_model(ModelParams(arch="unet-tex", width=4))
    fakes, reals = _pairs()
    before = _bce(model, fakes)
    others = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("pixel.")}
    refit_pixel_head(model, fakes, reals, steps=150, real_share=0.25, seed=0, device=CPU)
    assert _bce(model, fakes) < 0.5 * before
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("pixel.")}
    assert all(torch.equal(others[k], after[k]) for k in others)  # BatchNorm statistics included


def test_refit_is_seeded():
    fakes, reals = _pairs()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(ModelParams(arch="unet-tex", width=4))
        refit_pixel_head(model, fakes, reals, steps=20, real_share=0.25, seed=3, device=CPU)
        weights.append(model.pixel.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_only_unet_tex_has_a_head():
    assert has_head(build_model(ModelParams(arch="unet-tex", width=4)))
    assert not has_head(build_model(ModelParams(arch="unet-tex-inputs", width=4)))
    assert not has_head(build_model(ModelParams(arch="unet-seed", width=4)))


def _refit_head(fakes, reals, **kwargs):
    torch.manual_seed(0)
    model = build_model(ModelParams(arch="unet-tex", width=4))
    refit_pixel_head(model, fakes, reals, steps=20, real_share=0.25, seed=3, device=CPU, **kwargs)
    return model.pixel.state_dict()


def test_refit_degrades_its_pixels_as_train_degrade_does(monkeypatch):
    import localize.head_fit as head_fit
    fakes, reals = _pairs()
    pristine = _refit_head(fakes, reals)
    assert all(torch.equal(pristine[k], v) for k, v in _refit_head(fakes, reals, degrade=0.0).items())
    seen = []
    real_degrade = head_fit.degrade_batch
    monkeypatch.setattr(head_fit, "degrade_batch",
                        lambda images, p, rng: seen.append(p) or real_degrade(images, p, rng))
    degraded = [_refit_head(fakes, reals, degrade=1.0) for _ in range(2)]
    assert seen and set(seen) == {1.0}  # every sampled batch, fakes and reals, goes through it
    assert all(torch.equal(degraded[0][k], degraded[1][k]) for k in pristine)  # seeded
    assert not all(torch.equal(pristine[k], degraded[0][k]) for k in pristine)  # and fitted on other pixels
