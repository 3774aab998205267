"""The train and evaluate stages on tiny fabricated arrays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from localize import training
from localize.config import parse_section
from localize.models import ModelParams
from localize.training import NonFiniteLoss, TrainParams
from stages import evaluate, train

TINY = {"epochs": 3, "steps_per_epoch": 4, "batch_size": 8, "lr": 0.01, "precision": "fp32", "threads": 1}


def run_train(prepared: Path, out: Path, **overrides):
    tp = parse_section(TrainParams, {**TINY, **overrides}, "train")
    mp = ModelParams(width=4, dropout=0.1)
    return train.run(prepared, out / "models", out / "dvclive", out / "curves.png", out / "ckpt", mp, tp)


def run_evaluate(prepared: Path, out: Path) -> dict:
    paths = {k: out / f"{k}.json" for k in ("iou", "scores", "summary")}
    paths.update(table=out / "table.md", heatmap=out / "heatmap.png", overlays=out / "overlays")
    evaluate.run(prepared, out / "models", paths, evaluate.EvaluateParams(overlay_images=2))
    return json.loads(paths["iou"].read_text())


def test_table_trains_every_single_and_leave_one_out_split(prepared, tmp_path):
    results = run_train(prepared, tmp_path, source="table")
    assert set(results) == {"alpha", "beta", "no-alpha", "no-beta"}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "alpha.pt", "beta.pt", "no-alpha.pt", "no-beta.pt"]
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert not list((tmp_path / "ckpt").iterdir()), "checkpoints are removed once training is done"
    tsv = tmp_path / "dvclive" / "plots" / "metrics" / "alpha" / "valid_iou.tsv"
    assert len(tsv.read_text().splitlines()) == 1 + TINY["epochs"]

    table = run_evaluate(prepared, tmp_path)
    assert set(table) == set(results)
    for row in table.values():
        assert set(row) == {"alpha", "beta", "mean"}
        assert all(0 <= v <= 1 for v in row.values())
    summary = json.loads((tmp_path / "summary.json").read_text())
    # The bright patch is easy: trained models beat both trivial predictors.
    best_baseline = max(summary["baselines"]["all-fake"]["mean"], summary["baselines"]["all-real"]["mean"])
    assert summary["in_domain_mean"] > best_baseline
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert {"iou", "f1", "ap", "best_f1", "auc"} <= set(scores["alpha"]["alpha"])
    assert 0 <= scores["alpha"]["real"]["fake_area"] <= 1
    assert "| alpha |" in (tmp_path / "table.md").read_text()
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["alpha.png", "beta.png"]


def test_unknown_source_fails_before_training(prepared, tmp_path):
    with pytest.raises(ValueError, match="valid values: table, alpha, beta, no-alpha, no-beta, all"):
        run_train(prepared, tmp_path, source="nonsense")
    assert not (tmp_path / "models").exists()


def test_two_runs_give_identical_weights(prepared, tmp_path):
    a = run_train(prepared, tmp_path / "a", source="alpha")["alpha"]["state_dict"]
    b = run_train(prepared, tmp_path / "b", source="alpha")["alpha"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_matches_an_uninterrupted_run(prepared, tmp_path, monkeypatch):
    whole = run_train(prepared, tmp_path / "whole", source="alpha")["alpha"]

    # Kill the run at the start of epoch 3, after the epoch-2 checkpoint was written.
    real_flip = training.apply_flips
    calls = {"n": 0}

    def dying_flip(*args):
        calls["n"] += 1
        if calls["n"] > 2 * TINY["steps_per_epoch"]:
            raise KeyboardInterrupt
        return real_flip(*args)

    monkeypatch.setattr("localize.training.apply_flips", dying_flip)
    with pytest.raises(KeyboardInterrupt):
        run_train(prepared, tmp_path / "cut", source="alpha")
    assert not (tmp_path / "cut" / "models").exists(), "a killed run leaves no models"
    assert len(list((tmp_path / "cut" / "ckpt").glob("alpha-*.pt"))) == 1

    monkeypatch.setattr("localize.training.apply_flips", real_flip)
    resumed = run_train(prepared, tmp_path / "cut", source="alpha")["alpha"]
    assert resumed["history"] == whole["history"]
    assert all(torch.equal(resumed["state_dict"][k], whole["state_dict"][k]) for k in whole["state_dict"])


def test_nan_loss_stops_with_a_clear_error(prepared, tmp_path, monkeypatch):
    monkeypatch.setitem(training.LOSSES, "dice",
                        lambda logits, y: logits.sum() * float("nan"))
    with pytest.raises(NonFiniteLoss, match="split 'alpha': loss is nan at epoch 1, step 1"):
        run_train(prepared, tmp_path, source="alpha")
    assert not (tmp_path / "models").exists()


def test_evaluate_without_models_fails_clearly(prepared, tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="no trained models"):
        run_evaluate(prepared, tmp_path)
    assert not (tmp_path / "iou.json").exists()


def test_arrays_are_read_memory_mapped(prepared):
    from localize.prepared import Prepared

    images, masks = Prepared(prepared).arrays("alpha", "train")
    assert isinstance(images, np.memmap) and isinstance(masks, np.memmap)


def test_seed_unet_rejects_a_size_it_cannot_pool(tmp_path):
    from conftest import make_prepared

    prepared = make_prepared(tmp_path / "prepared", size=18)
    with pytest.raises(ValueError, match="divisible by 4, got 18"):
        run_train(prepared, tmp_path, source="alpha")


def test_a_split_without_train_images_is_refused_before_any_split_trains(prepared, tmp_path):
    manifest = json.loads((prepared / "manifest.json").read_text())
    manifest["splits"]["beta"] = {"test": manifest["splits"]["beta"]["test"]}  # a generator with a test split only
    (prepared / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"train.source=table: beta, no-alpha cannot train, none of its generators "
                                         r"has train images"):
        run_train(prepared, tmp_path, source="table")
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "models").exists()
    run_train(prepared, tmp_path, source="alpha", epochs=1)  # the splits that can train still do


def test_ctrl_c_prints_one_line_saying_where_a_rerun_resumes(prepared, tmp_path):
    (tmp_path / "params.yaml").write_text(
        "model:\n  width: 4\ntrain:\n  source: alpha\n  epochs: 10000\n  steps_per_epoch: 5\n  batch_size: 4\n"
        "  precision: fp32\n  threads: 1\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "stages.train", "--prepared", str(prepared), "--models", "models", "--live", "live",
           "--curves", "curves.png", "--checkpoints", "ckpt"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "ckpt").glob("alpha-*.pt")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    epoch = torch.load(next((tmp_path / "ckpt").glob("alpha-*.pt")), weights_only=False)["state"]["epoch"]
    assert last == f"interrupted; rerun to resume alpha from epoch {epoch + 1}"
    assert not (tmp_path / "models").exists()
