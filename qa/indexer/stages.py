"""The stages of a build that every way of running it shares: splitting a document into windows
(:func:`splitter`; documents split ahead on threads by :func:`split_ahead`), embedding passages
in the chunks the embedder makes (:class:`EmbeddingQueue`), skipping what an index already holds
(:func:`already_stored`), writing a document with its passages into the store, the BM25 postings
and the vectors (:class:`Parts`), then the BM25 and dense indexes (:func:`write_search_parts`)
and what the manifest says (:func:`manifest_content`).

:mod:`qa.indexer.build` runs them in one process; :mod:`qa.indexer.ray_build` runs splitting and
embedding on Ray workers and hands the results to the same :meth:`Parts.add_document`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from qa.corpora import Document, ReadReport
from qa.embedding import Embedder
from qa.index import PassageWriter, layout
from qa.index.analysis import ANALYZER_NAME
from qa.index.bm25 import BM25Writer
from qa.index.dense import build_faiss, choose_kind
from qa.index.write import utc_now
from qa.index.store import retrieval_text
from qa.index.vectors import VectorFile, VectorWriter
from qa.indexer.options import LayoutOptions
from qa.indexer.passages import Window, split_passages, split_token_windows, tokenizer_counter

logger = logging.getLogger(__name__)

BM25_K1 = 1.2
BM25_B = 0.75


class Parts:
    """The parts a build streams into: the passage store, the BM25 postings and the vectors."""

    def __init__(self, folder: Path, dim: int | None, embedder: Embedder | None, *, append: bool = False):
        """Parts written into ``folder`` (an index's staging folder, or a shard's in it); with
        ``append`` the store there, a copy of the previous index's, is numbered on."""
        self.folder = folder
        self.store = PassageWriter(folder / layout.STORE, append=append)
        self.first_new = self.store.passages
        self.bm25 = BM25Writer(folder / "bm25-scratch", BM25_K1, BM25_B)
        self._vectors_path = folder / layout.VECTORS
        self.dim = dim
        self._vectors = VectorWriter(self._vectors_path, dim) if dim is not None else None
        self.queue = EmbeddingQueue(embedder, self) if embedder is not None else None

    @property
    def passages(self) -> int:
        return self.store.passages

    @property
    def new_passages(self) -> int:
        return self.store.passages - self.first_new

    @property
    def has_words(self) -> bool:
        return bool(self.bm25.vocab)

    def add_vectors(self, rows: np.ndarray) -> None:
        """Append embedded passages' vectors; the first rows fix the dimension when it was not known."""
        if self._vectors is None:
            self.dim = int(rows.shape[1])
            self._vectors = VectorWriter(self._vectors_path, self.dim)
        self._vectors.add(rows.astype(np.float16, copy=False))

    def add_document(self, doc: Document, windows: Iterable[tuple[int, int]], report: ReadReport, vectors: np.ndarray | None = None) -> bool:
        """Store ``doc`` and its passages (``windows``: character spans, in order), analyse them
        for BM25 and embed them: through the queue, or as ``vectors`` when already embedded (one
        row per window). False (with the reason in ``report``) when the store refuses the document."""
        try:
            doc_idx = self.store.add_document(doc)
        except ValueError as err:
            report.documents -= 1
            report.skip(f"{doc.source} ({doc.id})", str(err))
            return False
        held = []
        for start, end in windows:
            held.append((start, end))
            text = retrieval_text(doc.title, doc.text[start:end])
            self.bm25.add(text)
            if vectors is None:
                self.queue.add(text)
            if len(held) == 1024:  # a long document's windows are stored as they come
                self.store.add_passages(doc_idx, held)
                held = []
        self.store.add_passages(doc_idx, held)
        if vectors is not None:
            self.add_vectors(vectors)
        return True

    def close(self) -> None:
        if self.queue is not None:
            self.queue.flush()
        if self._vectors is not None:
            self._vectors.close()
        self.store.close()


class EmbeddingQueue:
    """Passage texts waiting to be embedded, in the chunks :meth:`Embedder.encode` makes of a
    list (so that streaming gives the same vectors as one call over all passages)."""

    def __init__(self, embedder: Embedder, out: Parts):
        self.embedder, self.out = embedder, out
        self.size = embedder.chunk_size
        self.texts: list[str] = []

    def add(self, text: str) -> None:
        self.texts.append(text)
        if len(self.texts) == self.size:
            self.flush()

    def flush(self) -> None:
        if self.texts:
            self.out.add_vectors(self.encode(self.texts))
            self.texts = []

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)


def already_stored(stored, doc: Document, report: ReadReport) -> bool:
    """True (and the reason in ``report``) when ``stored`` (a passage store or writer) holds
    ``doc``, its id or its content."""
    held = stored.holds(doc)
    same_content = stored.holds_content(doc) if held is None else None
    if held is None and same_content is None:
        return False
    report.documents -= 1
    if held == "same":
        reason = "already in the index"
    elif held == "changed":
        reason = "id already in the index with other content (rebuild to replace it)"
    else:
        reason = "same content already in the index under another id"
    report.skip(f"{doc.source} ({doc.id})", reason)
    return True


