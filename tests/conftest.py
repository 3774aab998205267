"""Shared fixtures: tiny prepared datasets with a learnable signal; crafted files and measured runs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from localize.layout import REAL

REPO = Path(__file__).resolve().parents[1]


def make_prepared(root: Path, generators=("alpha", "beta"), size=16, counts=None, seed=0) -> Path:
    """Arrays in the preprocess stage's format, where fakes are an easy-to-see bright patch.

    Each generator paints its patch with its own noise level, so models can learn it in a
    few steps and the leave-one-out columns still differ from the in-domain ones.
    """
    counts = counts or {"train": 24, "valid": 8, "test": 8}
    rng = np.random.default_rng(seed)
    splits = {}
    for k, name in enumerate([REAL, *generators]):
        splits[name] = {}
        for split, n in counts.items():
            images = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
            masks = np.zeros((n, size, size), np.uint8)
            if name != REAL:
                for i in range(n):
                    y, x = rng.integers(0, size // 2, 2)
                    masks[i, y : y + size // 2, x : x + size // 2] = 1
                level = 200 + 20 * k
                patch = rng.integers(level - 10 * k, level + 1, (n, size, size, 3)).astype(np.uint8)
                images = np.where(masks[..., None] == 1, patch, images)
            folder = root / name / split
            folder.mkdir(parents=True)
            np.save(folder / "images.npy", images)
            np.save(folder / "masks.npy", masks)
            (folder / "ids.txt").write_text("".join(f"{name}-{split}-{i:03d}\n" for i in range(n)))
            splits[name][split] = n
    (root / "manifest.json").write_text(json.dumps({"size": size, "generators": sorted(generators),
                                                    "splits": splits}))
    return root


@pytest.fixture
def prepared(tmp_path) -> Path:
    return make_prepared(tmp_path / "prepared")


def png_declaring(path: Path, width: int, height: int, colour: int = 2) -> Path:
    """A PNG whose header declares width x height, in a few KB: every CRC right and an IEND, but
    only a little pixel data. Refused from its header, it never costs its declared size; a reader
    that decoded it would allocate that size before finding the data short."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(4096)))
                     + chunk(b"IEND", b""))
    return path


def run_measured(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str, str, float]:
    """Run a command with the repository importable; (exit status, stdout, stderr, peak RSS in MB).

    The peak is the largest resident size of the process or any child it waited for (wait4's
    rusage), so worker pools count too, and nothing else this test session ran does.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss / 1024


PYTHON = sys.executable
