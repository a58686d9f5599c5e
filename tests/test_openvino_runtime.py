"""qa.openvino_runtime: a module compiled for one stream and for several, and which one a call runs on."""

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'qa[openvino]')")
torch = pytest.importorskip("torch")

from qa import openvino_runtime  # noqa: E402
from qa.openvino_runtime import STREAMED_BATCHES, CompiledModule, compile_module  # noqa: E402

from conftest import errors_in_threads  # noqa: E402


class Scaled(torch.nn.Module):
    """Outputs that tell batches apart: each id times 2 plus its type, masked, and their row sums."""

    def forward(self, ids, types, mask):
        values = (ids.float() * 2 + types.float()) * mask.float()
        return values, values.sum(dim=1)


def batches(count: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(count)
    out = []
    for i in range(count):
        rows, length = 1 + i % 3, 3 + (7 * i) % 11  # shapes differ from batch to batch
        ids = rng.integers(0, 100, size=(rows, length))
        out.append([ids, rng.integers(0, 2, size=(rows, length)), (rng.random((rows, length)) > 0.2).astype(np.int64)])
    return out


def expected(arrays):
    values = (arrays[0] * 2 + arrays[1]) * arrays[2]
    return [values, values.sum(axis=1)]


@pytest.fixture(scope="module")
def compiled():
    return {streams: compile_module(Scaled(), 3, "fp32", streams) for streams in (1, 2)}


@pytest.mark.parametrize("count", [0, 1, STREAMED_BATCHES - 1, STREAMED_BATCHES, 3 * STREAMED_BATCHES + 1])
def test_map_gives_each_batch_its_own_outputs_in_order(compiled, count, monkeypatch):
    calls = []
    one_at_a_time = CompiledModule.__call__
    monkeypatch.setattr(CompiledModule, "__call__", lambda self, arrays: calls.append(1) or one_at_a_time(self, arrays))
    for streams, module in compiled.items():
        calls.clear()
        inputs = batches(count)
        outputs = list(module.map(iter(inputs)))  # an iterator, as the embedder hands them
        assert len(outputs) == count
        for arrays, got in zip(inputs, outputs):
            for value, want in zip(got, expected(arrays)):
                assert value.dtype == np.float32
                np.testing.assert_allclose(value, want, rtol=1e-6)
        # a few batches run one after another on all cores; many on the streams, when there are several
        streamed = streams > 1 and count >= STREAMED_BATCHES
        assert len(calls) == (0 if streamed else count)


def test_a_map_stopped_early_leaves_the_streams_free(compiled):
    module = compiled[2]
    inputs = batches(3 * STREAMED_BATCHES)
    outputs = module.map(inputs)
    np.testing.assert_allclose(next(outputs)[1], expected(inputs[0])[1], rtol=1e-6)
    outputs.close()  # the caller gives up: the batches in flight finish, and the next call runs as usual
    again = list(module.map(inputs))
    np.testing.assert_allclose(again[-1][1], expected(inputs[-1])[1], rtol=1e-6)


def test_threads_cap_the_streams(monkeypatch):
    assert compile_module(Scaled(), 3, "fp32", streams=3, threads=1).streams == 1
    assert compile_module(Scaled(), 3, "fp32", streams=3, threads=2).streams == 2
    monkeypatch.setattr(openvino_runtime, "STREAMED_BATCHES", 1)  # even one batch on the streams: still its own outputs
    module = compile_module(Scaled(), 3, "fp32", streams=2)
    inputs = batches(2)
    assert [o[1].tolist() for o in module.map(inputs)] == [expected(a)[1].astype(np.float32).tolist() for a in inputs]


def test_the_streams_are_compiled_when_a_call_first_needs_them():
    module = compile_module(Scaled(), 3, "fp32", streams=2)
    list(module.map(batches(STREAMED_BATCHES - 1)))
    module(batches(1)[0])
    assert module._queue is None  # a process reading one question at a time never compiles them
    list(module.map(batches(STREAMED_BATCHES)))
    assert module._queue is not None and module._converted is None  # compiled once, the converted model let go


def test_threads_may_share_one_compiled_module(compiled):
    """A library user answering on several threads with one pipeline: each call still gets its own
    batches' outputs, whether it runs on the streams or, while another call holds them, on all cores."""
    module = compiled[2]
    counts = (1, 1, 3 * STREAMED_BATCHES, 3 * STREAMED_BATCHES + 2)  # batches per call, by thread
    inputs = [batches(count) for count in counts]

    def work(thread: int) -> None:
        for _ in range(10):
            got = [o[1] for o in module.map(inputs[thread])] if counts[thread] > 1 else [module(inputs[thread][0])[1]]
            for arrays, value in zip(inputs[thread], got, strict=True):
                np.testing.assert_allclose(value, expected(arrays)[1], rtol=1e-6)

    assert errors_in_threads(work, len(counts)) == []
