"""Reference recipes: the overrides file, and collecting a run's results beside it."""

import json

import pytest

from tools.reference import RESULTS, ROBUSTNESS, collect, compare, read_overrides


def test_overrides_are_key_value_lines_with_comments(tmp_path):
    path = tmp_path / "overrides"
    path.write_text("# the recipe\nmodel.arch=patches\n\n train.supervision = weak  # image labels\n")
    assert read_overrides(path) == ["model.arch=patches", "train.supervision=weak"]


@pytest.mark.parametrize("line", ["model.arch", "=weak", "model arch=x", "train.seed="])
def test_a_bad_line_is_named(tmp_path, line):
    path = tmp_path / "overrides"
    path.write_text(f"train.epochs=2\n{line}\n")
    with pytest.raises(ValueError, match=f"overrides:2: '{line}' is not"):
        read_overrides(path)


def test_collect_copies_every_result_or_nothing(tmp_path):
    workspace, folder = tmp_path / "ws", tmp_path / "ref"
    folder.mkdir()
    for result in RESULTS:
        path = workspace / result
        path.parent.mkdir(parents=True, exist_ok=True)
        if result.endswith("overlays"):
            path.mkdir()
            (path / "telea.png").write_bytes(b"png")
        else:
            path.write_text(result)
    collect(folder, workspace)
    assert (folder / "results" / "table.md").read_text() == "metrics/table.md"
    assert (folder / "results" / "overlays" / "telea.png").read_bytes() == b"png"

    # The workspace's robustness files (the default's are committed) are kept only from a run of that stage.
    for result in ROBUSTNESS:
        (workspace / result).write_text(result)
    collect(folder, workspace)
    assert not (folder / "results" / "robustness.json").exists()
    collect(folder, workspace, robustness=True)
    assert (folder / "results" / "robustness.json").read_text() == "metrics/robustness.json"

    (workspace / "metrics" / "table.md").unlink()
    with pytest.raises(FileNotFoundError, match="metrics/table.md missing"):
        collect(folder, workspace)
    assert (folder / "results" / "table.md").exists()  # the earlier results are kept whole


def test_compare_prints_each_recipes_headline(tmp_path):
    summary = {"in_domain": {"iou": 0.5, "low": 0.45, "high": 0.55, "prior": 0.17, "auc": 0.9, "auc_ci": [0.85, 0.95]},
               "held_out": {"iou": 0.3, "low": 0.25, "high": 0.35, "prior": 0.16, "auc": None, "auc_ci": [None, None]},
               "real_faces": {"clean": 0.75, "clean_ci": [0.6, 0.9], "fake_area": 0.01}}
    (tmp_path / "a" / "results").mkdir(parents=True)
    (tmp_path / "a" / "results" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "seeds").mkdir()  # a folder with no results: skipped
    lines = compare([tmp_path / "a", tmp_path / "seeds"]).splitlines()
    assert len(lines) == 3
    row = lines[2]
    assert row == ("| a | 50.0 (45.0–55.0) | 30.0 (25.0–35.0) | 17.0 / 16.0 | 75.0 (60.0–90.0) "
                   "| 90.0 (85.0–95.0) | – |")
