"""benchmarks/gpu_check: on a machine without CUDA, one clear line and exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_without_cuda_it_says_so_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hides any GPU: the CPU-only path, on any machine
    for command in ([sys.executable, "benchmarks/gpu_check.py", "--quick"], ["bash", "benchmarks/gpu_check.sh"]):
        proc = subprocess.run(command, cwd=REPO, env={**env, "PYTHON": sys.executable}, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device"), proc.stdout
