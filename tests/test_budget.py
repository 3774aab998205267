"""Training budgets: one-pass epochs, the step cap, patience, the under-one-pass line and its record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_prepared
from test_train_evaluate import run_evaluate, run_train

from localize import training
from localize.budget import plan_budget, summary_record, under_one_pass
from localize.config import ParamsError, parse_section
from localize.models import ModelParams
from localize.params import TrainParams
from localize.preflight import check_params
from localize.runtime import Runtime
from localize.saved_model import SavedModel
from localize.splits import TABLE, resolve_source
from localize.training import SplitData, fit
from tools.reference import read_overrides, with_sets

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "metrics" / "reference" / "dolos" / "overrides"
DOLOS = ["ldm", "lama", "pluralistic", "repaint"]
DOLOS_TRAIN_FAKES = 9000  # per generator (benchmarks/dolos_scale.py DOLOS_COUNTS)


def committed_params(overrides: list[str] = ()) -> dict:
    """params.yaml with `key=value` overrides applied, values read as YAML (as `dvc exp run -S` does)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for line in overrides:
        key, value = line.split("=", 1)
        section, name = key.split(".", 1)
        params[section][name] = yaml.safe_load(value)
    return params


def table_budgets(train: dict) -> dict:
    tp = parse_section(TrainParams, train, "train")
    splits = resolve_source(TABLE, DOLOS)
    return {split: plan_budget(DOLOS_TRAIN_FAKES * len(gens), tp) for split, gens in splits.items()}


def test_null_steps_per_epoch_is_one_pass_over_the_training_fakes():
    tp = TrainParams(steps_per_epoch=None, batch_size=16, real=0.25, epochs=2)  # 12 fakes a batch
    b = plan_budget(9000, tp)
    assert (b.steps_per_epoch, b.steps, b.fakes_per_batch) == (750, 1500, 12)
    assert b.passes == 2.0
    weak = plan_budget(100, TrainParams(steps_per_epoch=None, batch_size=16, supervision="weak", epochs=1))
    assert weak.steps_per_epoch == math.ceil(100 / 8)  # half of a weak batch is real faces


def test_max_steps_shortens_the_last_epoch():
    b = plan_budget(1000, TrainParams(epochs=3, steps_per_epoch=4, max_steps=10))
    assert (b.epochs, b.steps, [b.steps_in(e) for e in (1, 2, 3)]) == (3, 10, [4, 4, 2])
    assert plan_budget(1000, TrainParams(epochs=3, steps_per_epoch=4, max_steps=8)).epochs == 2


@pytest.mark.parametrize("key,value,message", [
    ("patience", 0, "patience must be an integer >= 1 or null"),
    ("max_steps", -5, "max_steps must be an integer >= 1 or null"),
    ("patience", "five", "'train.patience' = 'five': expected"),
    ("max_steps", 2.5, "'train.max_steps' = 2.5: expected"),
])
def test_bad_budget_params_are_named(key, value, message):
    with pytest.raises(ParamsError, match=message):
        parse_section(TrainParams, {key: value}, "train")


def test_the_committed_default_leaves_the_new_keys_off():
    train = committed_params()["train"]
    assert train["patience"] is None and train["max_steps"] is None
    assert train["steps_per_epoch"] == 20 and train["epochs"] == 8


