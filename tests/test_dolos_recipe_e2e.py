"""End to end on CPU: `dvc exp run evaluate -S data.root=<a Dolos-shaped tree>` with the Dolos recipe's
overrides (metrics/reference/dolos), scaled to tiny counts, size and steps."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torch
from test_pipeline_dvc import COPIED, dvc, git_commit, sh
from test_pipeline_dvc import TINY as PIPELINE_TINY

from tools.reference import read_overrides, with_sets

REPO = Path(__file__).resolve().parents[1]


def benchmark_module():
    spec = importlib.util.spec_from_file_location("dolos_scale", REPO / "benchmarks" / "dolos_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The recipe as committed, except what cannot run here or in seconds: CPU fp32, 32 px, width 4, batch 4,
# 2 one-pass epochs (2 steps for one generator's 6 fakes, 4 for three), patience and the step cap kept on.
# The recipe leaves pretrain and texture at the defaults; here they take the pipeline tests' tiny
# values, which this test does not read (at the defaults they were most of its 150 s).
TINY = ["preprocess.size=32", "model.width=4", "train.batch_size=4", "train.epochs=2", "train.max_steps=100",
        "train.patience=1", "train.device=cpu", "train.precision=fp32", "train.threads=1",
        "evaluate.overlay_images=1", "evaluate.bootstrap=50",
        *(f"{stage}.{key}={value}" for stage in ("pretrain", "texture") for key, value in PIPELINE_TINY[stage].items())]


def test_dolos_recipe_runs_end_to_end_on_a_dolos_shaped_tree(tmp_path):
    bench = benchmark_module()
    tree = tmp_path / "dolos" / "celebahq"
    files = bench.write_tree(tree, {"train": 6, "valid": 2, "test": 2}, size=32)
    assert files == bench.dolos_files({"train": 6, "valid": 2, "test": 2}) == 90
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src, dst = REPO / name, project / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy(src, dst)
    sh(project, "git", "init", "-q")
    git_commit(project, "project")

    recipe = read_overrides(REPO / "metrics" / "reference" / "dolos" / "overrides")
    overrides = with_sets(recipe, [f"data.root={tree}", *TINY])
    assert "train.steps_per_epoch=null" in overrides and len(overrides) == len(recipe) + 9
    out = dvc(project, "exp", "run", "evaluate", *[a for o in overrides for a in ("-S", o)])
    log = out.stdout + out.stderr

    iou = json.loads((project / "metrics" / "iou.json").read_text())
    gens = ["lama", "ldm", "pluralistic", "repaint"]  # Dolos' folders, by their short names
    assert sorted(iou) == sorted(gens + [f"no-{g}" for g in gens])
    assert all(sorted(row) == sorted(gens + ["mean"]) for row in iou.values())
    assert "budget:" not in log, "the recipe's one-pass epochs cover the training fakes: no warning"
    assert "budget" not in json.loads((project / "metrics" / "summary.json").read_text())
    saved = torch.load(project / "models" / "lama.pt", weights_only=True)
    assert (saved["size"], saved["budget"]["train_fakes"]) == (32, 6)
    assert saved["budget"]["passes"] >= 1 and saved["budget"]["steps"] in (2, 4)  # 1 or 2 epochs (patience)
    assert torch.load(project / "models" / "no-lama.pt", weights_only=True)["budget"]["train_fakes"] == 18
