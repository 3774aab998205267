"""Losses and metrics on cases small enough to check by hand."""

import math

import numpy as np
import pytest
import torch

from localize.losses import dice_bce_loss, dice_bce_max_loss, dice_loss, max_pixel_bce, soft_dice
from localize.metrics import (
    PixelHistogram,
    bootstrap_aucs,
    bootstrap_means,
    f1_per_image,
    iou_per_image,
    percentile_interval,
    resample_indices,
    roc_auc,
)


def dolos_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Dolos' own formula (dolos/metrics/iou_ignite.py), for one image."""
    inter, union = pred & true, pred | true
    return 1.0 if union.sum() == 0 else inter.sum() / union.sum()


def test_iou_by_hand():
    true = np.array([[[1, 1, 0, 0]]], bool)
    half = np.array([[[1, 0, 0, 0]]], bool)  # 1 of 2 fake pixels found, nothing wrong
    shifted = np.array([[[0, 1, 1, 0]]], bool)  # 1 shared pixel, union of 3
    assert iou_per_image(half, true) == pytest.approx([0.5])
    assert iou_per_image(shifted, true) == pytest.approx([1 / 3])
    assert iou_per_image(true, true) == pytest.approx([1.0])
    assert iou_per_image(~true, true) == pytest.approx([0.0])


def test_iou_both_empty_is_one_and_false_alarm_is_zero():
    empty = np.zeros((1, 4, 4), bool)
    alarm = empty.copy()
    alarm[0, 0, 0] = True
    assert iou_per_image(empty, empty) == pytest.approx([1.0])
    assert iou_per_image(alarm, empty) == pytest.approx([0.0])
    assert iou_per_image(empty, alarm) == pytest.approx([0.0])


def test_iou_equals_dolos_formula_on_random_masks():
    rng = np.random.default_rng(0)
    pred = rng.random((50, 8, 8)) < rng.random((50, 1, 1))
    true = rng.random((50, 8, 8)) < rng.random((50, 1, 1)) * 0.5
    pred[:5] = False
    true[:5] = False  # both empty
    ours = iou_per_image(pred, true)
    theirs = [dolos_iou(p, t) for p, t in zip(pred, true)]
    assert ours == pytest.approx(theirs)


def test_f1_half_overlap_is_two_thirds():
    true = np.array([[[1, 1, 0, 0]]], bool)
    half = np.array([[[1, 0, 0, 0]]], bool)
    assert f1_per_image(half, true) == pytest.approx([2 / 3])
    assert f1_per_image(np.zeros_like(true), np.zeros_like(true)) == pytest.approx([1.0])


def test_soft_dice_by_hand():
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    prob = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # (2*1 + eps) / (1 + 2 + eps) with eps -> 0 is 2/3.
    assert soft_dice(prob, target, eps=1e-9).item() == pytest.approx(2 / 3)
    assert soft_dice(target, target, eps=1e-9).item() == pytest.approx(1.0)


def test_dice_loss_handles_empty_masks():
    empty = torch.zeros(1, 1, 4, 4)
    quiet = torch.full((1, 1, 4, 4), -30.0)  # sigmoid ~ 0 everywhere
    loud = torch.full((1, 1, 4, 4), 30.0)
    assert dice_loss(quiet, empty).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(loud, empty).item() == pytest.approx(1 - 1 / 17, abs=1e-6)
    assert torch.isfinite(dice_bce_loss(loud, empty))


def test_dice_loss_gradient_points_towards_the_mask():
    target = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.zeros(1, 1, 1, 2, requires_grad=True)
    dice_loss(logits, target).backward()
    assert logits.grad[0, 0, 0, 0] < 0 < logits.grad[0, 0, 0, 1]


def test_average_precision_and_best_f1_by_hand():
    hist = PixelHistogram()
    # Scores 0.9 (fake), 0.7 (real), 0.5 (fake): AP = 1*0.5 + (2/3)*0.5.
    hist.update(np.array([0.905, 0.705, 0.505]), np.array([1, 0, 1], bool))
    assert hist.average_precision() == pytest.approx(0.5 + 1 / 3)
    # Best F1 at threshold 0.9: P=1, R=0.5 -> 2/3; at 0.5: P=2/3, R=1 -> 0.8.
    assert hist.best_f1() == pytest.approx(0.8)


