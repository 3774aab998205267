"""The tools on bad input: one `error: ...` line naming the revision or file, never a traceback; Git
revisions never read as options; a reference run leaves params.yaml byte for byte as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import reference, seed_spread

REPO = Path(__file__).resolve().parents[1]
PARAMS = "train:\n  seed: {seed}\n  epochs: 8       # 8 epochs, a comment dvc would lose\n  tags: [a, b]\n"
SUMMARY = {"in_domain": {"iou": 0.5, "low": 0.45, "high": 0.55, "prior": 0.17, "auc": 0.9, "auc_ci": [0.85, 0.95]},
           "held_out": {"iou": 0.3, "low": 0.25, "high": 0.35, "prior": 0.16, "auc": None, "auc_ci": [None, None]},
           "real_faces": {"clean": 0.75, "clean_ci": [0.6, 0.9], "fake_area": 0.01}}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
                           *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, tag: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", tag)
    git(repo, "tag", tag)


def good(seed: int, value: float) -> dict[str, str]:
    return {"params.yaml": PARAMS.format(seed=seed),
            "metrics/iou.json": json.dumps({"alpha": {"alpha": value, "mean": value}}),
            "metrics/summary.json": json.dumps({**SUMMARY, "in_domain": {**SUMMARY["in_domain"], "iou": value}})}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A Git repo whose tags are runs: s0 and s1 good, the others each broken one way."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    commit(root, "s0", good(0, 0.4))
    commit(root, "s1", good(1, 0.6))
    commit(root, "noseed", {**good(2, 0.5), "params.yaml": "train:\n  epochs: 8\n"})
    commit(root, "badiou", {**good(3, 0.5), "metrics/iou.json": '{"alpha": {"alpha": 0.5,'})
    commit(root, "badsummary", {**good(4, 0.5), "metrics/summary.json": "not json at all"})
    commit(root, "partsummary", {**good(5, 0.5), "metrics/summary.json": json.dumps({"held_out": {"iou": 0.1}})})
    commit(root, "othercells", {**good(6, 0.5), "metrics/iou.json": json.dumps({"beta": {"beta": 0.5}})})
    git(root, "rm", "-q", "metrics/iou.json")
    commit(root, "noiou", {})
    monkeypatch.chdir(root)
    monkeypatch.setattr(seed_spread, "experiment_commits", dict)  # no DVC here: every name is a revision
    return root


def spread_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        seed_spread.main(list(argv))
    assert isinstance(e.value.code, str) and e.value.code.startswith("error: "), e.value.code
    assert "\n" not in e.value.code and "Traceback" not in capsys.readouterr().err
    return e.value.code


def test_seed_spread_of_good_revisions_writes_its_table(repo, tmp_path):
    seed_spread.main(["--out", str(tmp_path / "out"), "s0", "s1"])
    result = json.loads((tmp_path / "out" / "spread.json").read_text())
    assert result["seeds"] == {"s0": 0, "s1": 1}
    assert result["cells"]["alpha"]["alpha"]["mean"] == pytest.approx(0.5)


@pytest.mark.parametrize(("rev", "says"), [
    ("noseed", "experiment 'noseed' (*): params.yaml has no integer train.seed"),
    ("badiou", "experiment 'badiou' (*): metrics/iou.json is not valid JSON (*"),
    ("badsummary", "experiment 'badsummary' (*): metrics/summary.json is not valid JSON (*"),
    ("partsummary", "experiment 'partsummary' (*): metrics/summary.json has no in_domain.iou score"),
    ("noiou", "experiment 'noiou' (*): cannot read metrics/iou.json: *"),
    ("othercells", "experiment 'othercells': metrics/iou.json has other splits or generators than 's0'"),
    ("nosuchrev", "experiment 'nosuchrev': unknown revision 'nosuchrev' (not an experiment name nor a Git commit)*"),
])
def test_seed_spread_names_the_revision_and_the_problem(repo, tmp_path, capsys, rev, says):
    import fnmatch

    message = spread_error(capsys, "--out", str(tmp_path / "out"), "s0", rev)
    assert fnmatch.fnmatch(message, f"error: {says}"), message
    assert not (tmp_path / "out").exists(), "nothing written"


def test_seed_spread_refuses_an_out_that_is_a_file(repo, tmp_path, capsys):
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    assert spread_error(capsys, "--out", str(out), "s0", "s1") == f"error: --out {out}: exists and is not a folder"
    assert out.read_text() == "keep me"


def test_seed_spread_never_reads_a_revision_as_a_git_option(repo, tmp_path, capsys):
    """`-- --output=/p` once made `git show` write /p."""
    target = tmp_path / "p"
    message = spread_error(capsys, "--out", str(tmp_path / "out"), "--", f"--output={target}")
    assert message == f"error: experiment '--output={target}': a revision cannot start with '-'"
    # Behind the refusal, Git itself is told where the options end: still nothing written.
    assert seed_spread.git("show", "--end-of-options", f"--output={target}").returncode
    for rev in (f"--output={target}", f"--output={target}:metrics/iou.json"):
        assert seed_spread.git("log", "-1", "--no-walk", "--format=%H", "--end-of-options", rev, "--").returncode
    assert not target.exists()


def test_seed_spread_needs_a_git_with_end_of_options(monkeypatch, capsys):
    real = subprocess.run
    monkeypatch.setattr(seed_spread.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 0, "git version 2.20.1\n", "") if cmd == ["git", "version"] else real(cmd, **kw))
    with pytest.raises(SystemExit, match=r"^error: git 2.24 or newer is needed \(--end-of-options\); found "
                                         r"'git version 2.20.1'$"):
        seed_spread.check_git()
    monkeypatch.setattr(seed_spread.subprocess, "run", real)
    seed_spread.check_git()  # the installed one is new enough


def test_seed_spread_cli_prints_one_line_and_no_traceback(repo, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.seed_spread", "--out", str(tmp_path / "o"), "s0", "badiou"],
                          cwd=repo, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: experiment 'badiou' (") and proc.stderr.count("\n") == 1, proc.stderr


# ---- reference ----


@pytest.mark.parametrize(("text", "says"), [
    ('{"in_domain": {"iou": 0.5,', "not valid JSON (Expecting"),
    ("[1, 2]", "not a summary"),
    (json.dumps({"in_domain": SUMMARY["in_domain"]}), "a partial summary, without held_out.iou, held_out.low, "
                                                       "held_out.high, held_out.prior, real_faces.clean"),
    (json.dumps({**SUMMARY, "real_faces": {"clean": "most"}}), "a headline value is not a score or an interval"),
])
def test_reference_compare_names_a_corrupt_or_partial_summary(tmp_path, capsys, text, says):
    (tmp_path / "a" / "results").mkdir(parents=True)
    (tmp_path / "a" / "results" / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "b" / "results").mkdir(parents=True)
    bad = tmp_path / "b" / "results" / "summary.json"
    bad.write_text(text)
    with pytest.raises(SystemExit) as e:
        reference.main([str(tmp_path / "a"), "--compare", str(tmp_path / "b")])
    assert e.value.code.startswith(f"error: {bad}: {says}"), e.value.code
    assert "\n" not in e.value.code and not capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--set=--force=1"], ["--target=-f"], ["--target=--force"]])
def test_reference_passes_no_option_to_dvc(tmp_path, monkeypatch, argv):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "overrides").write_text("train.epochs=2\n")
    monkeypatch.setattr(reference.subprocess, "run", lambda *a, **k: pytest.fail("nothing may run"))
    with pytest.raises(SystemExit, match=r"^error: .*(a key cannot start with '-'|a stage name, not an option)"):
        reference.main([str(tmp_path / "r"), *argv])
    (tmp_path / "r" / "overrides").write_text("--force=1\n")
    with pytest.raises(SystemExit, match=r"overrides:1: '--force=1': a key cannot start with '-'"):
        reference.main([str(tmp_path / "r")])


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A Git workspace with committed params.yaml (comments, flow lists) and a reference recipe."""
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    commit(root, "base", {"params.yaml": PARAMS.format(seed=0), "metrics/reference/r/overrides": "train.epochs=20\n"})
    monkeypatch.chdir(root)
    return root


