"""Device choice, mixed precision and the runtime: CUDA when present, bf16 autocast on CPUs that
have it, and OpenVINO instead of torch for the forward passes on a CPU where it is installed
(``qa[openvino]``; see :mod:`qa.openvino_runtime`).

torch is imported when a device is first chosen, so that modules using this one stay cheap to
import (``qa --help``)."""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from dataclasses import dataclass

from qa.errors import QAError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
BACKENDS = ("auto", "torch", "openvino")

logger = logging.getLogger(__name__)


def pick_device(device: str | None = None) -> str:
    """``device`` if given (checked: it must exist on this machine), else ``cuda`` when a GPU is
    visible, else ``cpu``."""
    import torch

    if not device:
        chosen = "cuda" if torch.cuda.is_available() else "cpu"
        logger.debug("device %s chosen: %s", chosen, "a CUDA GPU is visible" if chosen == "cuda" else "no CUDA GPU is visible")
        return chosen
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


def choose_precision(precision: str, device: str, model: str = "model") -> str:
    """The arithmetic ``model`` runs in on ``device``: ``auto`` is :func:`default_precision`;
    an explicit choice is checked against the device. The choice and its reason are logged."""
    if precision not in PRECISIONS:
        raise QAError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise QAError("fp16 needs a CUDA device; on a CPU use bf16, int8 or fp32")
    if precision == "int8" and device != "cpu":
        raise QAError("int8 (dynamic quantisation) runs on the CPU only: pass --device cpu")
    if precision != "auto":
        logger.info("%s runs in %s on %s (asked for)", model, precision, device)
        return precision
    chosen = default_precision(device)
    if device.startswith("cuda"):
        why = "fp16 autocast on CUDA"
    elif chosen == "bf16":
        why = "this CPU computes bf16 natively (avx512_bf16 or amx_bf16)"
    else:
        why = "this CPU has no native bf16 (no avx512_bf16 or amx_bf16), where bf16 autocast is slower"
    logger.info("%s runs in %s on %s: %s", model, chosen, device, why)
    return chosen


def autocast(device: str, precision: str | None = None):
    """Mixed precision for inference in ``precision`` (default: :func:`default_precision`);
    fp32 and int8 run without autocast."""
    import torch

    precision = precision or default_precision(device)
    if precision == "fp16":
        return torch.autocast("cuda", dtype=torch.float16)
    if precision == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def choose_backend(backend: str, device: str, precision: str, model: str = "model") -> str:
    """What runs ``model``'s forward passes: ``torch``, or ``openvino`` (CPU only, in bf16 or
    fp32). ``auto`` is OpenVINO for bf16 on a CPU where it is installed, else torch; an explicit
    choice is checked. ``precision`` is the one :func:`choose_precision` chose."""
    if backend not in BACKENDS:
        raise QAError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if backend == "auto":  # measured faster only in bf16 (benchmarks/bench_reader.py), so far
        chosen = "openvino" if device == "cpu" and precision == "bf16" and cpu_has_bf16() and openvino_installed() else "torch"
        logger.info("%s runs on %s (%s)", model, chosen, "OpenVINO is installed and this CPU runs bf16"
                    if chosen == "openvino" else "no OpenVINO here, or not a bf16 CPU run")
        return chosen
    if backend == "openvino":
        if device != "cpu":
            raise QAError(f"--backend openvino runs on the CPU; {model} is on {device}: pass --device cpu or --backend torch")
        if precision not in ("bf16", "fp32"):
            raise QAError(f"--backend openvino runs bf16 or fp32, not {precision}: pass --precision auto, bf16 or fp32, or --backend torch")
        if not openvino_installed():
            raise QAError("--backend openvino needs OpenVINO: pip install 'qa[openvino]' (or pass --backend torch)")
    return backend
