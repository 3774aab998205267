"""The location prior: a hand-checked 4x4 case, empty valid masks, chunked and memory-mapped input."""

from __future__ import annotations

import numpy as np
import pytest

from localize import prior
from localize.metrics import iou_per_image


def _masks(*regions: tuple[slice, slice]) -> np.ndarray:
    out = np.zeros((len(regions), 4, 4), np.uint8)
    for mask, region in zip(out, regions):
        mask[region] = 1
    return out


TOP_LEFT = (slice(0, 2), slice(0, 2))  # 4 pixels
TOP = (slice(0, 2), slice(None))  # 8 pixels
ROW0 = (slice(0, 1), slice(None))  # 4 pixels
EMPTY = (slice(0, 0), slice(0, 0))
ALL = (slice(None), slice(None))


def test_hand_checked_case():
    # Mean training mask: 1.0 on the top-left 2x2, 0.5 on the top-right 2x2, 0 below.
    train = _masks(TOP_LEFT, TOP)
    np.testing.assert_array_equal(prior.mean_mask(train), [[1, 1, .5, .5], [1, 1, .5, .5], [0] * 4, [0] * 4])
    # Candidates on valid masks (top, top-left, row 0), mean IoU:
    #   nothing: 0;  top-left (>= 1.0): (4/8 + 1 + 2/6) / 3 = 0.611;
    #   top (>= 0.5): (1 + 4/8 + 4/8) / 3 = 0.667;  everything (>= 0): (8/16 + 4/16 + 4/16) / 3 = 0.333.
    mask, threshold = prior.fit_prior(train, _masks(TOP, TOP_LEFT, ROW0))
    assert threshold == 0.5
    np.testing.assert_array_equal(mask, _masks(TOP)[0].astype(bool))
    # Predicting the top half: an empty truth scores 0, the top half 1, the whole image 8/16.
    np.testing.assert_allclose(prior.prior_iou(mask, _masks(EMPTY, TOP, ALL)), [0.0, 1.0, 0.5])


def test_ties_go_to_the_smaller_region():
    # On valid (top, top-left) both top-left and top score (0.5 + 1) / 2 = 0.75.
    mask, threshold = prior.fit_prior(_masks(TOP_LEFT, TOP), _masks(TOP, TOP_LEFT))
    assert threshold == 1.0
    np.testing.assert_array_equal(mask, _masks(TOP_LEFT)[0].astype(bool))


def test_empty_valid_masks_predict_nothing():
    # Every valid image is all real: only an empty prediction scores 1 (both empty) on them.
    mask, threshold = prior.fit_prior(_masks(TOP_LEFT, TOP), _masks(EMPTY, EMPTY))
    assert threshold == np.inf
    assert not mask.any()
    np.testing.assert_array_equal(prior.prior_iou(mask, _masks(EMPTY, TOP)), [1.0, 0.0])


def test_chunked_memmap_matches_brute_force(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    size = 12
    yy, xx = np.mgrid[:size, :size]

    def blobs(n):  # random discs: overlapping, so the mean mask has many levels
        cy, cx, r = rng.uniform(2, 10, n), rng.uniform(2, 10, n), rng.uniform(1, 5, n)
        return ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2 < r[:, None, None] ** 2)

    train, valid, test = blobs(50), blobs(30), blobs(20)
    path = tmp_path / "train.npy"
    np.save(path, train.astype(np.uint8))
    monkeypatch.setattr(prior, "CHUNK_PIXELS", 3 * size * size)  # 3 masks per chunk
    mask, threshold = prior.fit_prior(np.load(path, mmap_mode="r"), valid)

    mean = train.mean(0)
    candidates = [np.inf, *np.unique(mean)[::-1]]
    scores = [iou_per_image(np.broadcast_to(mean >= t, valid.shape), valid).mean() for t in candidates]
    assert threshold == candidates[int(np.argmax(scores))]
    np.testing.assert_array_equal(mask, mean >= threshold)
    np.testing.assert_allclose(prior.prior_iou(mask, test),
                               iou_per_image(np.broadcast_to(mask, test.shape), test))


@pytest.mark.parametrize(("train", "valid", "message"), [
    (np.zeros((0, 4, 4)), np.zeros((1, 4, 4)), "train masks: no masks"),
    (np.zeros((4, 4)), np.zeros((1, 4, 4)), r"train masks: expected masks of shape \(N, H, W\)"),
    (np.zeros((1, 4, 4)), np.zeros((1, 5, 4)), "valid masks: masks of several sizes"),
])
def test_bad_shapes_fail_clearly(train, valid, message):
    with pytest.raises(ValueError, match=message):
        prior.fit_prior(train, valid)


def test_a_split_of_several_generators_pools_their_masks():
    rng = np.random.default_rng(3)
    a, b = rng.random((5, 4, 4)) < 0.3, rng.random((7, 4, 4)) < 0.6
    valid = rng.random((6, 4, 4)) < 0.5
    pooled, threshold = prior.fit_prior(np.concatenate([a, b]), valid)
    listed, listed_threshold = prior.fit_prior([a, b], [valid[:2], valid[2:]])
    assert np.array_equal(pooled, listed) and threshold == listed_threshold
    assert np.array_equal(prior.prior_iou(pooled, [a, b]), prior.prior_iou(pooled, np.concatenate([a, b])))
