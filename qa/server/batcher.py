"""Questions that arrive together are read together: a bounded queue in front of one worker thread
that answers whatever has queued up in one :meth:`Pipeline.ask_batch` call per setting.

While the worker reads a batch, new questions wait in the queue; the next batch takes them all (up
to ``max_batch``) at once, so batches grow with the load and throughput with them. When the worker
is idle, it waits ``window`` seconds after a first question for others to join it. A full queue
refuses new questions at once (:class:`Overloaded`, HTTP 503) instead of letting latency grow
without bound; a question whose caller has given up is dropped before it is read.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from qa.pipeline import Pipeline

logger = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full: try again later."""


@dataclass(frozen=True)
class Question:
    text: str
    top_k: int
    answers: int
    retriever: str
    where: tuple[str, ...] = ()
    arrived: float = field(default_factory=time.perf_counter, compare=False)

    @property
    def setting(self) -> tuple[str, int, int, tuple[str, ...]]:
        return (self.retriever, self.top_k, self.answers, self.where)


class MicroBatcher:
    """Answers :class:`Question` s on one worker thread, in batches.

    ``pipelines(retriever)`` gives the pipeline of a retriever (all share one index and reader);
    ``before_batch()`` runs on the worker before each batch (the server swaps a replaced index in
    there, so that no batch ever mixes two). ``on_batch(size, seconds)`` reports each batch.
    """

    def __init__(
        self,
        pipelines: Callable[[str], Pipeline],
        *,
        max_queue: int = 32,
        max_batch: int = 16,
        window: float = 0.005,
        before_batch: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self._pipelines = pipelines
        self._queue: queue.Queue[tuple[Question, Future]] = queue.Queue(maxsize=max_queue)
        self.max_batch = max_batch
        self.window = window
        self._before_batch = before_batch or (lambda: None)
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._run, name="qa-batcher", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        """Questions waiting (not counting the batch being read)."""
        return self._queue.qsize()

    def submit(self, question: Question) -> Future:
        """Queue ``question``; the future gets its :class:`Prediction` (or the exception that
        answering it raised). Raises :class:`Overloaded` when the queue is full."""
        future: Future = Future()
        try:
            self._queue.put_nowait((question, future))
        except queue.Full:
            raise Overloaded(f"{self._queue.maxsize} questions are already waiting") from None
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking batches; questions still queued are cancelled."""
        self._stopping.set()
        self._worker.join(timeout)
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                break
            future.cancel()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.perf_counter() + self.window
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:  # what is queued joins at once; more only while the window lasts
                    batch.append(self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            live = [(q, f) for q, f in batch if f.set_running_or_notify_cancel()]  # callers that gave up are dropped
            if live:
                self._answer(live)

    def _answer(self, batch: list[tuple[Question, Future]]) -> None:
        started = time.perf_counter()
        try:
            self._before_batch()
        except Exception as error:  # noqa: BLE001 - reported to every caller of this batch
            for _, future in batch:
                future.set_exception(error)
            return
        groups: dict[tuple[str, int, int, tuple[str, ...]], list[tuple[Question, Future]]] = {}
        for item in batch:
            groups.setdefault(item[0].setting, []).append(item)
        for (retriever, top_k, answers, where), items in groups.items():
            try:
                predictions = self._pipelines(retriever).ask_batch([q.text for q, _ in items], top_k, answers, where=where)
            except Exception as error:  # noqa: BLE001 - a failed batch fails its callers, not the worker
                logger.warning("a batch of %d questions failed: %s", len(items), error)
                for _, future in items:
                    future.set_exception(error)
                continue
            for (question, future), prediction in zip(items, predictions):
                prediction.seconds["queue"] = started - question.arrived
                prediction.reading = None  # not sent; not kept
                future.set_result(prediction)
        self._on_batch(len(batch), time.perf_counter() - started)

