"""Outputs appear whole or not at all, with the umask's permissions; stale temporaries do not stay."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from localize.atomic import atomic_dir, atomic_file, remove_stale


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


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_file(tmp_path / "m.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "models") as tmp:
            (tmp / "a.pt").write_text("a")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what any file the user writes gets
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE((tmp_path / "models").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "models" / "a.pt").stat().st_mode) == 0o666 & ~umask


def test_a_live_writer_keeps_its_temporary_and_a_killed_one_loses_it(tmp_path):
    """Stale temporaries are removed by remove_stale; the temporary of a writer still running is locked."""
    data = tmp_path / "data"
    data.mkdir()
    # A writer killed mid-stage (SIGKILL: no cleanup), as a DVC run that was killed leaves it.
    script = ("import sys, time; from localize.atomic import atomic_dir\n"
              "with atomic_dir(sys.argv[1]) as tmp:\n"
              "    (tmp / 'half.npy').write_bytes(b'x'); print(tmp, flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script, str(data / "prepared")], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        alive = Path(proc.stdout.readline().strip())
        assert alive.name.startswith(".prepared.tmp-")
        assert remove_stale([data]) == [] and alive.exists()  # still running: locked, untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert alive.exists()  # what a kill leaves behind
    with atomic_dir(data / "index") as mine:
        assert remove_stale([data]) == [alive]  # another output's writer (this one) is alive: kept
        assert mine.exists()
    assert sorted(p.name for p in data.iterdir()) == ["index"]


def test_every_stage_start_clears_stale_temporaries_next_to_its_files(tmp_path, monkeypatch):
    """DVC can restore data/prepared from its run cache without running preprocess, so the temporary
    a killed preprocess left in data/ is cleared by the next stage that runs (any of them)."""
    from localize.preflight import check_and_clear

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("evaluate:\n  threshold: 0.5\n")
    stale = tmp_path / "data" / ".prepared.tmp-abc123"
    stale.mkdir(parents=True)
    (stale / "images.npy").write_bytes(b"half")
    (tmp_path / "data" / ".index.csv.tmp-x.csv").write_text("half")
    (tmp_path / "data" / "keep.tmp-not-ours").write_text("x")
    check_and_clear("params.yaml", ["data/prepared", "models"])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["keep.tmp-not-ours"]


def test_sigterm_removes_a_stages_temp_dir_and_the_next_start_removes_a_killed_ones(tmp_path):
    import tempfile

    from localize.atomic import remove_stale_temp_dirs

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text("{}\n")
    script = ("import os, signal, sys\n"
              "from localize.preflight import check_and_clear\nfrom localize.atomic import temp_dir\n"
              "check_and_clear('params.yaml')\n"
              "with temp_dir('robustness') as tmp:\n"
              "    print(tmp, flush=True)\n"
              "    os.kill(os.getpid(), signal.SIG{sig})\n"
              "    signal.pause()\n")
    made = {}
    for sig in ("TERM", "KILL"):
        proc = subprocess.run([sys.executable, "-c", script.format(sig=sig)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(repo)})
        made[sig] = Path(proc.stdout.strip())
        assert proc.returncode == (143 if sig == "TERM" else -signal.SIGKILL), proc.stderr
    assert not made["TERM"].exists(), "SIGTERM ends the block: its folder is removed"
    assert made["KILL"].exists() and made["KILL"].parent == Path(tempfile.gettempdir())
    assert made["KILL"] in remove_stale_temp_dirs(["robustness"]) and not made["KILL"].exists()


@pytest.mark.parametrize("finalizer", [
    "class Closing:\n    def __del__(self):\n        signal.raise_signal(signal.SIGTERM)\nClosing()\n",
    # tqdm's case: a progress bar's generator, closed by the garbage collector, gets the signal.
    "def bar():\n    try:\n        yield 1\n    finally:\n        signal.raise_signal(signal.SIGTERM)\n"
    "next(bar())\n",
])
def test_sigterm_inside_a_finalizer_still_ends_the_stage_quietly(tmp_path, finalizer):
    """Python ignores (and prints) an exception raised in a finalizer: the SIGTERM's exit must still
    happen, at once and with no traceback, or a DDP rank told to stop by torchrun runs on."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text("{}\n")
    script = ("import signal, time\nfrom localize.preflight import check_and_clear\n"
              "check_and_clear('params.yaml')\n"
              "try:\n" + "".join(f"    {line}\n" for line in finalizer.splitlines())
              + "    for _ in range(100):\n        time.sleep(0.05)\n    print('ran on', flush=True)\n"
              "finally:\n    print('cleaned up', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 143, proc.stderr
    assert proc.stdout == "cleaned up\n"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def _outputs(root: Path) -> tuple[list[Path], list[Path]]:
    files = [root / "metrics" / "a.json", root / "metrics" / "b.md", root / "plots" / "c.png"]
    return files, [root / "plots" / "overlays"]


def _write(files: list[Path], dirs: list[Path], text: str, tmps: dict[Path, Path] | None = None) -> None:
    for f in files:
        (tmps[f] if tmps else f).write_text(f"{text} {f.name}")
    for d in dirs:
        target = tmps[d] if tmps else d
        target.mkdir(parents=True, exist_ok=True)
        (target / "0.png").write_text(f"{text} {d.name}")


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", [KeyboardInterrupt, SystemExit, OSError])
@pytest.mark.parametrize("call", range(1, 9))  # 4 moves aside, then 4 moves in: a fault at each one
def test_a_fault_during_the_final_moves_leaves_every_previous_output(tmp_path, monkeypatch, fault, call):
    """Ctrl-C (or a SIGTERM exit, or a full disk) among the renames of atomic_outputs: rolled back."""
    from localize import atomic
    from localize.atomic import atomic_outputs

    files, dirs = _outputs(tmp_path)
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    _write(files, dirs, "old")
    before = _tree(tmp_path)
    real_replace, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == call:
            raise fault()
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(fault), atomic_outputs(files, dirs) as tmps:
        _write(files, dirs, "new", tmps)
    assert _tree(tmp_path) == before, "exactly the previous outputs, and no temporary or backup left"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["c.png", "overlays"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_the_final_moves_replace_every_output_and_create_missing_ones(tmp_path):
    from localize.atomic import atomic_outputs

    files, dirs = _outputs(tmp_path)
    (tmp_path / "metrics").mkdir()
    files[0].write_text("old a.json")  # one previous output; the others are new
    with atomic_outputs(files, dirs) as tmps:
        _write(files, dirs, "new", tmps)
    assert _tree(tmp_path) == {"metrics/a.json": "new a.json", "metrics/b.md": "new b.md",
                               "plots/c.png": "new c.png", "plots/overlays/0.png": "new overlays"}


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_final_moves_waits_until_every_output_is_new(tmp_path, monkeypatch, sig):
    """SIGINT/SIGTERM that arrive among the renames are delivered after the last one: all new outputs."""
    from localize import atomic
    from localize.atomic import atomic_outputs

    files, dirs = _outputs(tmp_path)
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    _write(files, dirs, "old")
    real_replace, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), getattr(signal, sig))
        return real_replace(src, dst)

    class Terminated(Exception):
        pass

    def on_term(*_):
        raise Terminated

    monkeypatch.setattr(atomic.os, "replace", replace)
    old_term = signal.signal(signal.SIGTERM, on_term)
    # Python's own Ctrl-C handler, whatever this process started with (a shell's background job
    # starts with SIGINT ignored, and Python then installs none).
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt if sig == "SIGINT" else Terminated), \
                atomic_outputs(files, dirs) as tmps:
            _write(files, dirs, "new", tmps)
        handlers_after = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    assert calls["n"] == 8, "every move was made before the signal was delivered"
    assert _tree(tmp_path) == {"metrics/a.json": "new a.json", "metrics/b.md": "new b.md",
                               "plots/c.png": "new c.png", "plots/overlays/0.png": "new overlays"}
    assert handlers_after == (signal.default_int_handler, on_term), "the handlers are back as they were"
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