def fake_dvc(outcome: str):
    """Stands in for `dvc exp run -S ...`: rewrites params.yaml as DVC does (comments lost, lists
    reflowed), then succeeds (writing every result), fails, or is interrupted."""
    import yaml

    real = subprocess.run

    def run(cmd, *args, **kwargs):
        if cmd[0] != "dvc":
            return real(cmd, *args, **kwargs)
        assert cmd[:4] == ["dvc", "exp", "run", "evaluate"] and cmd[4:] == ["-S", "train.epochs=20"]
        params = yaml.safe_load(Path("params.yaml").read_text())
        params["train"]["epochs"] = 20
        Path("params.yaml").write_text(yaml.safe_dump(params))
        if outcome == "interrupted":
            raise KeyboardInterrupt
        if outcome == "ok":
            for result in reference.RESULTS:
                Path(result).parent.mkdir(parents=True, exist_ok=True)
                Path(result).mkdir(exist_ok=True) if result.endswith("overlays") else Path(result).write_text(result)
        return subprocess.CompletedProcess(cmd, 0 if outcome == "ok" else 1)

    return run


@pytest.mark.parametrize("outcome", ["ok", "failed", "interrupted"])
def test_a_reference_run_leaves_params_yaml_byte_for_byte(workspace, monkeypatch, outcome):
    before = (workspace / "params.yaml").read_bytes()
    monkeypatch.setattr(reference.subprocess, "run", fake_dvc(outcome))
    expected = {"ok": None, "failed": SystemExit, "interrupted": KeyboardInterrupt}[outcome]
    if expected:
        with pytest.raises(expected):
            reference.main(["metrics/reference/r"])
    else:
        reference.main(["metrics/reference/r"])
        assert (workspace / "metrics/reference/r/results/table.md").read_text() == "metrics/table.md"
        reference.main(["metrics/reference/r"])  # the next run starts: params.yaml is the committed one
    assert (workspace / "params.yaml").read_bytes() == before
    assert git(workspace, "status", "--porcelain", "--", "params.yaml") == ""


