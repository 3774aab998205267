"""dvc.yaml declares, for every stage, the code it runs: its script and every localize module it imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def local_imports(path: Path, seen: set[Path]) -> set[Path]:
    """Every localize/stages module file that `path` imports, transitively."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] in ("localize", "stages"):
                target = module_file(name)
                if target.exists() and target not in seen:
                    seen.add(target)
                    local_imports(target, seen)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_its_imports(stage):
    spec = STAGES[stage]
    script = re.search(r"python -m (stages\.\w+)", spec["cmd"]).group(1)
    deps = [REPO / d for d in spec["deps"] if not d.startswith("${")]
    needed = local_imports(module_file(script), {module_file(script)})
    needed -= {REPO / "localize" / "__init__.py", REPO / "stages" / "__init__.py"}
    missing = [p.relative_to(REPO) for p in needed if not any(p == d or d in p.parents for d in deps)]
    assert not missing, f"stage {stage!r}: add to deps in dvc.yaml: {', '.join(map(str, sorted(missing)))}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_reads_only_declared_params_sections(stage):
    spec = STAGES[stage]
    script = module_file(re.search(r"python -m (stages\.\w+)", spec["cmd"]).group(1))
    read = set(re.findall(r'load_section\(\w+, "(\w+)"', script.read_text()))
    declared = {p.split(".")[0] for p in spec.get("params", [])}
    assert read <= declared, f"stage {stage!r} reads params {sorted(read - declared)} not declared in dvc.yaml"
