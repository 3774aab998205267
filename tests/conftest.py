"""Shared fixtures: tiny prepared datasets with a learnable signal; crafted files and measured runs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from localize.config import parse_section, read_params
from localize.layout import REAL
from localize.preflight import SECTIONS

REPO = Path(__file__).resolve().parents[1]


def recipe(section: str, **overrides):
    """params.yaml's `section` (the shipped recipe) with `overrides` (tiny sizes and steps), parsed and
    validated like a stage does: the one way tests build their params."""
    values = {**(read_params(REPO / "params.yaml").get(section) or {}), **overrides}
    return parse_section(SECTIONS[section], values, section)


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


# Runs `python -m <module> args...` and, at exit, writes the process's own peak resident size
# (VmHWM, which starts afresh at exec) and its children's (worker pools) to $PEAK_FILE. The
# exec'ing process's own rusage would not do: Linux carries the parent's peak across fork and
# exec into the child's ru_maxrss, so a child of a big test process would look big.
_PEAK_WRAPPER = """
import atexit, os, re, resource, runpy, sys
def _report():
    own = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(os.environ["PEAK_FILE"], "w") as f:
        f.write(str(max(own, children)))
atexit.register(_report)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_measured(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str, str, float]:
    """Run `python -m module ...` with the repository importable; (exit status, stdout, stderr, peak RSS in MB).

    The peak is the largest resident size of that process or of any child it waited for (worker
    pools), measured from inside, so nothing this test session ran counts.
    """
    assert args[1] == "-m", "run_measured runs `python -m module ...`"
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        peak_file = Path(tmp) / "peak"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "PEAK_FILE": str(peak_file)}
        proc = subprocess.run([args[0], "-c", _PEAK_WRAPPER, *args[2:]], cwd=cwd, env=env, stdout=out,
                              stderr=err, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), int(peak_file.read_text()) / 1024


PYTHON = sys.executable
