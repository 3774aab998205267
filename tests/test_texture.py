"""The reference rows on hand-checkable cases: residual statistics, the texture baseline, the
visible-change ceiling and their table rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from localize.bounds import TextureScores, markdown_rows, texture_summary
from localize.demo.ceiling import source_id, visible_change
from localize.demo.generators import jpeg_round_trip
from localize.evaluation import Bootstrap
from localize.params import TextureParams
from localize.residuals import FEATURES, NAMES, residual_features
from localize.texture import choose_threshold, fit, interpolate_grid, maps


def _noisy_square(rng: np.random.Generator, n: int, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Flat grey faces with a noisy square (the "fill") at a random place: masks 1 there."""
    images = np.full((n, size, size, 3), 128, np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size - 8, 2)
        images[i, y : y + 8, x : x + 8] = rng.integers(60, 200, (8, 8, 3))
        masks[i, y : y + 8, x : x + 8] = 1
    return images, masks


def test_features_of_a_flat_image_are_flat_and_relative_energy_is_zero():
    x = torch.zeros(2, 3, 16, 16)
    f = residual_features(x)
    assert f.shape == (2, FEATURES, 16, 16) and len(NAMES) == FEATURES
    assert torch.allclose(f, f[:, :, :1, :1].expand_as(f))  # the same value at every pixel
    rel = [NAMES.index(n) for n in NAMES if n.endswith("_rel")]
    assert torch.equal(f[:, rel], torch.zeros_like(f[:, rel]))


def test_residual_energy_is_higher_inside_a_noisy_patch():
    images, masks = _noisy_square(np.random.default_rng(0), 1)
    f = residual_features(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)[0]
    energy = f[NAMES.index("y_energy_3")].numpy()
    inside, outside = energy[masks[0] == 1], energy[masks[0] == 0]
    assert np.median(inside) > np.median(outside) + 3  # log energy: e^3 = 20 times more


def test_texture_baseline_localizes_noise_on_flat_faces():
    rng = np.random.default_rng(1)
    train, valid, test = _noisy_square(rng, 12), _noisy_square(rng, 6), _noisy_square(rng, 6)
    p = TextureParams(pixels=3000, real=0.0, iterations=20, learning_rate=0.3, leaves=7, smooth=1, seed=0)
    model = fit([train], [], p)
    threshold = choose_threshold([maps(model, valid[0], p.smooth)], [valid[1]])
    pred = maps(model, test[0], p.smooth) >= threshold
    inter = (pred & (test[1] == 1)).sum()
    union = (pred | (test[1] == 1)).sum()
    assert inter / union > 0.8


def test_texture_fit_is_seeded():
    train = _noisy_square(np.random.default_rng(2), 6)
    p = TextureParams(pixels=2000, real=0.0, iterations=5, learning_rate=0.3, leaves=7, smooth=3, seed=4)
    a = maps(fit([train], [], p), train[0], p.smooth)
    b = maps(fit([train], [], p), train[0], p.smooth)
    assert np.array_equal(a, b)


def test_choose_threshold_picks_the_best_valid_iou():
    truth = np.zeros((1, 4, 4), np.uint8)
    truth[0, :2] = 1
    prob = np.full((1, 4, 4), 0.1, np.float32)
    prob[0, :2] = 0.62  # above 0.6 exactly the true half: IoU 1 for every threshold in (0.1, 0.62]
    prob[0, 3] = 0.3  # one more row flagged below 0.3
    assert choose_threshold([prob], [truth]) == pytest.approx(0.35)


def test_interpolate_grid_is_exact_on_a_linear_ramp_and_keeps_the_classified_pixels():
    """Values at every 2nd (or 3rd) pixel of a plane a + b·y + c·x come back as the whole plane, the
    border beyond the last classified row and column carried over from it."""
    ys, xs = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    plane = (1 + 2 * ys + 3 * xs)[None, None]
    for stride in (2, 3):
        coarse = plane[..., ::stride, ::stride]
        fine = interpolate_grid(coarse, stride, (7, 7))
        covered = stride * (coarse.shape[-1] - 1) + 1
        assert torch.allclose(fine[..., :covered, :covered], plane[..., :covered, :covered])
        assert torch.equal(fine[..., ::stride, ::stride], coarse)
        assert torch.equal(fine[..., covered:, :], fine[..., covered - 1 : covered, :].expand(-1, -1, 7 - covered, -1))
    assert interpolate_grid(plane, 1, (7, 7)) is plane


def test_a_strided_texture_map_agrees_with_the_full_one_where_it_classifies():
    """stride 2 classifies the same features at the even pixels: there, before smoothing, both maps
    hold the same probability."""
    train = _noisy_square(np.random.default_rng(5), 6)
    p = TextureParams(pixels=2000, real=0.0, iterations=5, learning_rate=0.3, leaves=7, smooth=1, seed=0)
    model = fit([train], [], p)
    full, strided = maps(model, train[0], 1, 1), maps(model, train[0], 1, 2)
    assert strided.shape == full.shape
    assert np.allclose(strided[:, ::2, ::2], full[:, ::2, ::2], atol=1e-6)


