"""OpenVINO as the runtime of a torch module's forward passes on a CPU (``backend="openvino"``,
chosen by :func:`qa.device.choose_backend`).

The module (the reader's BERT, :mod:`qa.bert` or transformers) is converted by OpenVINO's own
PyTorch front end (``openvino.convert_model``, no optimum) with dynamic batch and length, and
compiled for the CPU in the precision qa chose: bf16 runs OpenVINO's AMX / AVX-512 bf16 kernels
with bf16 weights, fp32 stays fp32. Conversion takes a few seconds, once per process. Measured
against torch in ``benchmarks/bench_reader.py``.

With ``streams`` > 1 the model is compiled for throughput: that many streams, the cores shared
among them, each running one batch at a time (:meth:`CompiledModule.map`); a single call then runs
on one stream's cores, so latency-bound callers (a question) keep one stream.

OpenVINO's converter reports every conversion to Google Analytics (``openvino_telemetry``: a
client id written under ``~/intel``, each event sent from a forked process) unless the machine
opted out. qa converts with OpenVINO's own telemetry stub in its place (:func:`_without_telemetry`):
nothing about a user's run leaves the machine, and no forked sender is left behind; offline, one
waits on name resolution while holding the files its parent had open, such as an index's lock.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

EXAMPLE_SHAPE = (2, 16)  # what conversion traces with; the compiled model takes any batch and length
IN_FLIGHT = 4  # batches per stream that CompiledModule.map takes at a time


class CompiledModule:
    """A module compiled by OpenVINO: called on one batch of int64 arrays (ids, token types, mask),
    it returns the module's outputs as float32 numpy arrays; :meth:`map` runs many batches."""

    def __init__(self, compiled, streams: int):
        import openvino as ov

        self._compiled = compiled
        self.streams = streams
        self._outputs = len(compiled.outputs)
        self._request = compiled.create_infer_request()
        self._queue = ov.AsyncInferQueue(compiled, streams) if streams > 1 else None

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = self._request.infer([np.asarray(a, dtype=np.int64) for a in arrays])
        return [np.array(results[output], dtype=np.float32) for output in self._compiled.outputs]

    def map(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[np.ndarray]]:
        """The outputs of each batch, in order; with several streams, :data:`IN_FLIGHT` batches per
        stream are taken at a time and run at once, one per stream (each batch's outputs are those
        of a call on it alone), so that only their outputs are held."""
        if self._queue is None:
            yield from (self(arrays) for arrays in batches)
            return
        batches = iter(batches)
        while group := list(itertools.islice(batches, IN_FLIGHT * self.streams)):
            yield from self._run_together(group)

    def _run_together(self, batches: list[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        if len(batches) < 2:
            return [self(arrays) for arrays in batches]
        results: list[list[np.ndarray] | None] = [None] * len(batches)

        def finished(request, index: int) -> None:  # copy out before the request takes the next batch
            results[index] = [np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in range(self._outputs)]

        self._queue.set_callback(finished)
        for index, arrays in enumerate(batches):
            self._queue.start_async([np.asarray(a, dtype=np.int64) for a in arrays], userdata=index)
        self._queue.wait_all()
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"OpenVINO returned no outputs for {len(missing)} of {len(batches)} batches")
        return results  # type: ignore[return-value]


def compile_module(module, inputs: int, precision: str, streams: int = 1, threads: int | None = None) -> CompiledModule:
    """``module`` (taking ``inputs`` int64 tensors of one shape: ids, token types, mask) compiled
    for the CPU in ``precision`` (``bf16`` or ``fp32``), for latency (one stream, all cores) or,
    with ``streams`` > 1, for throughput (that many streams sharing the cores); on ``threads``
    threads in all where given (a Ray actor's share of a node), else on all cores."""
    import openvino as ov
    import torch

    example = tuple(torch.ones(EXAMPLE_SHAPE, dtype=torch.long) for _ in range(inputs))
    with torch.no_grad(), warnings.catch_warnings(), _without_telemetry():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and tracer notes: conversion's, not the user's
        converted = ov.convert_model(module, example_input=example)
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if threads:
        streams = max(1, min(streams, threads))
        config["INFERENCE_NUM_THREADS"] = str(threads)
    if streams > 1:
        config |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(streams)}
    return CompiledModule(ov.compile_model(converted, "CPU", config), streams)


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