def splitter(config: dict[str, Any], embedder: Embedder) -> Callable[[str], Iterable[Window]]:
    """The passage splitter a manifest's ``passages`` entry describes."""
    if config["unit"] == "words":
        return lambda text: split_passages(text, config["max_words"], config["overlap_words"])
    count = tokenizer_counter(embedder.tokenizer)
    return lambda text: split_token_windows(
        text, count, config["max_tokens"], config["overlap_tokens"], config.get("sentence_aware", True)
    )


#: Documents split ahead on threads go in groups of this many documents, or fewer holding this many
#: characters (one task each: fewer tasks, less overhead), at most two groups a thread ahead of the
#: build (memory stays bounded). On 2 cores, two threads split open-squad's paragraphs 1.61 x
#: faster than one (docs/BENCHMARKS.md, "Start-up of `qa index`, and splitting").
SPLIT_GROUP_DOCUMENTS = 16
SPLIT_GROUP_CHARACTERS = 1_000_000
#: At most this many splitting threads (all the cores up to it; not measured beyond 2 cores).
SPLIT_THREADS = 8


def split_ahead(docs: Iterable[Document], split: Callable[[str], Iterable[Window]],
                threads: int) -> Iterator[tuple[Document, Iterable[tuple[int, int]]]]:
    """Each document of ``docs`` with its windows' character spans, in order. With ``threads`` > 1
    the documents are split on that many threads ahead of the caller (the tokenizer lets go of the
    GIL), while it stores, analyses and embeds what came before; with 1, each is split here, lazily."""
    if threads <= 1:
        yield from ((doc, ((w.start, w.end) for w in split(doc.text))) for doc in docs)
        return

    def spans(group: list[Document]) -> list[list[tuple[int, int]]]:
        return [[(w.start, w.end) for w in split(doc.text)] for doc in group]

    pool = ThreadPoolExecutor(threads, thread_name_prefix="qa-split")
    pending: deque = deque()
    try:
        for group in _groups(docs):
            pending.append((group, pool.submit(spans, group)))
            if len(pending) > 2 * threads:
                group, windows = pending.popleft()
                yield from zip(group, windows.result())
        while pending:
            group, windows = pending.popleft()
            yield from zip(group, windows.result())
    finally:
        pool.shutdown(cancel_futures=True)


def _groups(docs: Iterable[Document]) -> Iterator[list[Document]]:
    """``docs`` in groups of :data:`SPLIT_GROUP_DOCUMENTS`, or fewer of :data:`SPLIT_GROUP_CHARACTERS`."""
    docs = iter(docs)
    while True:
        group, characters = [], 0
        for doc in itertools.islice(docs, SPLIT_GROUP_DOCUMENTS):
            group.append(doc)
            characters += len(doc.text)
            if characters >= SPLIT_GROUP_CHARACTERS:
                break
        if not group:
            return
        yield group


def write_search_parts(parts: Parts, options: LayoutOptions, say: Callable[[str], None] = lambda what: None) -> dict[str, Any]:
    """Write the BM25 index and the dense index into ``parts.folder`` from what the build
    streamed; returns the dense index's description for the manifest."""
    staging = parts.folder
    say("Writing the BM25 index")
    stage = time.perf_counter()
    parts.bm25.write(staging / layout.BM25_DIR)
    logger.info("wrote the BM25 index (%d terms) in %.1f s", len(parts.bm25.vocab), time.perf_counter() - stage)
    say("Writing the dense index")
    stage = time.perf_counter()
    kind = choose_kind(options.dense_index, parts.store.passages)
    description = build_faiss(VectorFile(staging / layout.VECTORS), kind, staging / layout.FAISS_FILE)  # read, not mapped
    logger.info("built the dense index (%s) in %.1f s", description["faiss_index"], time.perf_counter() - stage)
    return description


def manifest_content(previous, read, counts: dict[str, int], passage_config, model: str, dim: int, faiss_description,
                     precision: str | None = None) -> dict[str, Any]:
    """What the manifest says of this build (``write_manifest`` adds format, dates, generation and
    files); ``precision``: what the passages were embedded in (:func:`embedded_precision`)."""
    return {
        "corpus": previous["corpus"] if previous else read,
        "additions": [*previous.get("additions", []), {"added": utc_now(), **read}] if previous else [],
        "counts": counts,
        "passages": passage_config,
        "bm25": {
            "engine": "bm25s",
            "engine_version": bm25s.__version__,
            "k1": BM25_K1,
            "b": BM25_B,
            "analyzer": ANALYZER_NAME,
            "fields": "title+text",
        },
        "dense": {
            "model": model,
            "dim": dim,
            "dtype": "float16",
            "normalized": True,
            "metric": "inner_product",
            **faiss_description,
            "fields": "title+text",
            **({"precision": precision} if precision else {}),
        },
    }


def embedded_precision(previous: dict[str, Any] | None, this_build: set[str]) -> str | None:
    """The manifest's ``dense.precision``: the precisions the index's passages were embedded in
    (``"fp32"``; ``"fp32, int8"`` once an ``--add`` embedded in another), or None when an index
    added to does not record its own (built before qa recorded it)."""
    if previous is None:
        return ", ".join(sorted(this_build)) or None
    earlier = previous["dense"].get("precision")
    if earlier is None:
        return None
    return ", ".join(sorted({*earlier.split(", "), *this_build}))