def test_demo_default_on_dolos_warns_and_the_dolos_recipe_does_not(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the recipe asks for CUDA; this is a CPU
    line = under_one_pass(table_budgets(committed_params()["train"]))
    # 8 epochs x 20 steps x 16 images, 12 of them fakes: 1,920 of 9,000 (single) or 27,000 (leave-one-out).
    assert line is not None and line.count("\n") == 0
    assert "8 of 8 models" in line and "2,560 images" in line and "9,000 to 27,000" in line
    assert "0.07 of a pass" in line and "train.steps_per_epoch: null" in line
    recipe = table_budgets(committed_params(read_overrides(RECIPE))["train"])
    assert under_one_pass(recipe) is None
    steps = {b.steps for b in recipe.values()}
    assert steps == {18750, 25000}  # single-generator: 50 one-pass epochs; leave-one-out: the 25,000 cap


def test_the_full_dolos_recipe_validates_every_section(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the recipe asks for CUDA; this is a CPU
    overrides = read_overrides(RECIPE)
    params = committed_params(overrides)
    assert params["preprocess"]["size"] == 256
    assert (params["train"]["device"], params["train"]["precision"]) == ("cuda", "bf16")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    check_params(path)  # every section through its Params class: no ParamsError
    # --set replaces the placeholder root in place, without a second data.root line.
    moved = with_sets(overrides, ["data.root=/mnt/dolos/celebahq"])
    assert [o for o in moved if o.startswith("data.root=")] == ["data.root=/mnt/dolos/celebahq"]
    with pytest.raises(ValueError, match="--set 'data.root' is not"):
        with_sets(overrides, ["data.root"])


def tiny_fit(prepared: Path, monkeypatch, scores: list[float] | None = None, **train):
    from localize.prepared import Prepared
    p = Prepared(prepared)
    data = SplitData(train=[p.arrays("alpha", "train")], valid=[p.arrays("alpha", "valid")])
    if scores is not None:
        rows = iter(scores)
        monkeypatch.setattr(training, "select_scores", lambda *a, **k: {"valid_score": next(rows)})
    tp = parse_section(TrainParams, {"batch_size": 4, "precision": "fp32", "lr": 0.01, "real": 0.0, **train}, "train")
    rt = Runtime(torch.device("cpu"), "fp32", 1)
    return fit("alpha", data, ModelParams(width=4), tp, rt, verbose=False)


def test_patience_stops_after_epochs_without_a_better_valid_score(prepared, monkeypatch):
    # Best at epoch 2, then 3 epochs without better: stopped after epoch 5 of 10.
    _, progress = tiny_fit(prepared, monkeypatch, [0.1, 0.5, 0.4, 0.5, 0.3] + [0.9] * 5,
                           epochs=10, steps_per_epoch=2, patience=3)
    assert [row["epoch"] for row in progress.history] == [1, 2, 3, 4, 5]
    assert (progress.best_epoch, progress.stopped, progress.steps) == (2, "patience", 10)


def test_patience_off_and_the_step_cap(prepared, monkeypatch):
    _, progress = tiny_fit(prepared, monkeypatch, [0.5, 0.4, 0.3], epochs=3, steps_per_epoch=2)
    assert (len(progress.history), progress.stopped, progress.steps) == (3, None, 6)
    _, progress = tiny_fit(prepared, monkeypatch, [0.5, 0.6], epochs=3, steps_per_epoch=4, max_steps=6)
    assert (len(progress.history), progress.steps) == (2, 6)


def test_a_short_run_prints_one_line_and_evaluate_records_it(tmp_path, capsys):
    prepared = make_prepared(tmp_path / "prepared", counts={"train": 40, "valid": 4, "test": 4})
    results = run_train(prepared, tmp_path, source="table", epochs=1, steps_per_epoch=2)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("budget:")]
    assert len(lines) == 1 and "4 of 4 models" in lines[0]
    saved = SavedModel.load(tmp_path / "models" / "alpha.pt")
    assert saved.budget == {"steps": 2, "planned_steps": 2, "batch_size": 8, "images_seen": 16, "train_fakes": 40,
                            "passes": 0.4, "stopped": None}
    assert results["no-alpha"].budget["train_fakes"] == 40
    run_evaluate(prepared, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["budget"] == {"under_one_pass": 4, "models": 4, "least_trained": "alpha", "steps": 2,
                                 "images_seen": 16, "train_fakes": 40, "passes": 0.4}


def test_a_run_of_a_pass_or_more_has_no_line_and_no_summary_key(prepared, tmp_path, capsys):
    run_train(prepared, tmp_path, source="alpha", epochs=1, steps_per_epoch=None)
    assert "budget:" not in capsys.readouterr().out
    assert SavedModel.load(tmp_path / "models" / "alpha.pt").budget["passes"] >= 1
    assert summary_record({"alpha": {"passes": 1.0}, "beta": None}) is None


def test_a_model_saved_before_budgets_loads_without_one(prepared, tmp_path):
    run_train(prepared, tmp_path, source="alpha", epochs=1, steps_per_epoch=1)
    path = tmp_path / "models" / "alpha.pt"
    saved = torch.load(path, weights_only=True)
    del saved["budget"]
    torch.save(saved, path)
    assert SavedModel.load(path).budget is None
