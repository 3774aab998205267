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