def test_a_real_dvc_exp_run_rewrites_params_yaml_and_reference_puts_it_back(tmp_path):
    """The real thing on a one-stage DVC repo: `dvc exp run -S` reflows params.yaml (as its commit shows);
    the workspace's params.yaml is the committed one, byte for byte, after the reference run."""
    pytest.importorskip("dvc")
    root = tmp_path / "dvc"
    root.mkdir()
    git(root, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    outs = [r for r in reference.RESULTS if not r.endswith("overlays")]
    make = ("import pathlib\n"
            f"for p in {outs!r}:\n"
            "    pathlib.Path(p).parent.mkdir(parents=True, exist_ok=True); pathlib.Path(p).write_text('{}')\n"
            "pathlib.Path('plots/evaluate/overlays').mkdir(parents=True, exist_ok=True)\n"
            "pathlib.Path('plots/evaluate/overlays/a.png').write_text('x')\n")
    stage = {"stages": {"evaluate": {"cmd": f"{sys.executable} make.py", "deps": ["make.py"],
                                     "params": ["train.epochs"], "outs": list(reference.RESULTS)}}}
    commit(root, "base", {"params.yaml": PARAMS.format(seed=0) + "  none: null\n", "make.py": make,
                          "dvc.yaml": json.dumps(stage), "metrics/reference/r/overrides": "train.epochs=20\n"})
    before = (root / "params.yaml").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "tools.reference", "metrics/reference/r"], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert (root / "params.yaml").read_bytes() == before
    assert git(root, "status", "--porcelain", "--", "params.yaml") == "", "the next reference run may start"
    [exp] = [r for r in git(root, "for-each-ref", "--format=%(refname)", "refs/exps").split() if "/exec/" not in r]
    assert "epochs: 20" in git(root, "show", f"{exp}:params.yaml")  # dvc did rewrite it for the run
    assert (root / "metrics/reference/r/results/overlays/a.png").exists()
