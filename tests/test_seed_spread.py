"""The seed spread: mean and sample std of every cell over runs, by hand."""

import pytest

from tools.seed_spread import markdown, spread


def run(seed: int, value: float) -> dict:
    return {"seed": seed, "iou": {"alpha": {"alpha": value, "mean": value}},
            "summary": {"in_domain": {"iou": value}, "held_out": {"iou": None}}}


def test_spread_is_the_mean_and_sample_std_of_each_cell():
    result = spread({"a": run(0, 0.4), "b": run(1, 0.5), "c": run(2, 0.6)})
    cell = result["cells"]["alpha"]["alpha"]
    assert cell["mean"] == pytest.approx(0.5) and cell["std"] == pytest.approx(0.1)
    assert result["seeds"] == {"a": 0, "b": 1, "c": 2}
    assert result["headline"]["in_domain"]["std"] == pytest.approx(0.1)
    assert "| alpha | 50.0 ± 10.0 | 50.0 ± 10.0 |" in markdown(result)


def test_the_header_names_the_pretraining_seed_only_where_it_varied():
    same = spread({"a": {**run(0, 0.4), "pretrain_seed": 0}, "b": {**run(1, 0.5), "pretrain_seed": 0}})
    assert markdown(same).startswith("IoU ×100, mean ± std over training seeds [0, 1] (everything else equal).")
    both = spread({"a": {**run(0, 0.4), "pretrain_seed": 0}, "b": {**run(1, 0.5), "pretrain_seed": 1}})
    assert both["pretrain_seeds"] == {"a": 0, "b": 1}
    assert markdown(both).startswith("IoU ×100, mean ± std over seeds (train.seed / pretrain.seed) 0 / 0, 1 / 1")
