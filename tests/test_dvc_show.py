"""`dvc metrics show` and the README's `dvc exp show` read at a glance, on the committed metrics.

Both run in a throwaway git repo holding this repository's dvc.yaml, dvc.lock, params.yaml and
metrics/: DVC reads committed metrics without running the pipeline.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1", "COLUMNS": "120"}


def sh(cwd: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env or ENV)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "metrics", root / "metrics")
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "committed metrics")
    return root


def readme_exp_show() -> list[str]:
    m = re.search(r"^(dvc exp show --only-changed .*?)\s*(#.*)?$", (REPO / "README.md").read_text(), re.M)
    assert m, "README.md gives no `dvc exp show --only-changed ...` command"
    return shlex.split(m.group(1))


def test_dvc_metrics_show_fits_200_columns(repo):
    out = sh(repo, "dvc", "metrics", "show")
    lines = out.splitlines()
    assert len(lines) == 2, out  # one header, one row: metrics/headline.json alone
    assert max(map(len, lines)) <= 200, f"dvc metrics show is {max(map(len, lines))} wide:\n{out}"
    for column in ("in.iou", "in.ci", "in.prior", "out.iou", "out.ci", "real.clean", "base.all-fake"):
        assert column in lines[0], column


def test_readme_exp_show_has_no_collapsed_column_at_120(repo):
    """A recipe change in the workspace against the committed run: the changed param and the
    headline show, and rich collapses no column into `…`."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["source"] = "telea"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    headline = repo / "metrics/headline.json"
    headline.write_text(headline.read_text().replace('"iou": ', '"iou": 1', 1))
    args = readme_exp_show()
    out = sh(repo, *args, "--no-pager")
    assert "…" not in out, out
    assert max(map(len, out.splitlines())) <= 120, out
    for column in ("in.iou", "out.iou", "real.clean", "train.source"):
        assert column in out, (column, out)
    assert "telea" in out
