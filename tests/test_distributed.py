"""Training with several processes: DDP (gloo on CPU) and whole splits per process.

Each run goes through the real entry point, `python -m stages.train`, which starts the
processes itself with torchrun when `train.procs` > 1.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import recipe

from localize.config import read_params
from localize.distributed import Ranks
from localize.resume import resume_files
from localize.saved_model import SavedModel
from localize.training import NonFiniteLoss
from stages import train

REPO = Path(__file__).resolve().parents[1]
MODEL = {"arch": "unet-seed", "width": 4, "dropout": 0.0}
# params.yaml's recipe with tiny sizes and steps, and the reference recipe's U-Net with plain Dice
# (named, as in test_train_evaluate.py), which learns in these few steps.
TINY = {"epochs": 6, "steps_per_epoch": 4, "batch_size": 8, "lr": 0.01, "precision": "fp32", "threads": 1,
        "loss": "dice", "real": 0.0, "schedule": "constant", "init": "scratch"}


def start_train(prepared: Path, out: Path, **train_params) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    shipped = read_params(REPO / "params.yaml")
    (out / "params.yaml").write_text(yaml.safe_dump({"model": {**shipped["model"], **MODEL},
                                                     "train": {**shipped["train"], **TINY, **train_params}}))
    cmd = [sys.executable, "-m", "stages.train", "--prepared", str(prepared), "--models", str(out / "models"),
           "--live", str(out / "dvclive"), "--curves", str(out / "curves.png"),
           "--checkpoints", str(out / "ckpt"), "--params", str(out / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def train_cli(prepared: Path, out: Path, **train_params) -> str:
    proc = start_train(prepared, out, **train_params)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    return log


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def load(out: Path, split: str) -> SavedModel:
    return SavedModel.load(out / "models" / f"{split}.pt")


def test_ddp_on_two_cpu_processes_is_close_to_one_process(prepared, tmp_path):
    train_cli(prepared, tmp_path / "one", source="alpha")
    log = train_cli(prepared, tmp_path / "two", source="alpha", procs=2)
    assert "2 processes (DDP)" in log
    assert log.count("[alpha] epoch 6:") == 1, "only rank 0 reports"
    one, two = load(tmp_path / "one", "alpha"), load(tmp_path / "two", "alpha")

    # Both ranks see exactly the single-process batches (each its half); what differs is
    # BatchNorm statistics over 4 images instead of 8 and the order of float sums.
    # The stated tolerance: every epoch's training loss within 0.03 of one process.
    for a, b in zip(one.history, two.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.03)
    assert two.history[-1]["train_loss"] < two.history[0]["train_loss"] - 0.1, "it learns"
    # Best-epoch selection ran on the gathered validation score of both ranks' halves.
    assert two.valid_score == max(row["valid_score"] for row in two.history)
    assert max(row["valid_iou"] for row in two.history) > 0.3
    assert two.history[two.best_epoch - 1]["valid_score"] == two.valid_score
    assert all(torch.isfinite(v).all() for v in two.state_dict.values() if v.is_floating_point())
    assert not list((tmp_path / "two" / "ckpt").iterdir()), "resume files are removed at the end"
    assert (tmp_path / "two" / "dvclive" / "metrics.json").exists()


def test_splits_spread_over_processes_give_the_single_process_models(prepared, tmp_path):
    params = {"source": "table", "epochs": 2, "steps_per_epoch": 3, "distribute": "splits"}
    train_cli(prepared, tmp_path / "one", **params)
    log = train_cli(prepared, tmp_path / "two", procs=2, **params)
    assert "2 processes, one split each" in log
    for split in ("alpha", "beta", "no-alpha", "no-beta"):
        one, two = load(tmp_path / "one", split), load(tmp_path / "two", split)
        assert two.history == one.history
        assert all(torch.equal(one.state_dict[k], two.state_dict[k]) for k in one.state_dict)
    tsv = tmp_path / "two" / "dvclive" / "plots" / "metrics" / "no-beta" / "valid_iou.tsv"
    assert len(tsv.read_text().splitlines()) == 1 + 2, "rank 0 logs the other rank's curves too"


@pytest.mark.parametrize("ema", [None, 0.9])
def test_a_killed_ddp_run_resumes_to_the_same_weights(prepared, tmp_path, ema):
    params = {"source": "alpha", "epochs": 8, "procs": 2, "ema": ema}
    train_cli(prepared, tmp_path / "whole", **params)
    whole = load(tmp_path / "whole", "alpha")

    proc = start_train(prepared, tmp_path / "cut", **params)
    ckpt = tmp_path / "cut" / "ckpt"
    deadline = time.monotonic() + 240
    while not resume_files(ckpt, "alpha", done=False):
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, mid-run
    proc.wait()
    assert not (tmp_path / "cut" / "models").exists(), "a killed run leaves no models"

    log = train_cli(prepared, tmp_path / "cut", **params)
    assert "[alpha] resuming after epoch" in log
    resumed = load(tmp_path / "cut", "alpha")
    assert resumed.history == whole.history
    assert all(torch.equal(resumed.state_dict[k], whole.state_dict[k]) for k in whole.state_dict)
    # Byte for byte: DVC hashes the file, so equal weights in different bytes would rerun evaluate.
    assert md5(tmp_path / "cut" / "models" / "alpha.pt") == md5(tmp_path / "whole" / "models" / "alpha.pt")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"procs": 3}, r"train.batch_size \(8\) must be divisible by the number of processes \(3\)"),
        ({"procs": 2, "distribute": "splits"}, "train.source=alpha has 1; use train.distribute=data"),
        ({"procs": 0}, "procs must be >= 1"),
        ({"distribute": "nodes"}, "choose one of: data, splits"),
    ],
)
def test_bad_process_settings_fail_before_any_process_starts(prepared, tmp_path, params, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"model": MODEL, "train": {**TINY, "source": "alpha",
                                                                                      **params}}))
    args = ["--prepared", str(prepared), "--models", str(tmp_path / "models"), "--live", str(tmp_path / "live"),
            "--curves", str(tmp_path / "c.png"), "--checkpoints", str(tmp_path / "ckpt"),
            "--params", str(tmp_path / "params.yaml")]
    with pytest.raises(SystemExit, match=message):
        train.main(args)
    assert not (tmp_path / "models").exists()


def _nan_rank(rank: int, prepared: Path, out: Path, port: int, errors) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from localize import losses

    # Only rank 1's loss goes bad: both ranks must still stop together, not hang.
    if rank == 1:
        losses.LOSSES["dice"] = lambda logits, y: logits.sum() * float("nan")
    tp = recipe("train", **{**TINY, "source": "alpha", "procs": 2})
    try:
        train.run(prepared, out / "models", out / "dvclive", out / "c.png", out / "ckpt",
                  recipe("model", **MODEL), tp, Ranks(rank=rank, world=2, local_rank=rank, local_world=2))
    except NonFiniteLoss as e:
        errors.put((rank, str(e)))


def test_a_nan_loss_on_one_rank_stops_every_rank(prepared, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    mp.start_processes(_nan_rank, args=(prepared, tmp_path, port, errors), nprocs=2, start_method="spawn",
                       join=True)
    got = sorted(errors.get(timeout=10) for _ in range(2))
    assert [rank for rank, _ in got] == [0, 1]
    assert all("split 'alpha': loss is nan at epoch 1, step 1" in message for _, message in got)
    assert not (tmp_path / "models").exists()


def test_a_one_process_train_dies_with_the_dvc_that_started_it(prepared, tmp_path):
    """`procs: 1` under a parent that is killed (dvc, kill -9): the training process stops too."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "params.yaml").write_text(yaml.safe_dump({"model": MODEL, "train": {**TINY, "source": "alpha",
                                                                                 "epochs": 500}}))
    cmd = [sys.executable, "-m", "stages.train", "--prepared", str(prepared), "--models", str(out / "models"),
           "--live", str(out / "dvclive"), "--curves", str(out / "curves.png"), "--checkpoints", str(out / "ckpt"),
           "--params", str(out / "params.yaml")]
    parent = ("import subprocess, sys\n"
              f"p = subprocess.Popen({cmd!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
              "print(p.pid, flush=True)\np.wait()\n")
    dvc = subprocess.Popen([sys.executable, "-c", parent], cwd=out, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(dvc.stdout.readline())
    deadline = time.monotonic() + 120
    while not list((out / "ckpt").glob("alpha-*.pt")):
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)
    dvc.kill()
    dvc.wait()

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        return state not in ("Z", "X")

    deadline = time.monotonic() + 20
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = not running(child)
    if not stopped:
        os.kill(child, signal.SIGKILL)
    assert stopped, "the training process outlived its parent"
    assert not (out / "models").exists()


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except FileNotFoundError:
            continue
        out += [int(c) for c in children]
        todo += [int(c) for c in children]
    return out


def test_a_rank_that_dies_is_reported_in_one_line(prepared, tmp_path):
    """A worker killed mid-run (the OOM killer, say): torchrun's own traceback is not shown, one line is."""
    proc = start_train(prepared, tmp_path / "run", source="alpha", epochs=500, procs=2)
    deadline = time.monotonic() + 240
    rank1 = None
    while rank1 is None:
        assert proc.poll() is None and time.monotonic() < deadline
        for pid in _descendants(proc.pid):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if b"LOCAL_RANK=1" in env and b"stages.train" in Path(f"/proc/{pid}/cmdline").read_bytes():
                rank1 = pid
        time.sleep(0.05)
    while not list((tmp_path / "run" / "ckpt").glob("alpha-*.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(rank1, signal.SIGKILL)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in log and "ChildFailedError" not in log, log[-3000:]
    assert "rank 1 failed (exit code -9: Signal 9 (SIGKILL)" in log, log[-3000:]
    assert log.strip().splitlines()[-1].startswith("error: train.procs=2: a training process failed")
