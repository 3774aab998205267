"""Params are validated on load, with errors that list what is allowed."""

import pytest

from localize.config import ParamsError, load_section, parse_section
from localize.splits import resolve_source, training_splits
from localize.training import TrainParams


def test_defaults_and_types():
    tp = parse_section(TrainParams, {"epochs": 3, "lr": 1}, "train")
    assert tp.epochs == 3 and tp.lr == 1.0 and isinstance(tp.lr, float)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, "unknown key.*allowed keys:.*epochs"),
        ({"epochs": "3"}, "train.epochs.*expected int"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"loss": "focal"}, "choose one of: dice, dice-bce"),
        ({"device": "tpu"}, "choose one of: auto, cpu, cuda, mps"),
        ({"lr": -1.0}, "lr must be > 0"),
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
