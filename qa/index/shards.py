"""A sharded index searched as one: each shard is an ordinary index (its own passage store, BM25
and dense parts, numbered from 0); passage ``i`` of shard ``s`` is passage ``offsets[s] + i`` of
the whole. The store, the vectors and the dense search are put together here so that
:class:`qa.index.Index` offers a sharded index the interface of an unsharded one.

BM25 scores are made those of one index with the collection's statistics (:class:`ShardedBM25`):
each shard stored its scores with its own inverse document frequencies and average passage
length, which are replaced per query term by those of all shards together (the document
frequencies are read from the shards' matrices, as a distributed search engine's global
statistics pass does; the lengths from ``bm25/lengths.npy``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from qa.corpora import Document
from qa.index.store import Passage, PassageStore


def offsets_of(sizes: Sequence[int]) -> np.ndarray:
    """The first passage number of each shard, and the total at the end."""
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])


class _Split:
    """Global passage numbers grouped by shard: ``for shard, local, where in split(ids)``."""

    def __init__(self, offsets: np.ndarray):
        self.offsets = offsets

    def __call__(self, ids) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        shard_of = np.searchsorted(self.offsets, ids, side="right") - 1
        for shard in np.unique(shard_of):
            where = np.flatnonzero(shard_of == shard)
            yield int(shard), ids[where] - self.offsets[shard], where


class ShardedStore:
    """The shards' passage stores as one :class:`PassageStore` (read-only)."""

    def __init__(self, stores: Sequence[PassageStore], sizes: Sequence[int]):
        self.stores = list(stores)
        self.offsets = offsets_of(sizes)
        self._split = _Split(self.offsets)

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        return sum(store.count() for store in self.stores)

    def get(self, indices: Sequence[int]) -> list[Passage]:
        found: list[Passage | None] = [None] * len(indices)
        for shard, local, where in self._split(indices):
            offset = int(self.offsets[shard])
            for at, passage in zip(where, self.stores[shard].get(local.tolist())):
                found[at] = dataclasses.replace(passage, idx=passage.idx + offset)
        return found  # type: ignore[return-value]

    def passages_with_content(self, sha256: str) -> list[Passage]:
        for store, offset in zip(self.stores, self.offsets.tolist()):
            passages = store.passages_with_content(sha256)
            if passages:
                return [dataclasses.replace(p, idx=p.idx + offset) for p in passages]
        return []

    def document(self, doc_id: str) -> Document | None:
        return next((doc for store in self.stores if (doc := store.document(doc_id)) is not None), None)

    def holds(self, doc: Document) -> str | None:
        return next((held for store in self.stores if (held := store.holds(doc)) is not None), None)

    def holds_content(self, doc: Document) -> str | None:
        return next((held for store in self.stores if (held := store.holds_content(doc)) is not None), None)

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(doc_ids))
        found: dict[str, dict] = {}
        for store in self.stores:
            found = {**store.metadata(i for i in ids if i not in found), **found}
        return found

    def close(self) -> None:
        for store in self.stores:
            store.close()


class ShardedVectors:
    """The shards' stored vectors as one read-only array: ``vectors[ids]`` gathers rows."""

    def __init__(self, parts: Sequence[np.ndarray]):
        self.parts = list(parts)
        self.offsets = offsets_of([len(p) for p in self.parts])
        self._split = _Split(self.offsets)
        self.shape = (int(self.offsets[-1]), int(self.parts[0].shape[1]))
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        scalar = np.ndim(rows) == 0
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for shard, local, where in self._split(rows):
            out[where] = self.parts[shard][local]
        return out[0] if scalar else out


class ShardedSearch:
    """The shards' dense indexes searched as one (each for its best ``k``, merged by score)."""

    def __init__(self, indexes: Sequence):
        self.indexes = list(indexes)
        self.offsets = offsets_of([i.ntotal for i in self.indexes])
        self.ntotal, self.d = int(self.offsets[-1]), self.indexes[0].d

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        all_scores, all_ids = [], []
        for index, offset in zip(self.indexes, self.offsets.tolist()):
            scores, ids = index.search(queries, min(k, index.ntotal))
            all_scores.append(np.where(ids >= 0, scores, -np.inf))
            all_ids.append(np.where(ids >= 0, ids + offset, -1))
        scores, ids = np.concatenate(all_scores, axis=1), np.concatenate(all_ids, axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, axis=1), np.take_along_axis(ids, best, axis=1)


def _idf(passages: int, holding: int) -> np.float32:
    """bm25s's (Lucene's) inverse document frequency, rounded to float32 as its stored scores are."""
    return np.float32(math.log(1 + (passages - holding + 0.5) / (holding + 0.5)))


class ShardedBM25:
    """BM25 over the shards' bm25s models (in shard order) as if they were one index: each query
    term's stored scores are rescaled from the shard's idf to that of all shards together and,
    where the shards stored their passage lengths (``lengths``), from the shard's average passage
    length to the average of all shards (exactly the unsharded scores, up to float rounding);
    shards without them keep their own length normalisation."""

    def __init__(self, models: Sequence, lengths: Sequence[np.ndarray | None], k1: float, b: float):
        self.models, self.k1, self.b = list(models), k1, b
        self.passages = sum(int(m.scores["num_docs"]) for m in self.models)
        self.lengths = list(lengths) if all(x is not None for x in lengths) else None
        if self.lengths is not None:
            totals = [float(np.sum(x, dtype=np.float64)) for x in self.lengths]
            self.averages = [t / max(len(x), 1) for t, x in zip(totals, self.lengths)]
            self.average = sum(totals) / max(self.passages, 1)

    def scores(self, terms: list[str]) -> np.ndarray | None:
        """Scores of every passage for a query of analysed ``terms``; None when no term is in any shard."""
        counts = Counter(terms)
        columns, holding = [], Counter()
        for model in self.models:
            indptr = model.scores["indptr"]
            found = {t: model.vocab_dict[t] for t in counts if t and t in model.vocab_dict}
            for term, column in found.items():
                holding[term] += int(indptr[column + 1] - indptr[column])
            columns.append(found)
        if not holding:
            return None
        parts = []
        for shard, (model, found) in enumerate(zip(self.models, columns)):
            n = int(model.scores["num_docs"])
            indptr, data, indices = model.scores["indptr"], model.scores["data"], model.scores["indices"]
            scores = np.zeros(n, dtype=np.float32)
            for term, column in found.items():
                lo, hi = int(indptr[column]), int(indptr[column + 1])
                rows, stored = indices[lo:hi], np.asarray(data[lo:hi], dtype=np.float64)
                own, every = _idf(n, hi - lo), _idf(self.passages, holding[term])
                if self.lengths is None:
                    rescaled = stored * (float(every) / float(own))
                else:  # stored = idf * tf / (tf + norm): recover tf / (tf + norm), renormalise the length
                    length = np.asarray(self.lengths[shard][rows], dtype=np.float64)
                    norm_own = self.k1 * (1 - self.b + self.b * length / self.averages[shard])
                    norm_all = self.k1 * (1 - self.b + self.b * length / self.average)
                    part = stored / float(own)
                    rescaled = float(every) * part * norm_own / (part * norm_own + (1 - part) * norm_all)
                scores[rows] += (counts[term] * rescaled).astype(np.float32)
            parts.append(scores)
        return np.concatenate(parts)
