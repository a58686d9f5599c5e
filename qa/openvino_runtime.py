"""OpenVINO as the runtime of a torch module's forward passes on a CPU (``backend="openvino"``,
chosen by :func:`qa.device.choose_backend`).

The module (the reader's BERT, :mod:`qa.bert` or transformers) is converted by OpenVINO's own
PyTorch front end (``openvino.convert_model``, no optimum) with dynamic batch and length, and
compiled for the CPU in the precision qa chose: bf16 runs OpenVINO's AMX / AVX-512 bf16 kernels
with bf16 weights, fp32 stays fp32. Conversion takes a few seconds, once per process. Measured
against torch in ``benchmarks/bench_reader.py``.

OpenVINO's converter reports every conversion to Google Analytics (``openvino_telemetry``: a
client id written under ``~/intel``, each event sent from a forked process) unless the machine
opted out. qa converts with OpenVINO's own telemetry stub in its place (:func:`_without_telemetry`):
nothing about a user's run leaves the machine, and no forked sender is left behind; offline, one
waits on name resolution while holding the files its parent had open, such as an index's lock.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np

EXAMPLE_SHAPE = (2, 16)  # what conversion traces with; the compiled model takes any batch and length


def compile_module(module, inputs: int, precision: str) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """``module`` (taking ``inputs`` int64 tensors of one shape: ids, token types, mask) compiled
    for the CPU in ``precision`` (``bf16`` or ``fp32``): a function from numpy arrays to its
    outputs as float32 numpy arrays."""
    import openvino as ov
    import torch

    example = tuple(torch.ones(EXAMPLE_SHAPE, dtype=torch.long) for _ in range(inputs))
    with torch.no_grad(), warnings.catch_warnings(), _without_telemetry():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and tracer notes: conversion's, not the user's
        converted = ov.convert_model(module, example_input=example)
    compiled = ov.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"})
    request = compiled.create_infer_request()

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = request.infer([np.asarray(a, dtype=np.int64) for a in arrays])
        return [np.array(results[output], dtype=np.float32) for output in compiled.outputs]

    return run


@contextlib.contextmanager
def _without_telemetry() -> Iterator[None]:
    """While converting: OpenVINO's telemetry stub (what it uses when ``openvino_telemetry`` is not
    installed) in place of ``openvino_telemetry``, in the converter's modules that send events."""
    try:
        from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils
    except ImportError:  # another layout of OpenVINO: nothing known to replace
        yield
        return
    replaced = [(module, name) for module, name in ((convert_impl, "tm"), (telemetry_utils, "tm"), (convert_impl, "init_ovc_telemetry"))
                if hasattr(module, name)]
    saved = [getattr(module, name) for module, name in replaced]
    stubs = {"tm": telemetry_stub, "init_ovc_telemetry": lambda *args, **kwargs: telemetry_stub.Telemetry()}
    for module, name in replaced:
        setattr(module, name, stubs[name])
    try:
        yield
    finally:
        for (module, name), value in zip(replaced, saved):
            setattr(module, name, value)
