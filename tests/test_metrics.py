"""Losses and metrics on cases small enough to check by hand."""

import numpy as np
import pytest
import torch

from localize.losses import dice_bce_loss, dice_loss, soft_dice
from localize.metrics import PixelHistogram, f1_per_image, iou_per_image, roc_auc


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
    hist = PixelHistogram(bins=100)
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
