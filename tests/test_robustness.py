"""The robustness sweep, the degradation augmentation and scoring on other Dolos-layout roots,
on tiny trees in Dolos' layout (tests/test_index.py's make_tree)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import recipe
from test_index import make_tree
from test_train_evaluate import run_train

from localize import degrade, training
from localize.batches import ArrayPool
from localize.config import ParamsError, parse_section
from localize.imageio import load_rgb, resize_image
from localize.params import IndexParams, PreprocessParams, RobustnessParams
from localize.prepared import Prepared
from localize.training import TrainParams
from stages import evaluate, robustness
from stages import index as index_stage
from stages import preprocess as preprocess_stage

# Blur, JPEG and resizes run in this process too (workers: 1); OpenCV would start its thread pool
# for them, and a worker process forked after that (index, preprocess, workers: 2) hangs in
# cv2.setNumThreads, waiting on pool threads that do not exist in the child.
cv2.setNumThreads(1)

SOURCE = 24  # make_tree's image side
SIZE = 16  # prepared side: smaller than the source, so "before the resize" is visible
SWEEP = {"jpeg": [50], "downscale": [0.5], "blur": [1], "noise": [5]}


def build(tmp_path: Path, folders=("lama", "ldm"), name="home") -> tuple[Path, Path, Path]:
    """Tree -> index -> prepared at SIZE: (root, index csv, prepared dir)."""
    root = tmp_path / name
    make_tree(root, folders=folders, counts={"train": 6, "valid": 2, "test": 3}, p2=False)
    csv = tmp_path / f"{name}-index.csv"
    index_stage.run(root, csv, tmp_path / f"{name}-problems.csv", tmp_path / f"{name}-data.json",
                    IndexParams(workers=1))
    prepared = tmp_path / f"{name}-prepared"
    preprocess_stage.run(csv, prepared, PreprocessParams(size=SIZE, workers=1))
    return root, csv, prepared


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A tiny tree, prepared, and one tiny model trained on `lama`: (root, index, prepared, out)."""
    tmp = tmp_path_factory.mktemp("home")
    root, csv, prepared = build(tmp)
    run_train(prepared, tmp, source="lama", epochs=1, steps_per_epoch=2)
    return root, csv, prepared, tmp


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_sweep(home, tmp_path: Path, **params) -> tuple[dict, dict[str, Path]]:
    _, csv, prepared, out = home
    paths = {"headline": tmp_path / "robustness.json", "detail": tmp_path / "detail.json",
             "table": tmp_path / "robustness.md", "plots": tmp_path / "plots"}
    rp = parse_section(RobustnessParams, {"sweep": SWEEP, "bootstrap": 20, "workers": 1, **params}, "robustness")
    return robustness.run(csv, prepared, out / "models", paths, rp), paths


# ---- the perturbations themselves ----


@pytest.mark.parametrize(("kind", "strength"), [("jpeg", 50), ("downscale", 0.5), ("blur", 1.0), ("noise", 5.0)])
def test_each_perturbation_is_deterministic_keeps_the_size_and_changes_the_image(kind, strength):
    image = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    first = degrade.apply(image, kind, strength, np.random.default_rng(7))
    again = degrade.apply(image, kind, strength, np.random.default_rng(7))
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, image)


def test_the_sweep_perturbs_the_source_at_its_own_resolution_then_resizes_as_preprocess(home, tmp_path,
                                                                                        monkeypatch):
    root, csv, prepared, _ = home
    seen = []
    real_apply = robustness.apply

    def spy(image, kind, strength, rng):
        seen.append(image.shape[:2])
        return real_apply(image, kind, strength, rng)

    monkeypatch.setattr(robustness, "apply", spy)
    rp = parse_section(RobustnessParams, {"sweep": SWEEP, "workers": 1}, "robustness")
    sets = robustness.build_perturbed(csv, Prepared(prepared), rp, tmp_path / "sets")
    assert seen and set(seen) == {(SOURCE, SOURCE)}  # never the prepared size

    # The clean copy is preprocess's output byte for byte; a perturbed one is resize(perturb(source)).
    clean_images, clean_masks = sets["clean"].arrays("lama", "test")
    np.testing.assert_array_equal(clean_images, Prepared(prepared).arrays("lama", "test")[0])
    first = sets["clean"].ids("lama", "test")[0]
    source = load_rgb(root / "fake" / "lama" / "images" / "test" / f"{first}.png")
    expected = resize_image(degrade.jpeg(source, 50), SIZE, SIZE)
    np.testing.assert_array_equal(sets["jpeg-50"].arrays("lama", "test")[0][0], expected)
    np.testing.assert_array_equal(sets["jpeg-50"].arrays("lama", "test")[1], clean_masks)


