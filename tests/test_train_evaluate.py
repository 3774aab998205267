"""The train and evaluate stages on tiny fabricated arrays."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import recipe

from localize import losses, training
from localize.config import parse_section
from localize.models import ModelParams
from localize.resume import parse_resume_path, resume_files
from localize.runtime import cpu_features
from localize.training import NonFiniteLoss, TrainParams
from stages import evaluate, train

# params.yaml's recipe with tiny sizes and steps. In 12 steps at width 4 the shipped unet-hp with
# Dice + BCE, real faces and a cosine warm-up learns nothing measurable; the reference recipe's
# U-Net with plain Dice, named here, learns the bright patch in that time.
TINY = {"epochs": 3, "steps_per_epoch": 4, "batch_size": 8, "lr": 0.01, "precision": "fp32", "threads": 1,
        "loss": "dice", "real": 0.0, "schedule": "constant", "init": "scratch"}
TINY_MODEL = {"arch": "unet-seed", "width": 4, "dropout": 0.1}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def run_train(prepared: Path, out: Path, **overrides):
    tp = recipe("train", **{**TINY, **overrides})
    mp = recipe("model", **TINY_MODEL)
    return train.run(prepared, out / "models", out / "dvclive", out / "curves.png", out / "ckpt", mp, tp)


def run_evaluate(prepared: Path, out: Path) -> dict:
    paths = {k: out / f"{k}.json" for k in ("iou", "scores", "summary", "cross_root")}
    paths.update(table=out / "table.md", heatmap=out / "heatmap.png", overlays=out / "overlays",
                 cross_root_table=out / "cross_root.md")
    evaluate.run(prepared, out / "models", paths, recipe("evaluate", overlay_images=2))
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
    # The bright patch is easy: trained models beat the trivial predictors and the location prior.
    in_domain = summary["in_domain"]
    assert in_domain["iou"] > max(summary["baselines"].values())
    assert in_domain["iou"] > in_domain["prior"]
    assert in_domain["low"] <= in_domain["iou"] <= in_domain["high"]
    assert summary["runtime"] == {"train_device": "cpu", "train_precision": "fp32", "train_threads": 1,
                                  "evaluate_device": "cpu", "evaluate_precision": "fp32",
                                  "evaluate_cpu": cpu_features()}
    assert summary["runtime"]["evaluate_cpu"].split(": ")[1], "the CPU's features, for a table that differs"
    assert 0 <= summary["real_faces"]["clean"] <= 1
    tuned = summary["valid_thresholds"]  # each model at thresholds chosen on its valid set, reported apart
    assert set(tuned) == {"iou", "selection"}
    assert tuned["iou"]["in_domain"]["low"] <= tuned["iou"]["in_domain"]["iou"] <= tuned["iou"]["in_domain"]["high"]
    assert "threshold chosen on its own valid set" in (tmp_path / "table.md").read_text()
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert {split: set(scores[split]["valid_thresholds"]) for split in results} == {
        split: {"iou", "selection"} for split in results}
    assert {"iou", "iou_ci", "prior_iou", "f1", "ap", "best_f1", "auc"} <= set(scores["alpha"]["alpha"])
    low, high = scores["alpha"]["alpha"]["iou_ci"]
    assert low <= scores["alpha"]["alpha"]["iou"] <= high
    assert 0 <= scores["alpha"]["real"]["fake_area"] <= 1
    assert set(scores["baselines"]) == {"prior", "prior_area", "all-fake", "all-real"}
    assert "| alpha |" in (tmp_path / "table.md").read_text()
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["alpha.png", "beta.png"]


def test_unknown_source_fails_before_training(prepared, tmp_path):
    with pytest.raises(ValueError, match="valid values: table, alpha, beta, no-alpha, no-beta, all"):
        run_train(prepared, tmp_path, source="nonsense")
    assert not (tmp_path / "models").exists()


def test_two_runs_give_identical_weights(prepared, tmp_path):
    a = run_train(prepared, tmp_path / "a", source="alpha")["alpha"].state_dict
    b = run_train(prepared, tmp_path / "b", source="alpha")["alpha"].state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_after_a_kill_matches_an_uninterrupted_run(prepared, tmp_path, monkeypatch, ema):
    whole = run_train(prepared, tmp_path / "whole", source="alpha", ema=ema)["alpha"]

    # Kill the run at the start of epoch 3, after the epoch-2 checkpoint was written.
    checkpointed_run(prepared, tmp_path / "cut", monkeypatch, ema=ema)
    assert not (tmp_path / "cut" / "models").exists(), "a killed run leaves no models"
    assert len(resume_files(tmp_path / "cut" / "ckpt", "alpha")) == 1

    resumed = run_train(prepared, tmp_path / "cut", source="alpha", ema=ema)["alpha"]
    assert resumed.history == whole.history
    assert all(torch.equal(resumed.state_dict[k], whole.state_dict[k]) for k in whole.state_dict)
    # Byte for byte: DVC hashes the file, so equal weights in different bytes would rerun evaluate.
    assert md5(tmp_path / "cut" / "models" / "alpha.pt") == md5(tmp_path / "whole" / "models" / "alpha.pt")


def checkpointed_run(prepared: Path, out: Path, monkeypatch, **overrides) -> Path:
    """An `alpha` run stopped at the start of epoch 3: its epoch-2 checkpoint, returned, is on disk."""
    real_flip = training.apply_flips
    calls = {"n": 0}

    def dying_flip(*args):
        calls["n"] += 1
        if calls["n"] > 2 * TINY["steps_per_epoch"]:
            raise KeyboardInterrupt
        return real_flip(*args)

    monkeypatch.setattr("localize.training.apply_flips", dying_flip)
    with pytest.raises(KeyboardInterrupt):
        run_train(prepared, out, source="alpha", **overrides)
    monkeypatch.setattr("localize.training.apply_flips", real_flip)
    [checkpoint] = (out / "ckpt").glob("alpha-*.pt")
    return checkpoint


def test_train_ema_saves_the_moving_average_of_the_weights(prepared, tmp_path):
    """An average that forgets at once (decay near 0) is the plain run; decay 0.9 lags behind it."""
    runs = {ema: run_train(prepared, tmp_path / str(ema), source="alpha", epochs=1, ema=ema)["alpha"].state_dict
            for ema in (None, 1e-9, 0.9)}
    plain = runs[None]
    floats = [k for k in plain if plain[k].is_floating_point()]
    assert all(torch.allclose(runs[1e-9][k], plain[k], atol=1e-5) for k in floats)
    assert max((runs[0.9][k] - plain[k]).abs().max().item() for k in floats) > 1e-3
    with pytest.raises(ValueError, match=r"ema must be null \(off\) or in \(0, 1\)"):
        recipe("train", ema=1.0)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_a_crafted_checkpoint_runs_no_code_and_is_set_aside(prepared, tmp_path, monkeypatch, capsys):
    checkpoint = checkpointed_run(prepared, tmp_path, monkeypatch)
    marker = tmp_path / "pwned"
    with checkpoint.open("wb") as f:
        pickle.dump({"model": _RunsCode(marker), "optimizer": {}, "progress": {}}, f)
    capsys.readouterr()
    result = run_train(prepared, tmp_path, source="alpha")["alpha"]
    assert not marker.exists(), "loading a checkpoint ran code"
    out = capsys.readouterr().out
    assert f"{checkpoint}: not a readable checkpoint" in out and "trains from epoch 1" in out
    assert checkpoint.with_name(checkpoint.name + ".corrupt").exists()
    assert [row["epoch"] for row in result.history] == [1, 2, 3]


def test_a_truncated_checkpoint_is_named_set_aside_and_retrained(prepared, tmp_path, monkeypatch, capsys):
    whole = run_train(prepared, tmp_path / "whole", source="alpha")
    checkpoint = checkpointed_run(prepared, tmp_path / "cut", monkeypatch)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    capsys.readouterr()
    resumed = run_train(prepared, tmp_path / "cut", source="alpha")
    assert f"{checkpoint}: not a readable checkpoint" in capsys.readouterr().out
    assert resumed["alpha"].history == whole["alpha"].history
    assert md5(tmp_path / "cut" / "models" / "alpha.pt") == md5(tmp_path / "whole" / "models" / "alpha.pt")
    run_train(prepared, tmp_path / "cut", source="alpha")  # and the next rerun too


def test_nan_loss_stops_with_a_clear_error(prepared, tmp_path, monkeypatch):
    monkeypatch.setitem(losses.LOSSES, "dice",
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


def test_an_arch_that_cannot_run_at_the_size_is_refused_naming_both(tmp_path):
    from conftest import make_prepared

    prepared = make_prepared(tmp_path / "prepared", size=7)
    tp = parse_section(TrainParams, {**TINY, "source": "alpha"}, "train")
    with pytest.raises(ValueError, match="model.arch unet-res-srm cannot run at preprocess.size 7"):
        train.run(prepared, tmp_path / "models", tmp_path / "live", tmp_path / "c.png", tmp_path / "ck",
                  ModelParams(arch="unet-res-srm", width=4), tp)
    assert not (tmp_path / "models").exists()


def interrupted_table_run(prepared: Path, out: Path, monkeypatch) -> None:
    """A `table` run killed when its second split starts: the first split's result is on disk."""
    real_fit = train.fit
    calls = []

    def fit_once(*args, **kwargs):
        calls.append(args[0])
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr("stages.train.fit", fit_once)
    with pytest.raises(KeyboardInterrupt):
        run_train(prepared, out, source="table")
    monkeypatch.setattr("stages.train.fit", real_fit)
    assert [parse_resume_path(p).split for p in resume_files(out / "ckpt", done=True)] == ["alpha"]


