"""Device choice and mixed precision: CUDA when present, bf16 autocast on CPUs that have it."""

from __future__ import annotations

import contextlib
import functools
import platform
from dataclasses import dataclass

import torch

from qa.errors import QAError


def pick_device(device: str | None = None) -> str:
    """``device`` if given (checked: it must exist on this machine), else ``cuda`` when a GPU is
    visible, else ``cpu``."""
    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise QAError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise QAError(f"device {device!r} asked for, but this machine has no usable CUDA GPU: use --device cpu or leave --device out")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise QAError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise QAError(f"device {device!r} asked for, but MPS is not available here: use --device cpu")
    elif parsed.type != "cpu":
        raise QAError(f"device {device!r} is not supported: use cpu, cuda or cuda:N")
    return device


@dataclass(frozen=True)
class CPUInfo:
    """What /proc/cpuinfo says of the first CPU (empty where there is no such file)."""

    name: str
    flags: frozenset[str]
    mhz: float | None


@functools.cache
def cpu_info() -> CPUInfo:
    """The CPU's model name, feature flags and clock, read once from /proc/cpuinfo: the one
    place qa and its benchmarks learn what the CPU can do."""
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f)
    except OSError:
        return parse_cpuinfo([])


def parse_cpuinfo(lines) -> CPUInfo:
    """:class:`CPUInfo` of the first processor described by ``lines`` of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    mhz = fields.get("cpu MHz")
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    return CPUInfo(name, frozenset(fields.get("flags", "").split()), float(mhz) if mhz else None)


def cpu_name() -> str:
    return cpu_info().name


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); else autocast is slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info().flags)


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