def test_the_sweep_is_deterministic_whatever_the_workers(home, tmp_path):
    _, csv, prepared, _ = home
    one = parse_section(RobustnessParams, {"sweep": SWEEP, "workers": 1}, "robustness")
    two = parse_section(RobustnessParams, {"sweep": SWEEP, "workers": 2}, "robustness")
    robustness.build_perturbed(csv, Prepared(prepared), one, tmp_path / "a")
    robustness.build_perturbed(csv, Prepared(prepared), two, tmp_path / "b")
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


# ---- the stage ----


def test_the_stage_writes_headline_detail_table_and_a_plot_per_perturbation(home, tmp_path):
    detail, paths = run_sweep(home, tmp_path)
    headline = json.loads(paths["headline"].read_text())
    assert list(headline["mean_iou"]) == ["clean", "jpeg-50", "downscale-0.5", "blur-1", "noise-5"]
    cell = detail["lama"]["noise-5"]
    assert {"iou", "iou_ci", "ap", "real_clean", "real_clean_ci", "generators"} <= set(cell)
    assert set(cell["generators"]) == {"lama", "ldm"}
    assert sorted(p.name for p in paths["plots"].iterdir()) == ["blur.png", "downscale.png", "jpeg.png", "noise.png"]
    assert "real faces clean" in paths["table"].read_text()


def test_a_rerun_writes_the_same_bytes(home, tmp_path):
    # Nothing that varies between runs (wall-clock seconds) goes into the outputs.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, first = run_sweep(home, tmp_path / "a")
    _, second = run_sweep(home, tmp_path / "b")
    for key in ("detail", "headline", "table"):
        assert first[key].read_bytes() == second[key].read_bytes(), key


def test_the_clean_column_is_evaluates_score(home, tmp_path):
    detail, _ = run_sweep(home, tmp_path)
    _, _, prepared, out = home
    paths = {k: tmp_path / f"e-{k}.json" for k in ("iou", "scores", "summary", "cross_root")}
    paths.update(table=tmp_path / "t.md", heatmap=tmp_path / "h.png", overlays=tmp_path / "o",
                 cross_root_table=tmp_path / "c.md")
    table = evaluate.run(prepared, out / "models", paths, evaluate.EvaluateParams(overlay_images=0))
    for gen in ("lama", "ldm"):
        assert detail["lama"]["clean"]["generators"][gen]["iou"] == pytest.approx(table["lama"][gen], abs=1e-6)


def test_perturbed_images_are_never_written_into_prepared(home, tmp_path, monkeypatch):
    _, _, prepared, _ = home
    before = tree_digest(prepared)
    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    run_sweep(home, tmp_path)
    assert tree_digest(prepared) == before
    assert not any(temp.iterdir())  # the perturbed copies are gone too


@pytest.mark.parametrize(("values", "allowed"), [
    ({"sweep": {"sharpen": [1]}}, "jpeg, downscale, blur, noise"),
    ({"sweep": {"jpeg": [0]}}, "1..100"),
    ({"sweep": {"jpeg": [101]}}, "1..100"),
    ({"sweep": {"jpeg": [75.5]}}, "whole number"),
    ({"sweep": {"blur": [-1]}}, "in [0, 64]"),
    ({"sweep": {"noise": [-0.1]}}, "in [0, 255]"),
    ({"sweep": {"blur": [float("inf")]}}, "blur inf: must be the Gaussian sigma in pixels, in [0, 64]"),
    ({"sweep": {"blur": [1e5]}}, "in [0, 64]"),
    ({"sweep": {"noise": [float("inf")]}}, "in [0, 255]"),
    ({"sweep": {"noise": [float("nan")]}}, "in [0, 255]"),
    ({"sweep": {"jpeg": [50, 50]}}, "jpeg-50 more than once"),
    ({"sweep": {"blur": [1, 1.0]}}, "blur-1 more than once"),
    ({"sweep": {"noise": list(range(21))}}, "at most 20"),
    ({"bootstrap": 10**9}, "bootstrap = 1000000000: must be between 1 and 10,000"),
    ({"bootstrap": 0}, "between 1 and 10,000"),
    ({"max_images": 10**12}, "between 1 and 1,000,000 or null"),
    ({"batch_size": 10**9}, "batch_size = 1000000000: must be between 1 and 4,096"),
    ({"models": []}, "models = []: list at least one trained split"),
    ({"sweep": {"downscale": [0]}}, "(0, 1]"),
    ({"sweep": {"downscale": [1.5]}}, "(0, 1]"),
    ({"sweep": {"jpeg": []}}, "no strength"),
    ({"models": "best"}, "single, all"),
    ({"detection_score": "median"}, "max, mean"),
])
def test_bad_sweep_params_are_refused_with_the_allowed_values(values, allowed):
    with pytest.raises(ParamsError, match="robustness") as e:
        parse_section(RobustnessParams, values, "robustness")
    assert allowed in str(e.value)


