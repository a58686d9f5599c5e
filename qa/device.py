"""Device choice and mixed precision: CUDA when present, bf16 autocast on CPUs that have it."""

from __future__ import annotations

import contextlib
import functools

import torch


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else ``cuda`` when a GPU is visible, else ``cpu``."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); else autocast is slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device: str) -> str:
    """fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"


def autocast(device: str, precision: str | None = None):
    """Mixed precision for inference in ``precision`` (default: :func:`default_precision`);
    fp32 and int8 run without autocast."""
    precision = precision or default_precision(device)
    if precision == "fp16":
        return torch.autocast("cuda", dtype=torch.float16)
    if precision == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()
