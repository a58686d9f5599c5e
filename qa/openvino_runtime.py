"""OpenVINO as the runtime of a torch module's forward passes on a CPU (``backend="openvino"``,
chosen by :func:`qa.device.choose_backend`).

The module (the reader's BERT, :mod:`qa.bert` or transformers) is converted by OpenVINO's own
PyTorch front end (``openvino.convert_model``, no optimum) with dynamic batch and length, and
compiled for the CPU in the precision qa chose: bf16 runs OpenVINO's AMX / AVX-512 bf16 kernels
with bf16 weights, fp32 stays fp32. Conversion takes a few seconds, once per process. Measured
against torch in ``benchmarks/bench_reader.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

EXAMPLE_SHAPE = (2, 16)  # what conversion traces with; the compiled model takes any batch and length


def compile_module(module, inputs: int, precision: str) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """``module`` (taking ``inputs`` int64 tensors of one shape: ids, token types, mask) compiled
    for the CPU in ``precision`` (``bf16`` or ``fp32``): a function from numpy arrays to its
    outputs as float32 numpy arrays."""
    import openvino as ov
    import torch

    example = tuple(torch.ones(EXAMPLE_SHAPE, dtype=torch.long) for _ in range(inputs))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and tracer notes: conversion's, not the user's
        converted = ov.convert_model(module, example_input=example)
    compiled = ov.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"})
    request = compiled.create_infer_request()

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = request.infer([np.asarray(a, dtype=np.int64) for a in arrays])
        return [np.array(results[output], dtype=np.float32) for output in compiled.outputs]

    return run
