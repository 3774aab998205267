"""dvc.yaml declares, for every stage, the code it runs: its script and every localize module it imports."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localize.resume import local_imports, module_file

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_its_imports(stage):
    spec = STAGES[stage]
    script = re.search(r"python -m (stages\.\w+)", spec["cmd"]).group(1)
    deps = [REPO / d for d in spec["deps"] if not d.startswith("${")]
    needed = local_imports(module_file(script))
    needed -= {REPO / "stages" / "__init__.py"}  # localize/__init__.py sets OpenCV's environment: a dep
    missing = [p.relative_to(REPO) for p in needed if not any(p == d or d in p.parents for d in deps)]
    assert not missing, f"stage {stage!r}: add to deps in dvc.yaml: {', '.join(map(str, sorted(missing)))}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_reads_only_declared_params_sections(stage):
    spec = STAGES[stage]
    script = module_file(re.search(r"python -m (stages\.\w+)", spec["cmd"]).group(1))
    read = set(re.findall(r'load_section\(\w+, "(\w+)"', script.read_text()))
    declared = {p.split(".")[0] for p in spec.get("params", [])}
    assert read <= declared, f"stage {stage!r} reads params {sorted(read - declared)} not declared in dvc.yaml"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_path_in_a_command_is_quoted(stage):
    """Paths with spaces (a data.root like `/data/my dolos/celebahq`) must reach the stage as one argument."""
    args = shlex.split(STAGES[stage]["cmd"])
    raw = STAGES[stage]["cmd"].split()
    values = [raw[i + 1] for i, word in enumerate(raw[:-1]) if word.startswith("--")]
    assert values and all(v.startswith('"') and v.endswith('"') for v in values), values
    assert len(args) == len(raw)


def test_index_command_runs_with_a_space_in_data_root(tmp_path):
    """dvc.yaml's own index command, run by a shell as DVC runs it, on a data root with spaces in its path."""
    from test_index import make_tree

    root = tmp_path / "my data" / "dolos root"
    make_tree(root, folders=("lama",), counts={"train": 2, "test": 1}, p2=False)
    (tmp_path / "params.yaml").write_text(f"data:\n  root: {root}\nindex:\n  workers: 1\n")
    cmd = STAGES["index"]["cmd"].replace("${data.root}", str(root))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = cmd.replace("python ", f"{shlex.quote(sys.executable)} ", 1)
    proc = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    index = (tmp_path / "data" / "index.csv").read_text()
    assert f"{root}/fake/lama/images/train/00001.png" in index
