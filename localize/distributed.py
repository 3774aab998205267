"""Several training processes under torchrun: who each one is (`Ranks`), and the few collectives training needs.

`torchrun` (torch.distributed.run) starts the processes and sets RANK, WORLD_SIZE,
LOCAL_RANK and LOCAL_WORLD_SIZE; a process started any other way is the single rank 0
of a world of 1, and none of the functions below then touches torch.distributed, so the
one-process path is the plain path.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def from_env() -> Ranks:
    """This process's place in the world torchrun made, or SINGLE when not under torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    world = int(os.environ["WORLD_SIZE"])
    return Ranks(rank=int(os.environ.get("RANK", 0)), world=world,
                 local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_world=int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies.

    torchrun starts its workers in sessions of their own, so a hard kill of the stage
    (dvc, a queue worker, the OOM killer) would otherwise leave them training, and
    writing outputs, behind a dead parent. Elsewhere than Linux this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def relaunch_under_torchrun(procs: int, module: str, argv: list[str]) -> int:
    """Run `python -m module argv` as `procs` processes on this machine; their exit status.

    --standalone picks a free local port, so several runs (queue workers) can coexist.
    torchrun stops its workers when it gets SIGTERM, and gets it when this process dies.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
           "-m", module, *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # each process sets its own share of the cores
    proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent, stderr=subprocess.PIPE)
    quiet = QuietTorchrun(sys.stderr)
    try:
        while chunk := os.read(proc.stderr.fileno(), 1 << 16):
            quiet.feed(chunk)
    except BaseException:  # Ctrl-C reached torchrun too: let it stop its workers, as subprocess.run does
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        quiet.close()
        proc.stderr.close()
    return proc.wait()


class QuietTorchrun:
    """torchrun's stderr as it comes (the workers' too: bars, their errors), less torchrun's own noise:
    its traceback and failure report when a worker dies (35 lines) become one line naming the rank
    and how it ended, and its elastic log lines are dropped."""

    _LOG = re.compile(rb"^[EWI]\d{4} [\d:.]+ \d+ \S*torch/distributed/elastic/")

    def __init__(self, out) -> None:
        self.out = out
        self.pending = b""  # an unfinished line
        self.block: list[bytes] = []  # a traceback being read
        self.state = "normal"  # normal | traceback | report

    def _write(self, data: bytes) -> None:
        if hasattr(self.out, "buffer"):
            self.out.buffer.write(data)
        else:
            self.out.write(data.decode(errors="replace"))
        self.out.flush()

    def feed(self, chunk: bytes) -> None:
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            self._line(line + b"\n")
        # A bar's update has no newline: pass it on now, unless it could begin a traceback.
        if self.state == "normal" and self.pending and not b"Traceback (most recent call last):".startswith(
                self.pending.lstrip(b"\r")[:34]):
            self._write(self.pending)
            self.pending = b""

    def _line(self, line: bytes) -> None:
        if self.state == "normal":
            if line.startswith(b"Traceback (most recent call last):"):
                self.state, self.block = "traceback", [line]
            elif not self._LOG.match(line):
                self._write(line)
        elif self.state == "traceback":
            self.block.append(line)
            if not line[:1].isspace():  # the exception's own line ends the traceback
                if b"ChildFailedError" in line:
                    self.state, self.block = "report", []
                else:
                    self._write(b"".join(self.block))
                    self.state, self.block = "normal", []
        else:  # torchrun's failure report, between two rules of "="
            self.block.append(line)
            if line.startswith(b"=") and len(self.block) > 1:
                self._write(self._summary(b"".join(self.block).decode(errors="replace")).encode())
                self.state, self.block = "normal", []

    @staticmethod
    def _summary(report: str) -> str:
        cause = report.split("Root Cause", 1)[-1]
        rank = re.search(r"rank\s*:\s*(\d+)", cause)
        code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
        why = re.search(r"traceback\s*:\s*(.+)", cause)
        how = f"exit code {code.group(1) if code else '?'}"
        if why and "To enable traceback" not in why.group(1):
            how += f": {why.group(1).strip()}"
        return f"torchrun: rank {rank.group(1) if rank else '?'} failed ({how})\n"

    def close(self) -> None:
        if self.block and self.state == "traceback":
            self._write(b"".join(self.block))
        if self.pending:
            self._write(self.pending)


def local_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One CUDA device per local process; CPU processes share the CPU."""
    if not ranks.parallel:
        return device
    if device.type == "cuda":
        if ranks.local_world > torch.cuda.device_count():
            raise RuntimeError(f"{ranks.local_world} processes on this machine but only "
                               f"{torch.cuda.device_count()} CUDA device(s); lower train.procs")
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    if device.type != "cpu":
        raise RuntimeError(f"several training processes need CUDA (nccl) or CPU (gloo), not {device.type}; "
                           "set train.procs: 1 or train.device: cpu")
    return device


def init(ranks: Ranks, device: torch.device) -> None:
    if ranks.parallel and not dist.is_initialized():
        # Rendezvous address from the environment (torchrun sets MASTER_ADDR and MASTER_PORT).
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                                world_size=ranks.world)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's `obj` on every rank (a no-op alone)."""
    if not ranks.parallel:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Element-wise sum of `values` over all ranks, in float64 (a no-op alone)."""
    if not ranks.parallel:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj: Any, ranks: Ranks) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0; None elsewhere."""
    if not ranks.parallel:
        return [obj]
    out = [None] * ranks.world if ranks.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(ranks: Ranks) -> None:
    if ranks.parallel:
        dist.barrier()