@pytest.mark.parametrize("bad", [{"pixels": 10}, {"real": 1.0}, {"smooth": 4}, {"leaves": 1}, {"iterations": 0},
                                 {"stride": 0}, {"stride": 9}])
def test_texture_params_are_bounded(bad):
    base = dict(pixels=80000, real=0.25, iterations=300, learning_rate=0.1, leaves=31, smooth=5, seed=0)
    with pytest.raises(ValueError, match=next(iter(bad))):
        TextureParams(**{**base, **bad}).validate()


def test_visible_change_counts_pixels_changed_by_at_least_min_change():
    real = np.full((2, 3, 3), 100, np.uint8)
    fake = real.copy()
    fake[0, 0, 1] = 102  # 2 levels in one channel: not visible at 3
    fake[1, 2, 2] = 97  # 3 levels: visible
    got = visible_change(fake, real, "telea", 75, 3)
    assert got.tolist() == [[False, False, False], [False, False, True]]


def test_visible_change_of_a_jpeg_generator_is_measured_against_the_reals_round_trip():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    untouched = jpeg_round_trip(real, 75)  # a "-jpeg" fake that filled nothing
    assert not visible_change(untouched, real, "biharmonic-jpeg", 75, 3).any()
    assert visible_change(untouched, real, "telea", 75, 3).any()  # against the plain real, JPEG noise shows


def test_source_id_strips_the_fake_number_only():
    assert source_id("abc123-2") == "abc123"
    assert source_id("a-b-10") == "a-b"


def _prepared_stub(n_test: dict[str, int]):
    class Stub:
        splits = {name: {"test": n} for name, n in n_test.items()}
        generators = [name for name in n_test if name != "real"]

        def has(self, name, split):
            return self.splits.get(name, {}).get(split, 0) > 0

    return Stub()


def test_texture_rows_and_summary_by_hand():
    gens = ["a", "b"]
    boot = Bootstrap(_prepared_stub({"a": 2, "b": 2, "real": 2}), 50, 0)
    boot.resamples = {k: np.array([[0, 1]] * 50) for k in ("a", "b", "real")}  # every draw = the set itself
    texture = {
        "a": TextureScores({"a": np.array([0.5, 0.7]), "b": np.array([0.1, 0.1])}, np.array([0.0, 0.2]), 0.5),
        "b": TextureScores({"a": np.array([0.2, 0.2]), "b": np.array([0.3, 0.5])}, np.array([0.0, 0.0]), 0.4),
        "no-a": TextureScores({"a": np.array([0.4, 0.4]), "b": np.array([0.3, 0.3])}, np.array([0.1, 0.1]), 0.3),
    }
    summary = texture_summary(texture, gens, boot)
    assert summary["in_domain"] == {"iou": 0.5, "low": 0.5, "high": 0.5}  # mean of 0.6 and 0.4
    assert summary["held_out"]["iou"] == 0.4
    assert summary["real_faces_clean"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-6)
    ceiling = {"a": np.array([0.8, 0.6]), "b": np.array([0.9, 0.9])}
    rows = markdown_rows(texture, ceiling, gens, boot)
    assert rows[0] == "| _baseline: texture, same generator_ | 60.0 (60.0–60.0) | 40.0 (40.0–40.0) | 50.0 | 75.0 | |"
    assert rows[1] == "| _baseline: texture, held out_ | 40.0 (40.0–40.0) | – | 40.0 | 0.0 | |"
    assert rows[2] == "| _ceiling: visible change_ | 70.0 (70.0–70.0) | 90.0 (90.0–90.0) | 80.0 | 100 | |"


def test_the_texture_stage_writes_the_same_bytes_twice(prepared, tmp_path):
    """Its outputs are a function of data and params alone (no fit time in them), so a rerun leaves
    DVC's hash of data/texture as it was."""
    from stages import texture

    p = TextureParams(pixels=2_000, iterations=5, leaves=7, seed=0)
    texture.run(prepared, tmp_path / "one", "alpha", p)
    texture.run(prepared, tmp_path / "two", "alpha", p)
    one, two = (sorted((tmp_path / d).iterdir()) for d in ("one", "two"))
    assert [f.name for f in one] == ["alpha.npz"]
    assert [f.read_bytes() for f in one] == [f.read_bytes() for f in two]


def test_the_texture_stage_chooses_its_min_region_on_valid_and_records_it(prepared, tmp_path):
    from stages import texture

    base = {"pixels": 2_000, "iterations": 5, "leaves": 7, "seed": 0}
    texture.run(prepared, tmp_path / "none", "alpha", TextureParams(**base, min_region=[0]))
    texture.run(prepared, tmp_path / "chosen", "alpha", TextureParams(**base, min_region=[0, 0.01, 0.1]))
    with np.load(tmp_path / "none" / "alpha.npz") as none, np.load(tmp_path / "chosen" / "alpha.npz") as chosen:
        assert int(none["min_region"]) == 0
        # One of the candidates below half the fixture's smallest mask (0.25 of 16x16), in pixels:
        # 0, 3 (0.01) or 26 (0.1).
        assert int(chosen["min_region"]) in (0, 3, 26)
        # Dropping regions never flags more of a real face.
        assert (chosen["real_flagged"] <= none["real_flagged"] + 1e-12).all()
