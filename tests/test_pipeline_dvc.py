"""End to end: real `dvc repro`, `dvc exp run -S` and `dvc metrics show` in a temp copy, on tiny params."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_index import make_tree  # a tree in Dolos' exact layout and mask format

from localize.report import external_references
from tools import browser

REPO = Path(__file__).resolve().parents[1]
COPIED = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", "stages", "localize"]
TINY = {
    "demo": {"size": 32, "max_faces": 10},
    "preprocess": {"size": 16},
    "model": {"width": 4},
    "pretrain": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
    "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "head_steps": 5},  # the head refit, through DVC
    "texture": {"pixels": 2000, "iterations": 5},
    "evaluate": {"overlay_images": 2},
    "robustness": {"sweep": {"jpeg": [50], "noise": [5]}, "max_images": 4, "bootstrap": 50},
}
DEMO_GENERATORS = ["biharmonic-jpeg", "navier-stokes", "patchmatch", "poisson", "telea"]


COMMAND_TIMEOUT = 600  # seconds; every command here takes under 70 s on 2 cores


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output if it fails, or if it hangs past COMMAND_TIMEOUT.

    In its own session, so a hung command is killed with every process it started (DVC's stages,
    their workers), and one hang costs one failed test, not the whole run."""
    with subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
            pytest.fail(f"{' '.join(args)} still ran after {COMMAND_TIMEOUT} s, killed:\n"
                        f"{stdout[-3000:]}\n{stderr[-3000:]}")
    proc = subprocess.CompletedProcess(args, child.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(cwd, sys.executable, "-m", "dvc", *args, check=check)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy(src, dst)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tiny pipeline")
    return root


def git_commit(project: Path, message: str) -> str:
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return sh(project, "git", "rev-parse", "HEAD").stdout.strip()


@pytest.fixture(scope="module")
def reproduced(project) -> str:
    """The default tiny table, built once with `dvc repro` and committed: the state every test starts from."""
    dvc(project, "repro")
    return git_commit(project, "results")


@pytest.fixture
def table(project, reproduced) -> Path:
    """The project at the committed table, whatever the tests before this one changed or left behind."""
    sh(project, "git", "reset", "-q", "--hard", reproduced)
    sh(project, "git", "clean", "-q", "-fd")
    dvc(project, "checkout", "--force")
    return project


def iou(project: Path) -> dict:
    return json.loads((project / "metrics" / "iou.json").read_text())


def test_repro_builds_the_whole_table(table):
    results = iou(table)
    expected_splits = DEMO_GENERATORS + [f"no-{g}" for g in DEMO_GENERATORS]
    assert sorted(results) == sorted(expected_splits)
    for row in results.values():
        assert sorted(row) == sorted(DEMO_GENERATORS + ["mean"])
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert (table / "plots" / "evaluate" / "iou_heatmap.png").stat().st_size > 0
    assert (table / "dvc.lock").exists()
    page = (table / "reports" / "index.html").read_text()  # the report stage ran, and fetches nothing
    assert page.count('<img src="data:image/') >= 3 and external_references(page) == []
    if browser.find_chromium():  # the report of a real (tiny) run, opened in Chromium
        seen = browser.probe(table / "reports" / "index.html")
        assert seen["images"] and all(w > 0 for w in seen["images"]) and seen["resources"] == []
        assert set(results) | {"baseline: prior (fit on that generator's masks)", "baseline: all-fake"} \
            <= set(seen["rows"])


def test_second_repro_is_a_no_op(table):
    out = dvc(table, "repro").stdout
    assert "Data and pipelines are up to date" in out


def test_metrics_show_prints_the_headline_at_a_glance(table):
    out = dvc(table, "metrics", "show").stdout
    assert "metrics/headline.json" in out and "summary.json" not in out
    for column in ("in.iou", "in.ci", "out.prior", "real.clean", "base.all-fake"):
        assert column in out
    assert "telea.telea" not in out, "per-cell scores are files, not metrics"
    assert "pairs." not in out and "mean_iou" not in out, "counts and the sweep are files, not metrics"
    assert max(len(line) for line in out.splitlines()) <= 200


def queue_logs(project: Path, status: str) -> str:
    """The log's tail of every task in `dvc queue status` that did not succeed: why it failed or hangs."""
    tasks = [line.split()[0] for line in status.splitlines()[1:]
             if line.split() and "Success" not in line]
    return "\n".join(f"--- {task}:\n{dvc(project, 'queue', 'logs', task, check=False).stdout[-3000:]}"
                     for task in tasks)


def test_queued_experiments_run_in_parallel_workers(table):
    project = table
    dvc(project, "exp", "run", "--queue", "-S", "train.source=telea,poisson")
    dvc(project, "queue", "start", "-j", "2")
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            status = dvc(project, "queue", "status").stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(2)
        if status.count("Success") != 2:
            pytest.fail(f"{status}\n{queue_logs(project, status)}")
    finally:  # a worker otherwise stays alive, and a task still running would outlive the test
        dvc(project, "queue", "stop", "--kill", check=False)
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    runs = [run["data"] for rev in shown for exp in rev.get("experiments") or [] for run in exp["revs"]]
    assert sorted(r["params"]["params.yaml"]["data"]["train"]["source"] for r in runs) == ["poisson", "telea"]
    for r in runs:  # each experiment's headline: its one in-domain cell, with an interval
        head = r["metrics"]["metrics/headline.json"]["data"]["in"]
        low, high = map(float, head["ci"].split("–"))
        assert low <= head["iou"] <= high
    assert len(iou(project)) == 2 * len(DEMO_GENERATORS), "queued runs leave the workspace alone"


def test_remote_shares_data_and_models_without_retraining(table, tmp_path):
    project = table
    dvc(project, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    git_commit(project, "remote")
    dvc(project, "push", "--run-cache")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    dvc(clone, "pull")
    assert len(list((clone / "models").glob("*.pt"))) == 2 * len(DEMO_GENERATORS)
    assert iou(clone) == iou(project)
    assert "Data and pipelines are up to date" in dvc(clone, "repro").stdout


def test_exp_run_retrains_only_the_chosen_split(table):
    project = table
    proc = dvc(project, "exp", "run", "-S", "train.source=poisson")
    assert "Stage 'demo' didn't change, skipping" in proc.stdout
    assert "Stage 'preprocess' didn't change, skipping" in proc.stdout
    assert list(iou(project)) == ["poisson"]
    assert sorted(p.name for p in (project / "models").glob("*.pt")) == ["poisson.pt"]


def test_exp_run_trains_with_two_processes(table):
    project = table
    proc = dvc(project, "exp", "run", "-S", "train.source=poisson", "-S", "train.procs=2")
    assert "2 processes (DDP)" in proc.stdout + proc.stderr
    assert list(iou(project)) == ["poisson"]
    assert 0.0 <= iou(project)["poisson"]["poisson"] <= 1.0


def test_exp_run_with_an_unknown_source_lists_valid_splits(table):
    project = table
    proc = dvc(project, "exp", "run", "-S", "train.source=nonsense", check=False)
    assert proc.returncode != 0
    assert "valid values: table, biharmonic-jpeg" in proc.stdout + proc.stderr


def test_dolos_folder_names_pass_end_to_end(table):
    project = table
    make_tree(project / "dolos" / "celebahq", counts={"train": 6, "valid": 2, "test": 2})
    dvc(project, "exp", "run", "-S", "data.root=dolos/celebahq", "-S", "train.source=no-ldm")
    table = iou(project)
    assert list(table) == ["no-ldm"]
    assert sorted(table["no-ldm"]) == ["lama", "ldm", "mean", "pluralistic", "repaint"]


def test_a_sweep_change_reruns_only_the_robustness_stage(table):
    project = table
    headline = json.loads((project / "metrics" / "robustness.json").read_text())
    assert list(headline["mean_iou"]) == ["clean", "jpeg-50", "noise-5"]
    proc = dvc(project, "exp", "run", "-S", "robustness.sweep.jpeg=[75]")
    assert "Running stage 'robustness'" in proc.stdout
    for stage in ("train", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in proc.stdout
    headline = json.loads((project / "metrics" / "robustness.json").read_text())
    assert list(headline["mean_iou"]) == ["clean", "jpeg-75", "noise-5"]
    assert sorted(p.name for p in (project / "plots" / "robustness").iterdir()) == ["jpeg.png", "noise.png"]


def test_exp_run_scores_the_models_on_another_root(table):
    project = table
    make_tree(project / "other" / "celebahq", folders=("telea", "poisson"), counts={"test": 3}, p2=False)
    proc = dvc(project, "exp", "run", "-S", "evaluate.also=[other/celebahq]")
    assert "Stage 'train' didn't change, skipping" in proc.stdout
    result = json.loads((project / "metrics" / "cross_root.json").read_text())["other/celebahq"]
    assert result["generators"] == ["poisson", "telea"]
    assert result["missing"] == ["biharmonic-jpeg", "navier-stokes", "patchmatch"]
    assert len(result["models"]) == 2 * len(DEMO_GENERATORS)
    assert "Missing from this root (not scored): biharmonic-jpeg" in (project / "metrics" / "cross_root.md").read_text()


def test_weak_patch_forensics_runs_end_to_end(table):
    """`model.arch=patches` from image labels alone on the demo; setup A where the data has fake/p2."""
    project = table
    proc = dvc(project, "exp", "run", "-S", "model.arch=patches", "-S", "train.supervision=weak",
               "-S", "train.source=telea")
    assert "Stage 'preprocess' didn't change, skipping" in proc.stdout
    assert list(iou(project)) == ["telea"]
    assert set(iou(project)["telea"]) == {*DEMO_GENERATORS, "mean"}
    summary = json.loads((project / "metrics" / "summary.json").read_text())
    assert 0.0 <= summary["in_domain"]["iou"] <= 1.0

    proc = dvc(project, "exp", "run", "-S", "train.source=p2", "-S", "train.supervision=weak", check=False)
    assert proc.returncode != 0
    assert "this data has none (the demo never has any)" in proc.stdout + proc.stderr

    make_tree(project / "dolos" / "celebahq", folders=("lama", "ldm"), counts={"train": 6, "valid": 2, "test": 2})
    dvc(project, "exp", "run", "-S", "data.root=dolos/celebahq", "-S", "model.arch=patches",
        "-S", "train.supervision=weak", "-S", "train.source=p2")
    assert iou(project)["p2"].keys() == {"lama", "ldm", "mean"}  # trained on p2, tested on the inpainted sets