def test_a_finished_split_is_reused_after_an_interruption(prepared, tmp_path, monkeypatch, capsys):
    interrupted_table_run(prepared, tmp_path, monkeypatch)
    capsys.readouterr()
    run_train(prepared, tmp_path, source="table")
    assert "[alpha] already trained before the interruption" in capsys.readouterr().out


def test_a_changed_image_invalidates_a_finished_split(prepared, tmp_path, monkeypatch, capsys):
    interrupted_table_run(prepared, tmp_path, monkeypatch)
    images = prepared / "alpha" / "train" / "images.npy"
    changed = np.load(images)
    changed[0, 0, 0, 0] ^= 1  # one bit of one image; masks and ids unchanged
    np.save(images, changed)
    capsys.readouterr()
    run_train(prepared, tmp_path, source="table")
    out = capsys.readouterr().out
    assert "already trained" not in out and "resuming" not in out
    assert "[alpha] epoch 3:" in out


def test_a_truncated_finished_split_is_set_aside_and_trained_again(prepared, tmp_path, monkeypatch, capsys):
    interrupted_table_run(prepared, tmp_path, monkeypatch)
    [done] = (tmp_path / "ckpt").glob("*.done.pt")
    done.write_bytes(done.read_bytes()[:500])
    capsys.readouterr()
    run_train(prepared, tmp_path, source="table")
    out = capsys.readouterr().out
    assert f"{done}: not a model saved by the train stage" in out and "alpha trains again" in out
    assert (tmp_path / "models" / "alpha.pt").exists()


