"""Where and how the model runs: device, threads, mixed precision."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs, as resolved on this machine (recorded beside the results)."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    threads: int


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pick_device(requested: str = "auto") -> torch.device:
    """cuda > mps > cpu for `auto`; an explicit request that cannot be met is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("train.device is 'mps' but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(requested)


def cpu_has_bf16() -> bool:
    """True where the CPU does bf16 arithmetic natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# The CPU features whose presence changes library code paths (NumPy, OpenCV and torch dispatch on
# them), so a result that differs between machines can be traced to them (docs/reliability.md).
_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_features() -> str:
    """The machine and which of `_FEATURES` its CPU has, e.g. "x86_64: avx avx2 fma", for the runtime record."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return f"{platform.machine()}: " + (" ".join(x for x in _FEATURES if x in flags) or "unknown")


def pick_precision(requested: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA and on CPUs with native bf16, else fp32."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def setup_threads(threads: int | None, processes: int = 1) -> int:
    """Set torch's intra-op threads: `threads`, or by default an equal share of the usable
    cores for each of this machine's `processes` training processes."""
    n = threads or max(1, available_cores() // processes)
    torch.set_num_threads(n)
    return n
