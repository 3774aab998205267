"""Params are validated on load, with errors that list what is allowed."""

from pathlib import Path

import pytest
from conftest import REPO, recipe

from localize.config import ParamsError, load_section, parse_section, read_params
from localize.preflight import SECTIONS
from localize.splits import resolve_source, training_splits
from localize.training import TrainParams


def test_types():
    tp = parse_section(TrainParams, {"epochs": 3, "lr": 1}, "train")
    assert tp.epochs == 3 and tp.lr == 1.0 and isinstance(tp.lr, float)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_default_is_the_params_yaml_value(section):
    """params.yaml is the recipe: a key deleted from it either fails naming the key or changes nothing."""
    shipped = read_params(REPO / "params.yaml")[section]
    for key in shipped:
        rest = {k: v for k, v in shipped.items() if k != key}
        try:
            parsed = parse_section(SECTIONS[section], rest, section)
        except ParamsError as e:
            assert f"'{section}.{key}' is required" in str(e)
            continue
        assert parsed == parse_section(SECTIONS[section], shipped, section), f"{section}.{key}: default != params.yaml"


def test_recipe_is_params_yaml_with_overrides():
    tp = recipe("train", epochs=1)
    assert tp.epochs == 1 and tp.loss == read_params(REPO / "params.yaml")["train"]["loss"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, "unknown key.*allowed keys:.*epochs"),
        ({"epochs": "3"}, "train.epochs.*expected int"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"loss": "focal"}, "choose one of: dice, dice-bce"),
        ({"device": "tpu"}, "choose one of: auto, cpu, cuda, mps"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"batch_size": 2, "synthetic": 0.4, "real": 0.4}, "batch_size 2 with synthetic 0.4 and real 0.4 .*leaves no "
                                                           "place for the generators' fakes"),
        ({"batch_size": 4, "real": 0.1}, "real = 0.1 of batch_size 4 rounds to no image per batch"),
        ({"batch_size": 4, "synthetic": 0.1}, "synthetic = 0.1 of batch_size 4 rounds to no image"),
        ("fast", r"params 'train' = 'fast': expected a mapping"),
        ([1, 2], r"params 'train' = \[1, 2\]: expected a mapping"),
    ],
)
def test_bad_values_are_rejected(values, message):
    with pytest.raises(ParamsError, match=message):
        parse_section(TrainParams, values, "train")


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_section(TrainParams, "train", tmp_path / "params.yaml")


def test_splits_come_from_the_data():
    splits = training_splits(["b", "a", "c"])
    assert splits["a"] == ["a"]
    assert splits["no-a"] == ["b", "c"]
    assert splits["all"] == ["a", "b", "c"]
    table = resolve_source("table", ["a", "b", "c"])
    assert list(table) == ["a", "b", "c", "no-a", "no-b", "no-c"]
    assert resolve_source("no-b", ["a", "b", "c"]) == {"no-b": ["a", "c"]}


def test_unknown_source_lists_valid_names():
    with pytest.raises(ValueError, match=r"valid values: table, lama, ldm, no-lama, no-ldm, all"):
        resolve_source("nonsense", ["lama", "ldm"])


def test_every_section_of_params_yaml_has_a_check():
    from localize.preflight import SECTIONS

    assert set(SECTIONS) == set(read_params(Path(__file__).resolve().parents[1] / "params.yaml"))


@pytest.mark.parametrize("stage", ["demo", "index", "preprocess", "train", "evaluate", "robustness"])
def test_a_bad_later_param_stops_every_stage_before_any_work(stage, tmp_path, monkeypatch):
    """evaluate.threshold = 2 stops the first stage that runs, not evaluate after training."""
    import importlib

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\nevaluate:\n  threshold: 2\n")
    args = {
        "demo": ["--out", "data/demo", "--sheet", "sheet.png"],
        "index": ["--root", "nowhere", "--out", "data/index.csv", "--problems", "data/p.csv", "--metrics", "m.json"],
        "preprocess": ["--index", "data/index.csv", "--out", "data/prepared"],
        "train": ["--prepared", "data/prepared", "--models", "models", "--live", "live", "--curves", "c.png",
                  "--checkpoints", "ckpt"],
        "evaluate": ["--prepared", "data/prepared", "--models", "models", *[
            x for k in ("iou", "scores", "summary", "table", "heatmap", "overlays", "cross-root", "cross-root-table")
            for x in (f"--{k}", f"{k}.out")]],
        "robustness": ["--index", "data/index.csv", "--prepared", "data/prepared", "--models", "models", *[
            x for k in ("headline", "detail", "table", "plots") for x in (f"--{k}", f"{k}.out")]],
    }[stage]
    with pytest.raises(SystemExit) as info:
        importlib.import_module(f"stages.{stage}").main(args)
    assert str(info.value) == "error: params 'evaluate': threshold must be in (0, 1), got 2.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing started


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """YAML whose anchors nest `width` references `levels` deep: small to read, 9**9 items once printed."""
    lines = ["bomb:", "  l0: &l0 [" + ", ".join(["1"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nrobustness:\n  sweep:\n    blur: *l{levels - 1}\n"


@pytest.mark.parametrize("stage, params", [
    ("robustness", None),  # the alias bomb
    ("evaluate", "evaluate:\n  bootstrap: 1000000000\n"),
    ("robustness", "robustness:\n  bootstrap: 1000000000\n"),
    ("robustness", "robustness:\n  sweep:\n    blur: [100000.0]\n"),
])
def test_a_param_past_its_bound_is_refused_at_once_in_a_short_line(stage, params, tmp_path):
    """A value past its bound (or a YAML alias bomb) costs neither memory nor time, and its message stays short."""
    import time

    from conftest import PYTHON, run_measured

    (tmp_path / "params.yaml").write_text(params or _alias_bomb())
    args = [PYTHON, "-m", f"stages.{stage}", "--prepared", "p", "--models", "m"]
    if stage == "evaluate":
        args += ["--iou", "a", "--scores", "b", "--summary", "c", "--table", "d", "--heatmap", "e", "--overlays", "f",
                 "--cross-root", "g", "--cross-root-table", "h"]
    else:
        args += ["--index", "i", "--headline", "a", "--detail", "b", "--table", "c", "--plots", "d"]
    began = time.monotonic()
    status, _, err, peak = run_measured(args, tmp_path, timeout=60)
    assert time.monotonic() - began < 30
    assert status == 1 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert len(line) < 400, line[:500]
    assert "bootstrap" in line or "blur" in line
    assert peak < 500, f"peak RSS {peak:.0f} MB"


def test_an_accelerator_the_machine_lacks_is_refused_at_once(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamsError, match="device = cuda, but this machine has no CUDA device"):
        parse_section(TrainParams, {"device": "cuda"}, "train")


def test_evaluate_and_robustness_seeds_are_checked():
    from localize.params import EvaluateParams, RobustnessParams

    for cls, section in ((EvaluateParams, "evaluate"), (RobustnessParams, "robustness")):
        with pytest.raises(ParamsError, match=f"params '{section}': seed must be >= 0, got -1"):
            parse_section(cls, {"seed": -1}, section)


def test_named_choices_match_the_code_behind_them():
    """localize.params names some choices itself, so checking params imports no model, loss or image code."""
    from localize import params
    from localize.demo.generators import NAMES
    from localize.losses import LOSSES

    assert params.LOSSES == tuple(LOSSES)
    assert params.DEMO_GENERATORS == NAMES
