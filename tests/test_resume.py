"""The train stage's resume files: one rule for their names, and a key that only training's code changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from localize.resume import ResumeFile, code_fingerprint, fingerprint_files, parse_resume_path, resume_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("split", ["telea", "no-telea", "no-biharmonic-jpeg", "all"])
@pytest.mark.parametrize("done", [False, True])
def test_names_round_trip(tmp_path, split, done):
    path = resume_path(tmp_path, split, "0123abcd", done=done)
    assert path.parent == tmp_path
    assert parse_resume_path(path) == ResumeFile(split, "0123abcd", done)


@pytest.mark.parametrize("name", [".no-telea-0123.pt.tmp", "models.json", "telea.pt", ".telea-01.pt"])
def test_other_files_are_not_resume_files(name):
    assert parse_resume_path(Path(name)) is None


def test_resume_key_hashes_only_what_training_imports():
    files = {str(p.relative_to(REPO)) for p in fingerprint_files()}
    assert "stages/train.py" in files and "localize/training.py" in files and "localize/losses.py" in files
    for other in ("stages/evaluate.py", "stages/robustness.py", "stages/demo.py", "localize/cross_root.py",
                  "localize/evaluation.py", "localize/preprocessing.py", "localize/indexing.py"):
        assert other not in files


@pytest.fixture
def copy(tmp_path) -> Path:
    for name in ("stages", "localize"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_editing_the_evaluate_stage_keeps_a_splits_checkpoints(copy):
    before = code_fingerprint(root=copy)
    with (copy / "stages" / "evaluate.py").open("a") as f:
        f.write("\n# an edit after an interrupted training run\n")
    assert code_fingerprint(root=copy) == before


def test_editing_the_loss_discards_them(copy):
    before = code_fingerprint(root=copy)
    with (copy / "localize" / "losses.py").open("a") as f:
        f.write("\n# the loss changed\n")
    assert code_fingerprint(root=copy) != before