def test_an_unknown_model_name_lists_the_trained_ones(home, tmp_path):
    with pytest.raises(ValueError, match="trained: lama"):
        run_sweep(home, tmp_path, models=["ldm"])


# ---- the degradation augmentation ----


def test_degrade_batch_is_deterministic_and_keeps_shapes():
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    a = degrade.degrade_batch(images, 1.0, np.random.default_rng(3))
    b = degrade.degrade_batch(images, 1.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == images.shape and all(not np.array_equal(x, y) for x, y in zip(a, images))
    assert degrade.degrade_batch(images, 0.0, np.random.default_rng(3)) is images


def test_train_degrade_applies_to_fakes_and_reals_and_is_deterministic(prepared, monkeypatch):
    p = Prepared(prepared)
    fakes = ArrayPool([p.arrays("alpha", "train")])
    reals = ArrayPool([p.arrays("real", "train")])
    calls = []
    real_degrade = training.degrade_batch

    def spy(images, probability, rng):
        calls.append(images.copy())
        return real_degrade(images, probability, rng)

    monkeypatch.setattr(training, "degrade_batch", spy)

    def batches(degrade_p: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tp = recipe("train", init="scratch", batch_size=8, synthetic=0.25, real=0.0, degrade=degrade_p, augment="none")
        return list(training.epoch_batches(fakes, reals, tp, "alpha", 0, 2, torch.device("cpu")))

    plain, degraded, again = batches(0.0), batches(1.0), batches(1.0)
    # Per step: fakes (6 of them), then the real faces that self-blending starts from (2).
    assert [len(c) for c in calls[4:8]] == [6, 2, 6, 2]
    real_rows = np.asarray(p.arrays("real", "train")[0]).reshape(len(reals), -1)
    assert any((real_rows == c.reshape(1, -1)).all(1).any() for c in calls[5])  # real faces go through it
    for (x0, y0), (x1, y1), (x2, _) in zip(plain, degraded, again):
        torch.testing.assert_close(x1, x2)
        torch.testing.assert_close(y0, y1)  # masks untouched
        assert not torch.equal(x0[:6], x1[:6])  # fakes degraded


def test_train_degrade_is_validated():
    with pytest.raises(ParamsError, match=r"degrade must be in \[0, 1\]"):
        parse_section(TrainParams, {"degrade": 1.5}, "train")


# ---- other roots ----


def test_evaluate_also_scores_another_root_and_reports_a_missing_generator(home, tmp_path):
    _, _, prepared, out = home
    other, _, _ = build(tmp_path, folders=("lama",), name="other")  # no ldm
    paths = {k: tmp_path / f"{k}.json" for k in ("iou", "scores", "summary", "cross_root")}
    paths.update(table=tmp_path / "t.md", heatmap=tmp_path / "h.png", overlays=tmp_path / "o",
                 cross_root_table=tmp_path / "cross_root.md")
    before = tree_digest(prepared)
    evaluate.run(prepared, out / "models", paths,
                 evaluate.EvaluateParams(overlay_images=0, bootstrap=20, also=[str(other)]))
    result = json.loads(paths["cross_root"].read_text())[str(other)]
    assert result["generators"] == ["lama"] and result["missing"] == ["ldm"]
    record = result["models"]["lama"]
    assert set(record["generators"]) == {"lama"} and 0 <= record["iou"] <= 1
    assert record["real_clean"] is not None
    table = paths["cross_root_table"].read_text()
    assert str(other) in table and "Missing from this root (not scored): ldm" in table
    assert tree_digest(prepared) == before


def test_evaluate_without_other_roots_writes_an_empty_cross_root_table(home, tmp_path):
    _, _, prepared, out = home
    paths = {k: tmp_path / f"{k}.json" for k in ("iou", "scores", "summary", "cross_root")}
    paths.update(table=tmp_path / "t.md", heatmap=tmp_path / "h.png", overlays=tmp_path / "o",
                 cross_root_table=tmp_path / "cross_root.md")
    evaluate.run(prepared, out / "models", paths, evaluate.EvaluateParams(overlay_images=0, bootstrap=20))
    assert json.loads(paths["cross_root"].read_text()) == {}
    assert "evaluate.also" in paths["cross_root_table"].read_text()


def test_train_degrade_applies_to_plain_real_faces_too(prepared, monkeypatch):
    p = Prepared(prepared)
    fakes, reals = ArrayPool([p.arrays("alpha", "train")]), ArrayPool([p.arrays("real", "train")])
    sizes = []
    real_degrade = training.degrade_batch
    monkeypatch.setattr(training, "degrade_batch",
                        lambda im, pr, rng: sizes.append(len(im)) or real_degrade(im, pr, rng))
    tp = TrainParams(batch_size=8, real=0.25, degrade=1.0, augment="none")
    batches = list(training.epoch_batches(fakes, reals, tp, "alpha", 0, 1, torch.device("cpu")))
    assert sizes == [6, 2] and batches[0][1][6:].sum() == 0  # the fakes, then the plain real faces (empty masks)


# ---- all or nothing ----


def _evaluate_paths(folder: Path) -> dict[str, Path]:
    paths = {k: folder / f"{k}.json" for k in ("iou", "scores", "summary", "cross_root")}
    paths.update(table=folder / "t.md", heatmap=folder / "h.png", overlays=folder / "o",
                 cross_root_table=folder / "cross_root.md")
    return paths


def test_a_failed_or_interrupted_evaluate_leaves_every_previous_output_as_it_was(home, tmp_path, monkeypatch):
    _, _, prepared, out = home
    paths = _evaluate_paths(tmp_path / "metrics")
    ep = evaluate.EvaluateParams(overlay_images=1, bootstrap=20)
    evaluate.run(prepared, out / "models", paths, ep)
    before = tree_digest(tmp_path / "metrics")
    with pytest.raises(FileNotFoundError, match="evaluate.also: /no/such/root: no such folder"):
        evaluate.run(prepared, out / "models", paths,
                     evaluate.EvaluateParams(overlay_images=1, bootstrap=20, also=["/no/such/root"]))
    assert tree_digest(tmp_path / "metrics") == before
    for fault in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        def failing(*args, fault=fault, **kwargs):
            raise fault
        monkeypatch.setattr(evaluate, "cross_root_markdown", failing)  # the last output written
        with pytest.raises(type(fault)):
            evaluate.run(prepared, out / "models", paths, ep)
        assert tree_digest(tmp_path / "metrics") == before
        assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == sorted(p.name for p in paths.values())


def test_ctrl_c_among_evaluates_final_moves_leaves_every_previous_output(home, tmp_path, monkeypatch):
    """A KeyboardInterrupt among the renames that put evaluate's outputs in place: rolled back."""
    from localize import atomic

    _, _, prepared, out = home
    paths = _evaluate_paths(tmp_path / "metrics")
    evaluate.run(prepared, out / "models", paths, evaluate.EvaluateParams(overlay_images=1, bootstrap=20))
    before = tree_digest(tmp_path / "metrics")
    finals, real_replace, moved_in = set(paths.values()), os.replace, []

    def replace(src, dst):  # the 2nd new output moved in: every previous one is aside, one new one is in
        if Path(dst) in finals:
            moved_in.append(Path(dst))
            if len(moved_in) == 2:
                raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):  # other intervals and overlays: every output would change
        evaluate.run(prepared, out / "models", paths, evaluate.EvaluateParams(overlay_images=2, bootstrap=30))
    assert len(moved_in) > 2, "stopped among the final moves, then every previous output was moved back"
    assert tree_digest(tmp_path / "metrics") == before
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == sorted(p.name for p in paths.values())


def test_a_failed_or_interrupted_robustness_leaves_every_previous_output_as_it_was(home, tmp_path, monkeypatch):
    run_sweep(home, tmp_path)
    before = tree_digest(tmp_path)
    monkeypatch.setattr(robustness, "markdown", lambda detail: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(home, tmp_path)
    assert tree_digest(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_another_root_lists_its_dropped_pairs_and_its_errors_name_it(home, tmp_path):
    _, _, prepared, out = home
    other, _, _ = build(tmp_path, folders=("lama",), name="other")
    broken = other / "fake/lama/images/test/00009.png"
    broken.write_bytes(broken.read_bytes()[:100])
    paths = _evaluate_paths(tmp_path / "m")
    evaluate.run(prepared, out / "models", paths,
                 evaluate.EvaluateParams(overlay_images=0, bootstrap=20, also=[str(other)]))
    result = json.loads(paths["cross_root"].read_text())[str(other)]
    assert [d["path"] for d in result["dropped"]] == [str(broken)]
    assert "truncated" in result["dropped"][0]["problem"]
    assert "Bad files left out: 1" in paths["cross_root_table"].read_text()

    no_test = tmp_path / "no-test"
    make_tree(no_test, folders=("lama",), counts={"train": 2}, p2=False)
    with pytest.raises(ValueError, match=f"evaluate.also: {no_test}: no test split") as e:
        evaluate.run(prepared, out / "models", _evaluate_paths(tmp_path / "m2"),
                     evaluate.EvaluateParams(overlay_images=0, bootstrap=20, also=[str(no_test)]))
    assert "cross-root-" not in str(e.value)
