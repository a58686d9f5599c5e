"""Device choice, mixed precision and the runtime: CUDA when present, bf16 autocast on CPUs where
it pays (:func:`cpu_prefers_bf16`), and OpenVINO instead of torch for the forward passes in bf16
on a CPU where it is installed (``qa[openvino]``; see :mod:`qa.openvino_runtime`).

torch is imported when a device is first chosen, so that modules using this one stay cheap to
import (``qa --help``)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import time
from dataclasses import dataclass

from qa.errors import QAError
from qa.fsutil import cache_dir

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
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX); else autocast is slower.
    Having them is not enough for bf16 to pay: :func:`cpu_prefers_bf16`."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info().flags)


#: bf16 is chosen on a CPU only where its matrix products run at least this many times as fast as
#: fp32's. An Intel Xeon with AVX512-BF16 but no AMX (a virtual machine's) ran them at 0.53 x
#: fp32's, and read and embedded 1.6 x faster in fp32 (docs/READER.md, "bf16 only where it pays").
BF16_MIN_SPEEDUP = 1.2
BF16_CHOICE_FILE = "cpu-bf16.json"


@functools.cache
def cpu_prefers_bf16() -> bool:
    """True when this CPU has bf16 instructions and its bf16 matrix products, at the shapes of
    qa's encoders, run at least :data:`BF16_MIN_SPEEDUP` times as fast as fp32's. Measured once
    per CPU (about 0.2 s) and remembered in qa's cache folder."""
    if not cpu_has_bf16():
        return False
    import torch

    info = cpu_info()
    key = f"{info.name} | {' '.join(sorted(f for f in info.flags if 'bf16' in f or f.startswith('amx')))} | torch {torch.__version__}"
    path = cache_dir() / BF16_CHOICE_FILE
    known: dict = {}
    try:
        loaded = json.loads(path.read_text())
        known = loaded if isinstance(loaded, dict) else {}
        speedup = float(known[key]["bf16_speedup"])
    except (OSError, ValueError, KeyError, TypeError):  # not measured here yet, or a damaged file
        speedup = bf16_speedup()
        known[key] = {"bf16_speedup": round(speedup, 3), "threads": torch.get_num_threads()}
        written = path.with_name(f".{path.name}.{os.getpid()}")
        try:  # whole or not at all, when processes measure at once: written aside, then renamed
            path.parent.mkdir(parents=True, exist_ok=True)
            written.write_text(json.dumps(known, indent=1) + "\n")
            os.replace(written, path)
        except OSError:
            with contextlib.suppress(OSError):
                written.unlink(missing_ok=True)
            logger.debug("could not remember the bf16 measurement in %s", path)
    logger.info("bf16 matrix products run %.2f x as fast as fp32's on this CPU (%s)", speedup, info.name)
    return speedup >= BF16_MIN_SPEEDUP


def bf16_speedup(rounds: int = 3) -> float:
    """How many times as fast bf16 matrix products run as fp32's here: 2,048 tokens through a
    384 x 1,536 layer (all-MiniLM-L6-v2's and the default reader's feed-forward shape), the best
    of ``rounds`` timings of each, taken in turn."""
    import torch

    with torch.inference_mode():
        operands = {dtype: (torch.randn(2048, 384).to(dtype), torch.randn(384, 1536).to(dtype))
                    for dtype in (torch.float32, torch.bfloat16)}
        best = {dtype: float("inf") for dtype in operands}
        for _ in range(rounds + 1):  # the first round warms up
            for dtype, (a, b) in operands.items():
                started = time.perf_counter()
                torch.mm(a, b)
                torch.mm(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - started)
    return best[torch.float32] / best[torch.bfloat16]


def default_precision(device: str) -> str:
    """fp16 on CUDA, bf16 on CPUs where it pays (:func:`cpu_prefers_bf16`), else fp32."""
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if device == "cpu" and cpu_prefers_bf16() else "fp32"


def choose_precision(precision: str, device: str, model: str = "model") -> str:
    """The arithmetic ``model`` runs in on ``device``: ``auto`` is :func:`default_precision`;
    an explicit choice is checked against the device. The choice and its reason are logged."""
    if precision not in PRECISIONS:
        raise QAError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise QAError("fp16 needs a CUDA device; on a CPU use bf16, int8 or fp32")
    if precision == "int8" and device != "cpu":
        raise QAError("int8 runs on the CPU only: pass --device cpu")
    if precision != "auto":
        logger.info("%s runs in %s on %s (asked for)", model, precision, device)
        return precision
    chosen = default_precision(device)
    if device.startswith("cuda"):
        why = "fp16 autocast on CUDA"
    elif chosen == "bf16":
        why = "this CPU's bf16 matrix products are faster than its fp32 ones"
    elif cpu_has_bf16():
        why = "this CPU has bf16 instructions, but its bf16 matrix products are not faster than its fp32 ones"
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


def nncf_installed() -> bool:
    """NNCF, which quantises a model for OpenVINO's int8 (:mod:`qa.int8`)."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def choose_backend(backend: str, device: str, precision: str, model: str = "model") -> str:
    """What runs ``model``'s forward passes: ``torch``, or ``openvino`` (CPU only, in bf16, fp32
    or int8). ``auto`` is OpenVINO for bf16 on a CPU where it is installed, and for int8 where
    NNCF is too, else torch; an explicit choice is checked. ``precision`` is the one
    :func:`choose_precision` chose."""
    if backend not in BACKENDS:
        raise QAError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if backend == "auto":  # measured faster only in bf16 and int8 (benchmarks/bench_reader.py), so far
        if device == "cpu" and precision == "int8":
            chosen = "openvino" if openvino_installed() and nncf_installed() else "torch"
            why = ("OpenVINO and NNCF are installed: static int8" if chosen == "openvino"
                   else "no OpenVINO and NNCF here: torch's dynamic int8")
        else:
            chosen = "openvino" if device == "cpu" and precision == "bf16" and cpu_has_bf16() and openvino_installed() else "torch"
            why = "OpenVINO is installed and this CPU runs bf16" if chosen == "openvino" else "no OpenVINO here, or not a bf16 CPU run"
        logger.info("%s runs on %s (%s)", model, chosen, why)
        return chosen
    if backend == "openvino":
        if device != "cpu":
            raise QAError(f"--backend openvino runs on the CPU; {model} is on {device}: pass --device cpu or --backend torch")
        if precision not in ("bf16", "fp32", "int8"):
            raise QAError(f"--backend openvino runs bf16, fp32 or int8, not {precision}: pass --precision auto, bf16, fp32 or int8, or --backend torch")
        if not openvino_installed():
            raise QAError("--backend openvino needs OpenVINO: pip install 'qa[openvino]' (or pass --backend torch)")
        if precision == "int8" and not nncf_installed():
            raise QAError("int8 on OpenVINO needs NNCF: pip install 'qa[openvino]' (or pass --backend torch)")
    return backend
