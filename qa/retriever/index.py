"""An index opened for search: manifest, passage store, and the BM25 and dense parts loaded
on first use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.device import pick_device
from qa.errors import QAError
from qa.indexer import layout
from qa.indexer.analysis import analyze
from qa.indexer.dense import open_faiss
from qa.indexer.embed import Embedder
from qa.indexer.store import PassageStore


class Index:
    """A built index directory, opened read-only."""

    def __init__(self, path: str | Path | None = None, *, device: str | None = None):
        self.path = Path(path) if path is not None else layout.default_index_dir()
        self.manifest: dict[str, Any] = layout.read_manifest(self.path)
        self.device = device
        missing = [
            name
            for name in (layout.STORE, layout.BM25_DIR, layout.VECTORS)
            if not (self.path / name).exists()
        ]
        if missing:
            raise QAError(
                f"index {str(self.path)!r} is incomplete (missing {', '.join(missing)}): rebuild it with `qa index`"
            )
        self.store = PassageStore(self.path / layout.STORE)
        self.question_vector = functools.lru_cache(maxsize=1024)(self._question_vector)
        # One entry: `Pipeline.ask` scores the question's passages right after BM25 retrieval
        # scored every passage for it (a full pass over the index, about 5 ms at 1M passages).
        self.bm25_scores = functools.lru_cache(maxsize=1)(self._bm25_scores)

    def __len__(self) -> int:
        return int(self.manifest["counts"]["passages"])

    @functools.cached_property
    def bm25(self):
        import bm25s

        return bm25s.BM25.load(self.path / layout.BM25_DIR, mmap=True, show_progress=False)

    @functools.cached_property
    def vectors(self) -> np.ndarray:
        """Passage vectors as stored (float16, unit length), memory-mapped."""
        return np.load(self.path / layout.VECTORS, mmap_mode="r", allow_pickle=False)

    @functools.cached_property
    def faiss(self):
        """The FAISS index the manifest names: exact (built now from the vectors) or approximate
        (read from disk); on the GPU when this index's device is CUDA and faiss supports it."""
        return open_faiss(self.vectors, self.manifest["dense"], self.path / layout.FAISS_FILE.rsplit("/", 1)[0], pick_device(self.device))

    @functools.cached_property
    def embedder(self) -> Embedder:
        """The model that embedded the passages, to embed questions the same way."""
        return Embedder(self.manifest["dense"]["model"], device=self.device)

    def _question_vector(self, question: str) -> np.ndarray:
        vector = self.embedder.encode([question])[0]
        vector.setflags(write=False)
        return vector

    def _bm25_scores(self, question: str) -> np.ndarray | None:
        """BM25 scores of every passage for ``question`` (read-only); None when no question term
        is indexed."""
        ids = self.bm25.get_tokens_ids(analyze(question))
        if not ids:
            return None
        scores = self.bm25.get_scores_from_ids(ids)
        scores.setflags(write=False)
        return scores

    def passage_scores(self, question: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Exact BM25 scores and embedding cosines of the passages at ``indices`` for ``question``,
        whichever retriever found them."""
        indices = np.asarray(indices, dtype=np.int64)
        bm25 = self.bm25_scores(question)
        lexical = bm25[indices] if bm25 is not None else np.zeros(len(indices), np.float32)
        dense = self.vectors[indices].astype(np.float32) @ self.question_vector(question)
        return lexical.astype(np.float32), dense

    def close(self) -> None:
        self.store.close()