def test_a_code_change_invalidates_a_finished_split(prepared, tmp_path, monkeypatch, capsys):
    interrupted_table_run(prepared, tmp_path, monkeypatch)
    monkeypatch.setattr("stages.train.code_fingerprint", lambda: "the loss changed")
    capsys.readouterr()
    run_train(prepared, tmp_path, source="table")
    assert "already trained" not in capsys.readouterr().out


class ConstantModel(torch.nn.Module):
    """Logits of one value everywhere: +10 flags every pixel, -10 none."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = logit

    def forward(self, x):
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.logit)


def test_selection_scores_valid_fakes_and_valid_real_faces(prepared):
    from localize.prepared import Prepared
    from localize.runtime import Runtime
    from localize.training import Progress, SplitData, score_on_valid

    p = Prepared(prepared)
    data = SplitData(train=[], valid=[p.arrays("alpha", "valid")], real_valid=[p.arrays("real", "valid")])
    rt = Runtime(torch.device("cpu"), "fp32", 1)
    loud = score_on_valid(ConstantModel(10.0), data, rt, batch_size=4)
    quiet = score_on_valid(ConstantModel(-10.0), data, rt, batch_size=4)
    # The fixture's fakes are one 8x8 square in 16x16: flagging everything gives IoU 1/4 on them
    # and flags every real face; flagging nothing gives 0 on fakes and leaves every real face clean.
    assert loud == {"valid_iou": pytest.approx(0.25), "valid_real_clean": 0.0, "valid_score": pytest.approx(0.125)}
    # An empty map fails every fake: the selection score gives it 0, not the 0.5 of a plain average.
    assert quiet == {"valid_iou": 0.0, "valid_real_clean": 1.0, "valid_score": 0.0}

    # An epoch that finds more fake pixels but flags most real faces is not the one kept.
    progress, model = Progress(), torch.nn.Linear(1, 1)
    progress.record({"epoch": 1, "valid_iou": 0.6, "valid_real_clean": 0.2, "valid_score": 0.4}, model, False)
    progress.record({"epoch": 2, "valid_iou": 0.5, "valid_real_clean": 0.9, "valid_score": 0.7}, model, True)
    assert progress.best_epoch == 2


class HalfBrightness(torch.nn.Module):
    """Fake probability = half the pixel's brightness: the fixture's bright patches (brightness 0.82
    and more) get 0.41 and more, its background (below 120/255) less than 0.24."""

    def forward(self, x):
        p = ((x.mean(1, keepdim=True) + 1) / 2 * 0.5).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p))


def test_thresholds_chosen_on_valid_are_scored_beside_the_fixed_one(prepared):
    from localize.evaluation import score_model, valid_thresholds
    from localize.prepared import Prepared

    p = Prepared(prepared)
    # Every threshold from 0.25 to 0.40 separates patch from background on valid (fakes' IoU 1, every
    # real face clean), for both ways of choosing; the tie goes to the one nearest 0.5.
    assert valid_thresholds(HalfBrightness(), p, ["alpha"], batch_size=4) == {"iou": 0.4, "selection": 0.4}
    assert valid_thresholds(HalfBrightness(), p, [], batch_size=4) == {}
    scores = score_model(HalfBrightness(), p, 0.5, 4, "max", other_thresholds={"iou": 0.4, "low": 1e-9})
    # At Dolos' 0.5 nothing is flagged: IoU 0 on every fake; at 0.4 exactly the patch: IoU 1.
    assert all((v == 0).all() for v in scores.ious.values())
    assert scores.at_valid_thresholds["iou"].threshold == 0.4
    assert all((v == 1).all() for v in scores.at_valid_thresholds["iou"].ious.values())
    assert (scores.at_valid_thresholds["iou"].real_flagged == 0).all() and (scores.real_flagged == 0).all()
    # Near 0 every pixel is flagged: every real face fails, fakes score their mask's share (an 8x8 patch in 16x16).
    assert (scores.at_valid_thresholds["low"].real_flagged == 1).all()
    assert all(np.allclose(v, 0.25) for v in scores.at_valid_thresholds["low"].ious.values())
    assert score_model(HalfBrightness(), p, 0.5, 4, "max").at_valid_thresholds == {}


class CountingImages(torch.nn.Module):
    """HalfBrightness, counting the images it is run on."""

    def __init__(self):
        super().__init__()
        self.inner, self.images = HalfBrightness(), 0

    def forward(self, x):
        self.images += len(x)
        return self.inner(x)


def test_one_valid_pass_gives_both_choices_made_on_valid(prepared):
    from localize.evaluation import read_valid, valid_min_region, valid_thresholds
    from localize.prepared import Prepared

    p = Prepared(prepared)
    valid_images = p.splits["alpha"]["valid"] + p.splits["real"]["valid"]
    model = CountingImages()
    maps = read_valid(model, p, ["alpha"], 0.4, batch_size=4)
    assert model.images == valid_images  # the fakes of the model's generators and the real faces, once
    assert set(maps.binary) == {"alpha", "real"} and maps.binary["alpha"].dtype == bool
    # At 0.4 the map is exactly the fixture's 8x8 patch (HalfBrightness): a quarter of each fake, no real pixel.
    assert maps.binary["alpha"].mean() == pytest.approx(0.25) and not maps.binary["real"].any()
    assert valid_thresholds(model, p, ["alpha"], 4, maps) == valid_thresholds(HalfBrightness(), p, ["alpha"], 4)
    assert valid_min_region(model, p, ["alpha"], 0.4, [0, 0.01], 4, maps) == valid_min_region(
        HalfBrightness(), p, ["alpha"], 0.4, [0, 0.01], 4)
    assert model.images == valid_images  # both read the pass: no second inference
    with pytest.raises(ValueError, match="valid maps read at threshold 0.4, asked for 0.5"):
        valid_min_region(model, p, ["alpha"], 0.5, [0, 0.01], 4, maps)


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
        "  precision: fp32\n  threads: 1\n  init: scratch\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "stages.train", "--prepared", str(prepared), "--models", "models", "--live", "live",
           "--curves", "curves.png", "--checkpoints", "ckpt"]
    # The output goes to files: the loop prints every epoch, and a pipe that nobody reads fills up
    # and blocks the child (before a checkpoint, or in its Ctrl-C message). SIGINT starts at its
    # default, as a shell gives it, whatever disposition this test process inherited.
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as errors:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=errors,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while (not resume_files(tmp_path / "ckpt", "alpha") and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert resume_files(tmp_path / "ckpt", "alpha"), (
            f"no checkpoint; exit status {proc.poll()}; stderr ends: {(tmp_path / 'err.txt').read_text()[-2000:]}")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    err = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    epoch = training.checkpoint_epoch(next((tmp_path / "ckpt").glob("alpha-*.pt")))
    assert last == f"interrupted; rerun to resume alpha from epoch {epoch + 1}"
    assert not (tmp_path / "models").exists()


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path):
    from localize.saved_model import save_file

    with pytest.raises(OSError, match=r"^/dev/full: cannot be written, is the disk full\?"):
        save_file({"weights": torch.zeros(100_000)}, "/dev/full")


class PatchAndStrayPixel(torch.nn.Module):
    """Flags the fixture's bright patch and, on every image, its bottom-right pixel, which no patch
    touches (patches are 8x8 at offsets 0 to 7 of 16x16 images)."""

    def forward(self, x):
        flagged = x.mean(1, keepdim=True) > 0.3  # inputs in [-1, 1]: patches from 0.64, background below 0
        flagged[..., -1, -1] = True
        return torch.where(flagged, 10.0, -10.0)


def test_a_min_region_chosen_on_valid_clears_stray_pixels_from_every_map(prepared):
    from localize.evaluation import score_model, valid_min_region
    from localize.prepared import Prepared

    p = Prepared(prepared)
    # 0.01 of a 16x16 image is 3 px: the stray pixel goes, the 64-px patch stays. 0.2 is ruled out,
    # being above half of the smallest training mask (an 8x8 patch: 0.25 of the image).
    share, scores = valid_min_region(PatchAndStrayPixel(), p, ["alpha"], 0.5, [0, 0.01, 0.2], batch_size=4)
    assert share == 0.01 and set(scores) == {0.0, 0.01}
    assert scores[0.0] == pytest.approx(64 / 65 / 2)  # every valid real face flagged
    assert scores[0.01] == pytest.approx(1.0)
    raw = score_model(PatchAndStrayPixel(), p, 0.5, 4, "max")
    cleaned = score_model(PatchAndStrayPixel(), p, 0.5, 4, "max", min_region=3)
    assert (raw.real_flagged > 0).all() and (cleaned.real_flagged == 0).all()
    assert all(np.allclose(v, 64 / 65) for v in raw.ious.values())
    assert all(np.allclose(v, 1.0) for v in cleaned.ious.values()) and cleaned.min_region == 3
    # F1 reads the binary maps; AP, best F1 and AUC read the probabilities and do not move.
    assert all(c["f1"] == 1.0 for c in cleaned.cells.values())
    probability_scores = {g: {k: c[k] for k in ("ap", "best_f1", "auc")} for g, c in raw.cells.items()}
    assert {g: {k: c[k] for k in ("ap", "best_f1", "auc")} for g, c in cleaned.cells.items()} == probability_scores
