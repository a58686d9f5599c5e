"""What `qa serve` serves: one index and one reader, loaded once, questions answered through a
:class:`MicroBatcher`, and a replaced index swapped in without downtime.

The index is watched (one ``stat`` per ``watch_interval``); when ``qa index`` replaces it, the new
one is opened and loaded on a background thread while the old one keeps answering, and the worker
swaps it in between two batches: a batch runs wholly on one index, and nothing fails.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from qa.index import Index
from qa.pipeline import QUESTION_BATCH, Pipeline
from qa.reader import Reader
from qa.retriever import DEFAULT_RETRIEVER, RETRIEVERS
from qa.server.batcher import MicroBatcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceOptions:
    """The models and the batching of a server (its HTTP settings are :class:`ServerSettings`)."""

    index: Path | None = None
    reader: str | None = None
    device: str | None = None
    precision: str = "auto"
    backend: str = "auto"
    max_queue: int = 32
    max_batch: int = QUESTION_BATCH
    batch_window: float = 0.005
    watch_interval: float = 1.0


class Service:
    """Loads the models on a thread (:meth:`start`); :attr:`ready` once they are."""

    def __init__(self, options: ServiceOptions, on_batch=None, on_ready=None):
        self.options = options
        self._on_ready = on_ready
        self.error: str | None = None
        self.index: Index | None = None
        self.reader: Reader | None = None
        self.batcher: MicroBatcher | None = None
        self._on_batch = on_batch
        self._pipelines: dict[str, Pipeline] = {}
        self._fresh: Index | None = None  # a replacement, loaded, waiting for the next batch
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def start(self) -> None:
        threading.Thread(target=self._load, name="qa-load", daemon=True).start()

    def load(self) -> None:
        """Load the index (every part) and the reader, then start answering."""
        o = self.options
        started = time.perf_counter()
        pipeline = Pipeline(o.index, reader=o.reader, retriever=DEFAULT_RETRIEVER, device=o.device, precision=o.precision, backend=o.backend,
                            reopen_replaced=False)
        self.index, self.reader = pipeline.index.load(), pipeline.reader
        self._pipelines = {DEFAULT_RETRIEVER: pipeline}
        self.batcher = MicroBatcher(self.pipeline, max_queue=o.max_queue, max_batch=o.max_batch, window=o.batch_window,
                                    before_batch=self._swap_if_replaced, on_batch=self._on_batch)
        threading.Thread(target=self._watch, name="qa-index-watch", daemon=True).start()
        logger.info("ready in %.1f s: %s (generation %d), reader %s", time.perf_counter() - started, self.index.path,
                    self.index.generation, self.reader.name if self.reader else None)

    def _load(self) -> None:
        try:
            self.load()
        except Exception as error:  # noqa: BLE001 - reported by /ready and the log, not a crash
            self.error = str(error)
            logger.error("cannot serve: %s", error)
        if self._on_ready:
            self._on_ready(self)

    def pipeline(self, retriever: str) -> Pipeline:
        """The pipeline of ``retriever`` over the current index (made on first use; all share
        the index and the reader)."""
        if retriever not in RETRIEVERS:
            raise KeyError(retriever)
        if retriever not in self._pipelines:
            self._pipelines[retriever] = Pipeline(self.index, reader=self.reader, retriever=retriever, reopen_replaced=False)
        return self._pipelines[retriever]

    def close(self) -> None:
        self._stopping.set()
        if self.batcher:
            self.batcher.close()

    def _watch(self) -> None:
        while not self._stopping.wait(self.options.watch_interval):
            index = self.index
            if self._fresh is not None or index is None or index.is_current():
                continue
            try:
                fresh = index.reopen().load()
            except Exception as error:  # noqa: BLE001 - e.g. caught mid-replacement: keep serving, look again
                logger.warning("the index at %s changed but cannot be opened yet (%s): still serving generation %d",
                               index.path, error, index.generation)
                continue
            with self._lock:
                self._fresh = fresh

    def _swap_if_replaced(self) -> None:
        """On the worker, between batches: put a loaded replacement in service."""
        with self._lock:
            fresh, self._fresh = self._fresh, None
        if fresh is None:
            return
        old = self.index
        self._pipelines = {
            name: Pipeline(fresh, reader=self.reader, retriever=name, reopen_replaced=False) for name in self._pipelines
        }
        self.index = fresh
        logger.warning("the index at %s was replaced: now serving generation %d (was %d)", fresh.path, fresh.generation,
                       old.generation if old else 0)
