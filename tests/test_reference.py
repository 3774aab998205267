"""Reference recipes: the overrides file, and collecting a run's results beside it."""

import pytest

from stages.reference import RESULTS, collect, read_overrides


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

    (workspace / "metrics" / "table.md").unlink()
    with pytest.raises(FileNotFoundError, match="metrics/table.md missing"):
        collect(folder, workspace)
    assert (folder / "results" / "table.md").exists()  # the earlier results are kept whole