def test_roc_auc_by_hand():
    assert roc_auc(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == pytest.approx(1.0)
    assert roc_auc(np.array([0.1, 0.8, 0.9]), np.array([1, 1, 0])) == pytest.approx(0.0)
    # One tie between a fake and a real counts a half: pairs (f1>r)=1, (f2=r)=0.5 -> 0.75.
    assert roc_auc(np.array([0.9, 0.5, 0.5]), np.array([1, 1, 0])) == pytest.approx(0.75)


def exact_average_precision(prob: np.ndarray, true: np.ndarray) -> float:
    """Step-wise AP over every distinct score (scikit-learn's definition), by sorting."""
    prob, true = prob.ravel().astype(np.float32), true.ravel().astype(bool)
    order = np.argsort(-prob, kind="stable")
    prob, true = prob[order], true[order]
    last_of_tie = np.r_[prob[1:] != prob[:-1], True]
    tp = np.cumsum(true)[last_of_tie]
    fp = np.cumsum(~true)[last_of_tie]
    precision, recall = tp / (tp + fp), tp / true.sum()
    return float((np.diff(np.r_[0.0, recall]) * precision).sum())


def test_average_precision_is_exact_on_saturated_maps():
    rng = np.random.default_rng(0)
    true = rng.random((40, 32, 32)) < 0.2
    # A Dice-trained model: most pixels within 1e-3 of 0 or 1, a sixth of the fakes missed,
    # a few real pixels flagged with confidence.
    logits = np.where(true, rng.normal(9, 3, true.shape), rng.normal(-9, 3, true.shape))
    logits[true & (rng.random(true.shape) < 0.17)] -= 14
    prob = (1 / (1 + np.exp(-logits))).astype(np.float32)
    assert (prob > 0.999).mean() > 0.08, "saturated, as the committed models were"
    hist = PixelHistogram()
    for k in range(0, 40, 16):
        hist.update(prob[k : k + 16], true[k : k + 16])
    assert hist.average_precision() == pytest.approx(exact_average_precision(prob, true), abs=0.005)


def test_average_precision_with_every_score_tied_is_the_positive_share():
    true = np.array([1, 0, 0, 1, 0], bool)
    hist = PixelHistogram()
    hist.update(np.ones(5, np.float32), true)
    assert hist.average_precision() == pytest.approx(0.4) == exact_average_precision(np.ones(5), true)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    # Per-image IoUs of a model whose true mean is 0.4: 200 test images, 300 repetitions.
    rng = np.random.default_rng(1)
    true_mean, hits, repetitions = 0.4, 0, 300
    for _ in range(repetitions):
        values = rng.beta(2, 3, size=200)  # mean 2 / (2 + 3) = 0.4
        low, high = percentile_interval(bootstrap_means(values, resample_indices(200, 1000, rng)))
        hits += low <= true_mean <= high
    assert 0.91 <= hits / repetitions <= 0.98


def test_bootstrap_interval_by_hand():
    values = np.array([0.0, 1.0])
    resamples = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # every resample of two images
    assert bootstrap_means(values, resamples).tolist() == [0.0, 0.5, 0.5, 1.0]
    assert percentile_interval(np.array([0.0, 0.5, 0.5, 1.0]), level=0.5) == (0.375, 0.625)


def test_dice_bce_by_hand():
    # One image of two pixels, logits 0 (p = 0.5) on target [1, 0]:
    # soft Dice = (2 * 0.5 + 1) / (1 + 1 + 1) = 2/3, BCE = ln 2 per pixel.
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert dice_bce_loss(logits, target).item() == pytest.approx(1 / 3 + math.log(2), rel=1e-6)


def test_bootstrap_aucs_equal_the_auc_of_each_resampled_set():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 7).astype(float), rng.integers(0, 5, 4).astype(float)  # ties on purpose
    pos_res, neg_res = resample_indices(7, 20, rng), resample_indices(4, 20, rng)
    fast = bootstrap_aucs(pos, neg, pos_res, neg_res)
    slow = [roc_auc(np.r_[pos[p], neg[n]], np.r_[np.ones(7), np.zeros(4)]) for p, n in zip(pos_res, neg_res)]
    assert np.allclose(fast, slow)


def test_max_pixel_bce_by_hand():
    """Two 2x2 maps: a real face whose peak logit is 0 (BCE log 2) and a fake whose peak is ln 3
    (p = 0.75, BCE -ln 0.75); the mean is their average."""
    logits = torch.tensor([[[[-5.0, 0.0], [-5.0, -5.0]]], [[[math.log(3), -1.0], [-2.0, -3.0]]]])
    target = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 1.0]]]])
    expected = (math.log(2) - math.log(0.75)) / 2
    assert max_pixel_bce(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert dice_bce_max_loss(logits, target).item() == pytest.approx(
        dice_bce_loss(logits, target).item() + expected, rel=1e-6)


def test_max_pixel_bce_sends_a_real_face_gradient_to_its_peak_pixel_only():
    logits = torch.tensor([[[[-3.0, 2.0], [-1.0, -4.0]]]], requires_grad=True)
    max_pixel_bce(logits, torch.zeros(1, 1, 2, 2)).backward()
    grad = logits.grad.flatten().tolist()
    assert grad[1] > 0 and grad[0] == grad[2] == grad[3] == 0  # only the stray pixel is pushed down
