"""Weak supervision, Patch Forensics' losses, setup A (fake/p2) and the refusals, on tiny cases."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_prepared
from test_index import make_tree, run_index

from localize.batches import ArrayPool
from localize.config import ParamsError, parse_section
from localize.losses import image_label_losses, patch_loss, patch_targets, pooled_logit
from localize.models import ModelParams
from localize.prepared import Prepared
from localize.supervision import weak_batches
from localize.training import TrainParams
from stages import evaluate, train
from stages import preprocess as preprocess_stage

TINY = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 8, "lr": 0.01, "precision": "fp32", "threads": 1,
        "init": "scratch"}


def run_train(prepared: Path, out: Path, arch: str = "patches", **overrides):
    tp = parse_section(TrainParams, {**TINY, **overrides}, "train")
    mp = ModelParams(arch=arch, width=4, dropout=0.0)
    return train.run(prepared, out / "models", out / "dvclive", out / "curves.png", out / "ckpt", mp, tp)


# ---- the losses, by hand ----


def test_patch_targets_area_average_then_half():
    mask = torch.tensor([[1, 1, 0, 1],
                         [0, 0, 0, 0],
                         [1, 1, 0, 0],
                         [1, 1, 0, 0]])[None]  # (1, 4, 4); cells of 2 x 2 on a 2 x 2 grid
    # top-left 2/4 fake -> fake (a tie counts as fake); top-right 1/4 -> real; bottom-left 4/4; bottom-right 0/4.
    assert patch_targets(mask, (2, 2)).tolist() == [[[[1.0, 0.0], [1.0, 0.0]]]]


def test_patch_loss_is_two_class_cross_entropy_on_the_grid():
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1  # only the top-left patch is fake
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    by_hand = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(3))) / 4
    assert patch_loss(logits, mask).item() == pytest.approx(by_hand)
    # The fake-minus-real logit's BCE is the two-class cross-entropy of (real 0, fake d).
    two_class = torch.stack([torch.zeros(4), logits.flatten()], 1)
    assert F.cross_entropy(two_class, torch.tensor([1, 0, 0, 0])).item() == pytest.approx(by_hand)


def test_pooled_logit_is_log_mean_exp():
    assert pooled_logit(torch.full((1, 1, 3, 3), 1.5)).item() == pytest.approx(1.5)  # flat map: its own logit
    two = torch.tensor([[[[0.0, math.log(3)]]]])
    assert pooled_logit(two).item() == pytest.approx(math.log(2))  # log((1 + 3) / 2)


def test_image_label_losses_by_hand():
    grid = torch.zeros(2, 1, 2, 2)
    grid[1] = math.log(3)  # every patch at p = 3/4
    labels = torch.tensor([1.0, 0.0])
    # The label copied to every patch: -log(1/2) for image 0, -log(1 - 3/4) for image 1.
    assert image_label_losses(grid, labels, per_patch=True).tolist() == pytest.approx([math.log(2), math.log(4)])
    # A U-Net map: BCE of its pooled logit. Pooled log(2) gives p = 2/3, labelled real: -log(1/3).
    flat = torch.tensor([[[[0.0, math.log(3)]]]])
    assert image_label_losses(flat, torch.tensor([0.0]), per_patch=False).item() == pytest.approx(math.log(3))


# ---- weak batches and weak training never read a mask ----


class Untouchable(np.ndarray):
    """A masks array that fails on any read of its rows."""

    def __getitem__(self, key):
        raise AssertionError("a mask was read")


def test_weak_batches_are_balanced_and_read_no_mask():
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    masks, real_masks = (np.zeros((n, 4, 4), np.uint8).view(Untouchable) for n in (10, 3))
    fakes, reals = ArrayPool([(images, masks)]), ArrayPool([(images[:3], real_masks)])
    batches = list(weak_batches(fakes, reals, 8, True, seed=0, steps=3, device=torch.device("cpu")))
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == (8, 3, 4, 4) and sorted(y.tolist()) == [0.0] * 4 + [1.0] * 4
    assert any(y[:4].tolist() != [1.0] * 4 for _, y in batches), "fakes and reals are shuffled within a batch"


@pytest.mark.parametrize("arch", ["patches", "unet-seed"])
def test_weak_training_never_reads_a_mask(tmp_path, arch):
    """The same run on the same images with scrambled masks ends with identical weights."""
    prepared = make_prepared(tmp_path / "prepared")
    scrambled = tmp_path / "scrambled"
    shutil.copytree(prepared, scrambled)
    rng = np.random.default_rng(1)
    for masks in scrambled.rglob("masks.npy"):
        shape = np.load(masks).shape
        np.save(masks, rng.integers(0, 2, shape, dtype=np.uint8))
    a = run_train(prepared, tmp_path / "a", arch, source="alpha", supervision="weak")["alpha"]
    b = run_train(scrambled, tmp_path / "b", arch, source="alpha", supervision="weak")["alpha"]
    assert a.best_epoch == b.best_epoch and a.history == b.history
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert {"valid_loss", "valid_auc", "valid_score"} <= set(a.history[0]) and "valid_iou" not in a.history[0]
    # ...while full supervision does read them: the scrambled run differs.
    c = run_train(prepared, tmp_path / "c", arch, source="alpha", epochs=1)["alpha"]
    d = run_train(scrambled, tmp_path / "d", arch, source="alpha", epochs=1)["alpha"]
    assert not all(torch.equal(c.state_dict[k], d.state_dict[k]) for k in c.state_dict)


def test_weak_selection_follows_the_valid_loss(tmp_path):
    prepared = make_prepared(tmp_path / "prepared")
    result = run_train(prepared, tmp_path / "out", source="alpha", supervision="weak", epochs=3)["alpha"]
    losses = [row["valid_loss"] for row in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses))
    assert result.valid_score == pytest.approx(math.exp(-min(losses)))


# ---- refusals, before any training ----


def drop_real(prepared: Path, split: str) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text())
    del manifest["splits"]["real"][split]
    (prepared / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("split", ["train", "valid"])
def test_weak_without_real_faces_is_refused(tmp_path, split):
    prepared = make_prepared(tmp_path / "prepared")
    drop_real(prepared, split)
    with pytest.raises(ValueError, match=rf"needs real faces in real/train and real/valid; this data has no "
                                         rf"real/{split}: .* or use train.supervision=full"):
        run_train(prepared, tmp_path / "out", source="alpha", supervision="weak")
    assert not (tmp_path / "out" / "models").exists()


def test_p2_without_fully_generated_faces_is_refused(tmp_path):
    prepared = make_prepared(tmp_path / "prepared")
    with pytest.raises(ValueError, match="this data has none .*valid values: table, alpha, beta"):
        run_train(prepared, tmp_path / "out", source="p2", supervision="weak")


def test_synthetic_with_weak_is_refused_on_load():
    with pytest.raises(ParamsError, match="with supervision weak use synthetic 0"):
        parse_section(TrainParams, {"supervision": "weak", "synthetic": 0.25}, "train")
    with pytest.raises(ParamsError, match="choose one of: full, weak"):
        parse_section(TrainParams, {"supervision": "images"}, "train")


# ---- setup A: real vs fully generated faces, on a tiny Dolos tree with fake/p2 ----


@pytest.fixture
def tree_with_p2(tmp_path) -> Path:
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 6, "valid": 3, "test": 3})
    run_index(root, tmp_path / "index")
    preprocess_stage.run(tmp_path / "index" / "index.csv", tmp_path / "prepared",
                         preprocess_stage.PreprocessParams(size=16, workers=1))
    return tmp_path / "prepared"


def test_setup_a_trains_on_p2_and_tests_on_the_inpainted_sets(tree_with_p2, tmp_path):
    prepared = Prepared(tree_with_p2)
    assert prepared.generators == ["lama"]  # p2 is never a localization test set
    assert prepared.splits["p2"] == {"train": 6, "valid": 3, "test": 3}
    assert (prepared.arrays("p2", "train")[1] == 1).all()  # every pixel generated

    with pytest.raises(ValueError, match="trains only with train.supervision=weak; .*: lama$"):
        run_train(tree_with_p2, tmp_path / "full", source="p2")
    assert not (tmp_path / "full" / "models").exists()

    results = run_train(tree_with_p2, tmp_path / "out", source="p2", supervision="weak")
    assert list(results) == ["p2"] and results["p2"].train_generators == ["p2"]
    out = tmp_path / "out"
    paths = {k: out / f"{k}.json" for k in ("iou", "scores", "summary", "cross_root")}
    paths.update(table=out / "table.md", heatmap=out / "heatmap.png", overlays=out / "overlays",
                 cross_root_table=out / "cross_root.md")
    evaluate.run(tree_with_p2, out / "models", paths, evaluate.EvaluateParams(overlay_images=2))
    table = json.loads(paths["iou"].read_text())
    assert set(table) == {"p2"} and set(table["p2"]) == {"lama", "mean"}


def test_table_never_includes_p2(tree_with_p2, tmp_path):
    assert train.plan(Prepared(tree_with_p2), ModelParams(arch="patches"),
                      parse_section(TrainParams, {"supervision": "weak"}, "train"), 1) == {"lama": ["lama"]}
