"""Outputs appear whole or not at all."""

from __future__ import annotations

import pytest

from localize.atomic import atomic_dir, atomic_file


def test_a_failed_write_keeps_the_old_output_and_leaves_no_temporary(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("stage failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]


def test_a_success_replaces_the_output_whole(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]


def test_temporaries_left_by_a_hard_kill_are_removed_on_the_next_write(tmp_path):
    (tmp_path / ".models.tmp-abc123").mkdir()           # as a SIGKILL mid-stage leaves them
    (tmp_path / ".m.json.tmp-xyz.json").write_text("{")
    (tmp_path / ".other.tmp-keep").mkdir()               # another output's: not ours to touch
    with atomic_dir(tmp_path / "models") as tmp:
        (tmp / "a.pt").write_text("a")
    with atomic_file(tmp_path / "m.json") as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-keep", "m.json", "models"]
