"""Writing a sharded index (``LayoutOptions.shard_passages``; docs/INDEX_FORMAT.md): the build's
documents go into shards of at most N passages, each written as an ordinary index in
``shards/NNN`` of the staging folder (its passage store, BM25 and dense parts, and a manifest of
its own), and the index's manifest lists them. Adding to a sharded index keeps its shards (hard
links: index files never change once written) and writes the new documents into new ones; an
unsharded index that is added to this way becomes shard 0.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from qa.corpora import Document, ReadReport
from qa.embedding import Embedder
from qa.index import IndexWriter, PassageStore, layout
from qa.index.shards import ShardedStore
from qa.index.write import write_manifest
from qa.indexer.stages import Parts


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


class ShardedParts:
    """What a sharded build streams into: the kept shards of the index added to, then new shards
    of at most ``limit`` passages, each finished (``finish(parts)`` writes its BM25 and dense
    parts and returns its manifest content) as soon as it is full. Offers the interface of
    :class:`Parts` that the build's ingest uses."""

    def __init__(self, writer: IndexWriter, limit: int | None, dim: int | None, embedder: Embedder | None,
                 finish: Callable[[Parts], dict[str, Any]]):
        self.writer, self.limit, self.dim, self.embedder, self.finish = writer, limit, dim, embedder, finish
        self.shards: list[dict[str, Any]] = self._keep_previous()
        kept = [PassageStore(writer.staging / entry["path"] / layout.STORE) for entry in self.shards]
        self.kept_store = ShardedStore(kept, [entry["passages"] for entry in self.shards]) if kept else None
        self.kept_passages = sum(entry["passages"] for entry in self.shards)
        self.kept_words = bool(self.shards)
        self.current: Parts | None = None
        self.finished_passages = 0

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
        return [{"path": path, "documents": counts["documents"], "passages": counts["passages"], "build_id": previous.get("build_id")}]

    @property
    def passages(self) -> int:
        return self.kept_passages + self.new_passages

    @property
    def new_passages(self) -> int:
        return self.finished_passages + (self.current.passages if self.current is not None else 0)

    @property
    def has_words(self) -> bool:
        return self.kept_words or (self.current is not None and self.current.has_words)

    @property
    def documents(self) -> int:
        return sum(entry["documents"] for entry in self.shards)

    def add_document(self, doc: Document, windows: Iterable[tuple[int, int]], report: ReadReport, vectors: np.ndarray | None = None) -> bool:
        if self.current is None:
            folder = self.writer.staging / layout.shard_dir(len(self.shards))
            folder.mkdir(parents=True)
            self.current = Parts(folder, self.dim, self.embedder)
        added = self.current.add_document(doc, windows, report, vectors)
        if self.limit is not None and self.current.passages >= self.limit:
            self._finish_shard()
        return added

    def close(self) -> None:
        if self.current is not None:
            self._finish_shard()
        if self.kept_store is not None:
            self.kept_store.close()

    def _finish_shard(self) -> None:
        parts, self.current = self.current, None
        parts.close()
        if parts.passages == 0:  # its documents had no passages
            shutil.rmtree(parts.folder)
            return
        self.dim = parts.dim
        self.kept_words = self.kept_words or parts.has_words
        manifest = write_manifest(parts.folder, self.finish(parts))
        self.shards.append({"path": parts.folder.relative_to(self.writer.staging).as_posix(), "documents": parts.store.documents,
                            "passages": parts.passages, "build_id": manifest["build_id"]})
        self.finished_passages += parts.passages
