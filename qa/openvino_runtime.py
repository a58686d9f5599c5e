"""OpenVINO as the runtime of a torch module's forward passes on a CPU (``backend="openvino"``,
chosen by :func:`qa.device.choose_backend`).

The module (the reader's BERT, :mod:`qa.bert` or transformers) is converted by OpenVINO's own
PyTorch front end (``openvino.convert_model``, no optimum) with dynamic batch and length, and
compiled for the CPU in the precision qa chose: bf16 runs OpenVINO's AMX / AVX-512 bf16 kernels
with bf16 weights, fp32 stays fp32. Conversion takes a few seconds, once per process. Measured
against torch in ``benchmarks/bench_reader.py``.

With ``streams`` > 1 the model is also compiled for throughput: that many streams, the cores
shared among them, each running one batch at a time; :meth:`CompiledModule.map` runs a call of
many batches on the streams and a call of a few on the latency compilation (one stream, all cores),
which is faster for them, so that one reader serves a question alone and sixteen at once well.

OpenVINO's converter reports every conversion to Google Analytics (``openvino_telemetry``: a
client id written under ``~/intel``, each event sent from a forked process) unless the machine
opted out. qa converts with OpenVINO's own telemetry stub in its place (:func:`_without_telemetry`):
nothing about a user's run leaves the machine, and no forked sender is left behind; offline, one
waits on name resolution while holding the files its parent had open, such as an index's lock.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

EXAMPLE_SHAPE = (2, 16)  # what conversion traces with; the compiled model takes any batch and length
#: A :meth:`CompiledModule.map` of at least this many batches runs them on the streams; fewer run
#: one after another on all cores. Two streams read 3 batches faster than one stream in every round,
#: 2 batches (one question's 10 passages: 8 + 2 features) no faster (``benchmarks/reader_call_streams.py``).
STREAMED_BATCHES = 3
#: OpenVINO compiles and keeps kernels for each input shape it meets (up to its
#: ``CPU_RUNTIME_CACHE_CAPACITY``): inputs padded to a multiple of this many tokens meet a few
#: dozen lengths, not hundreds, so the kept kernels do not grow to gigabytes.
PAD_MULTIPLE = 16


def padded_length(length: int, limit: int) -> int:
    """The length to pad inputs of ``length`` tokens to for OpenVINO: rounded up to a multiple of
    :data:`PAD_MULTIPLE`, but not past ``limit`` (the longest input the model is given)."""
    return max(length, min(-(-length // PAD_MULTIPLE) * PAD_MULTIPLE, limit))


class CompiledModule:
    """A module compiled by OpenVINO: called on one batch of int64 arrays (ids, token types, mask),
    it returns the module's outputs as float32 numpy arrays; :meth:`map` runs many batches.

    Compiled for latency (one stream on all the cores) at once, and with ``streams`` > 1 a second
    time for throughput (``streams`` streams sharing the cores) when a call first needs it: a
    process that reads one question at a time never pays for that compilation.

    Threads may share one: each thread calls with its own request, and a :meth:`map` that finds
    another holding the streams runs on the latency compilation meanwhile."""

    def __init__(self, converted, config: dict[str, str], streams: int = 1):
        import openvino as ov

        self._latency = ov.compile_model(converted, "CPU", config)
        self.streams = streams
        self._outputs = len(self._latency.outputs)
        self._requests = threading.local()  # one latency request per calling thread
        self._converted = converted if streams > 1 else None  # kept until the throughput compilation
        self._config = config
        self._queue = None
        self._compiling = threading.Lock()
        self._streaming = threading.Lock()  # held by the one map running on the streams

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._latency.create_infer_request()
        request.infer([np.asarray(a, dtype=np.int64) for a in arrays])
        return self._copied_outputs(request)

    def _copied_outputs(self, request) -> list[np.ndarray]:
        """A request's outputs as float32 arrays of their own (the request's buffers are reused)."""
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in range(self._outputs)]

    def map(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[np.ndarray]]:
        """The outputs of each batch, in order (each batch's outputs are those of a call on it
        alone). With several streams and at least :data:`STREAMED_BATCHES` batches, each stream
        takes the next batch as soon as it is free, and outputs are yielded as soon as those
        before them are; fewer batches, or a call made while another thread's holds the streams,
        run one after another on all cores."""
        batches = iter(batches)
        first = list(itertools.islice(batches, STREAMED_BATCHES))
        if self.streams < 2 or len(first) < STREAMED_BATCHES or not self._streaming.acquire(blocking=False):
            yield from (self(arrays) for arrays in itertools.chain(first, batches))
            return
        try:
            yield from self._streamed(itertools.chain(first, batches))
        finally:
            self._streaming.release()

    def _streams_queue(self):
        """The throughput compilation's requests, one per stream (compiled on first use)."""
        import openvino as ov

        with self._compiling:
            if self._queue is None:
                config = self._config | {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(self.streams)}
                self._queue = ov.AsyncInferQueue(ov.compile_model(self._converted, "CPU", config), self.streams)
                self._converted = None
        return self._queue

    def _streamed(self, batches: Iterator[Sequence[np.ndarray]]) -> Iterator[list[np.ndarray]]:
        queue = self._streams_queue()
        done: dict[int, list[np.ndarray]] = {}

        def finished(request, index: int) -> None:  # copy out before the request takes the next batch
            done[index] = self._copied_outputs(request)

        queue.set_callback(finished)
        started = following = 0
        try:
            for arrays in batches:
                queue.start_async([np.asarray(a, dtype=np.int64) for a in arrays], userdata=started)  # waits for a free stream
                started += 1
                while following in done:
                    yield done.pop(following)
                    following += 1
        finally:  # also when the caller stops early: no request outlives the call
            queue.wait_all()
        while following in done:
            yield done.pop(following)
            following += 1
        if following < started:
            raise RuntimeError(f"OpenVINO returned no outputs for {started - following} of {started} batches")


def compile_module(module, inputs: int, precision: str, streams: int = 1, threads: int | None = None) -> CompiledModule:
    """``module`` (taking ``inputs`` int64 tensors of one shape: ids, token types, mask) compiled
    for the CPU in ``precision`` (``bf16`` or ``fp32``), for latency and, with ``streams`` > 1,
    for throughput as well (:class:`CompiledModule`); on ``threads`` threads in all where given
    (a Ray actor's share of a node), else on all cores."""
    return compile_converted(convert_module(module, inputs), precision, streams, threads)


def convert_module(module, inputs: int):
    """``module`` converted to an OpenVINO model taking ``inputs`` int64 tensors of any batch and length."""
    import openvino as ov
    import torch

    example = tuple(torch.ones(EXAMPLE_SHAPE, dtype=torch.long) for _ in range(inputs))
    with torch.no_grad(), warnings.catch_warnings(), _without_telemetry():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation and tracer notes: conversion's, not the user's
        return ov.convert_model(module, example_input=example)


def compile_converted(converted, precision: str, streams: int = 1, threads: int | None = None) -> CompiledModule:
    """A converted model compiled as :func:`compile_module` compiles: in bf16 or fp32 (a model
    quantised to int8 runs its int8 operations in int8 under either)."""
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if threads:
        streams = max(1, min(streams, threads))
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return CompiledModule(converted, config, streams)


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
