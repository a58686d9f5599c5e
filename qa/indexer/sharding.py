"""Writing a sharded index (``LayoutOptions.shard_passages``; docs/INDEX_FORMAT.md): the build's
documents go into shards of N passages or just over, each written as an ordinary index in
``shards/NNN`` of the staging folder (its passage store, BM25 and dense parts, and a manifest of
its own), and the index's manifest lists them. Adding to a sharded index keeps its shards (hard
links: index files never change once written) and writes the new documents into new ones; an
unsharded index that is added to this way becomes shard 0.

A shard is written by a :class:`LocalShard` in the build's process, or, in a Ray build, by a
writer actor (:mod:`qa.indexer.ray_build`), so that shards are written in parallel while the
build goes on: both run :func:`finish_shard`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.corpora import Document, ReadReport
from qa.embedding import Embedder
from qa.index import IndexWriter, PassageStore, layout
from qa.index.shards import ShardedStore
from qa.index.write import write_manifest
from qa.indexer.options import LayoutOptions
from qa.indexer.stages import Parts, embedded_precision, manifest_content, write_search_parts


SHARDS_IN_FLIGHT = 2  # new shards being written at once (a Ray build's writer actors); then the build waits


def shard_limit(previous: dict[str, Any] | None, requested: int | None) -> int | None:
    """Passages per new shard: as requested, else the sharded index's own limit (None: no limit
    was set; new documents then form one shard); None for an unsharded build."""
    if requested is not None:
        return requested
    if previous is not None and layout.is_sharded(previous):
        return previous.get("shard_passages")
    return None


def is_sharded_build(previous: dict[str, Any] | None, requested: int | None) -> bool:
    return requested is not None or (previous is not None and layout.is_sharded(previous))


@dataclass(frozen=True)
class ShardSettings:
    """What every shard of a build is written with (sent to writer actors as it is)."""

    layout: LayoutOptions
    passage_config: dict[str, Any]
    model: str
    corpus: dict[str, Any]


def finish_shard(parts: Parts, settings: ShardSettings, say: Callable[[str], None] = lambda what: None,
                 precision: str | None = None) -> dict[str, Any] | None:
    """Close a shard's parts, write its BM25 and dense indexes and its manifest (``precision``: what
    its passages were embedded in); its entry for the index's manifest (with ``dim`` and
    ``has_words`` for the build), or None (and its folder removed) when it holds no passage."""
    parts.close()
    if parts.passages == 0:  # its documents had no passages
        shutil.rmtree(parts.folder)
        return None
    description = write_search_parts(parts, settings.layout, say)
    counts = {"documents": parts.store.documents, "passages": parts.passages}
    manifest = write_manifest(parts.folder, manifest_content(None, settings.corpus, counts, settings.passage_config,
                                                             settings.model, parts.dim, description, precision))
    return {**counts, "build_id": manifest["build_id"], "dim": parts.dim, "has_words": parts.has_words,
            "faiss_index": description["faiss_index"]}


class LocalShard:
    """A shard written in this process."""

    def __init__(self, folder: Path, dim: int | None, embedder: Embedder | None, settings: ShardSettings, say: Callable[[str], None]):
        self.parts, self.settings, self.say = Parts(folder, dim, embedder), settings, say

    @property
    def passages(self) -> int:
        return self.parts.passages

    def add_document(self, doc: Document, windows: Iterable[tuple[int, int]], report: ReadReport, vectors: np.ndarray | None = None) -> bool:
        return self.parts.add_document(doc, windows, report, vectors)

    def finish(self, precision: str | None = None) -> Callable[[], dict[str, Any] | None]:
        entry = finish_shard(self.parts, self.settings, self.say, precision)
        return lambda: entry


class ShardedParts:
    """What a sharded build streams into: the kept shards of the index added to, then new shards
    of ``limit`` passages or just over, each finished as soon as it is full. ``open_shards`` new
    shards fill at once: each document goes to the open one with the fewest passages (the first
    of those), and a full one's place is taken by the next shard. ``open_shard(folder, dim)``
    makes a shard (a :class:`LocalShard`, or a Ray writer); its ``finish()`` returns a function
    that gives the shard's entry once it is written. Offers the interface of :class:`Parts` that
    the build's ingest uses. ``embedded``: the precisions the build has embedded in so far, which a
    shard's manifest records."""

    def __init__(self, writer: IndexWriter, limit: int | None, dim: int | None, open_shard: Callable[[Path, int | None], Any],
                 open_shards: int = 1, embedded: set[str] | None = None):
        self.writer, self.limit, self.dim, self.open_shard = writer, limit, dim, open_shard
        self.embedded = embedded if embedded is not None else set()
        self.shards: list[dict[str, Any]] = self._keep_previous()
        kept = [PassageStore(writer.staging / entry["path"] / layout.STORE) for entry in self.shards]
        self.kept_store = ShardedStore(kept, [entry["passages"] for entry in self.shards]) if kept else None
        self.kept_passages = sum(entry["passages"] for entry in self.shards)
        self.has_words = bool(self.shards)
        self.open: list[tuple[str, Any] | None] = [None] * open_shards  # (path, shard) of the shards being filled
        self.numbered = len(self.shards)  # shard folders named so far
        self.finishing: list[tuple[str, Callable[[], dict[str, Any] | None]]] = []
        self.written, self.entries = 0, []  # finished shards waited for, and their entries
        self.sent_passages = 0  # of finished new shards

    def _keep_previous(self) -> list[dict[str, Any]]:
        previous = self.writer.previous
        if previous is None:
            return []
        if layout.is_sharded(previous):
            for entry in previous["shards"]:
                self.writer.link_previous(entry["path"], entry["path"])
            return [dict(entry) for entry in previous["shards"]]
        path = layout.shard_dir(0)
        self.writer.link_previous("", path)
        counts = previous["counts"]
        return [{"path": path, "documents": counts["documents"], "passages": counts["passages"], "build_id": previous.get("build_id"),
                 "faiss_index": previous["dense"].get("faiss_index", "IndexFlatIP")}]

    @property
    def passages(self) -> int:
        return self.kept_passages + self.new_passages

    @property
    def new_passages(self) -> int:
        return self.sent_passages + sum(shard.passages for _, shard in filter(None, self.open))

    @property
    def documents(self) -> int:
        return sum(entry["documents"] for entry in self.shards)

    def add_document(self, doc: Document, windows: Iterable[tuple[int, int]], report: ReadReport, vectors: np.ndarray | None = None) -> bool:
        slot = min(range(len(self.open)), key=lambda i: self.open[i][1].passages if self.open[i] else 0)
        if self.open[slot] is None:
            path = layout.shard_dir(self.numbered)
            self.numbered += 1
            (self.writer.staging / path).mkdir(parents=True)
            self.open[slot] = (path, self.open_shard(self.writer.staging / path, self.dim))
        shard = self.open[slot][1]
        if vectors is not None and self.dim is None:
            self.dim = int(vectors.shape[1])
        added = shard.add_document(doc, windows, report, vectors)
        if self.limit is not None and shard.passages >= self.limit:
            self._finish_shard(slot)
        return added

    def _finish_shard(self, slot: int) -> None:
        path, shard = self.open[slot]
        self.open[slot] = None
        self.sent_passages += shard.passages
        self.finishing.append((path, shard.finish(embedded_precision(None, self.embedded))))
        while len(self.finishing) - self.written > max(SHARDS_IN_FLIGHT, len(self.open)):  # bounded: wait for the oldest
            self._written(self.written)

    def _written(self, number: int) -> None:
        path, result = self.finishing[number]
        entry = result()
        self.written += 1
        if entry is not None:
            self.dim = entry.pop("dim")
            self.has_words = self.has_words or entry.pop("has_words")
            self.entries.append({"path": path, **entry})

    def close(self) -> None:
        """Finish the open shards and wait for every shard to be written; the manifest lists them
        in the order of their folders' numbers."""
        for slot, opened in enumerate(self.open):
            if opened is not None:
                self._finish_shard(slot)
        while self.written < len(self.finishing):
            self._written(self.written)
        self.shards += sorted(self.entries, key=lambda entry: int(entry["path"].rsplit("/", 1)[1]))
        self.finishing, self.entries, self.written = [], [], 0
        if self.kept_store is not None:
            self.kept_store.close()
