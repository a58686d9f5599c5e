"""A sharded index searched as one: each shard is an ordinary index (its own passage store, BM25
and dense parts, numbered from 0); passage ``i`` of shard ``s`` is passage ``offsets[s] + i`` of
the whole. The store, the vectors and the dense search are put together here so that
:class:`qa.index.Index` offers a sharded index the interface of an unsharded one.

BM25 scores are made those of one index with the collection's statistics (:class:`ShardedBM25`):
each shard stored its scores with its own inverse document frequencies and average passage
length, which are replaced per query term by those of all shards together (the document
frequencies are read from the shards' matrices, as a distributed search engine's global
statistics pass does; the lengths from ``bm25/lengths.npy``).

A shard may also be served by another machine (``qa serve-shard``; :mod:`qa.index.remote`): it
offers the same interfaces, and the sharded parts then ask all shards at once (:func:`parallel`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from qa.corpora import Document
from qa.index.scores import ArrayScores, ShardedScores
from qa.index.store import Passage, PassageStore
from qa.index.where import Condition

FanOut = Callable[[Callable[[Any], Any], Iterable[Any]], list] | None
"""How the sharded parts map a function over their shards: :func:`serial` on one machine,
:func:`parallel` where some shards are served by other machines (their answers are awaited
together)."""
SHARD_THREADS = 32
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def serial(function: Callable, items: Iterable) -> list:
    return [function(item) for item in items]


def parallel(function: Callable, items: Iterable) -> list:
    """``function`` over ``items`` on a shared pool of threads (in order); one item runs here."""
    global _pool
    items = list(items)
    if len(items) < 2:
        return serial(function, items)
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SHARD_THREADS, thread_name_prefix="qa-shards")
    return list(_pool.map(function, items))


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

    def __init__(self, stores: Sequence[PassageStore], sizes: Sequence[int], fan_out: FanOut = None):
        self.stores = list(stores)
        self.offsets = offsets_of(sizes)
        self._split = _Split(self.offsets)
        self.fan_out = fan_out or serial

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        return sum(self.fan_out(lambda store: store.count(), self.stores))

    def get(self, indices: Sequence[int]) -> list[Passage]:
        found: list[Passage | None] = [None] * len(indices)

        def get(group: tuple[int, np.ndarray, np.ndarray]) -> tuple[np.ndarray, list[Passage], int]:
            shard, local, where = group
            return where, self.stores[shard].get(local.tolist()), int(self.offsets[shard])

        for where, passages, offset in self.fan_out(get, list(self._split(indices))):
            for at, passage in zip(where, passages):
                found[at] = dataclasses.replace(passage, idx=passage.idx + offset)
        return found  # type: ignore[return-value]

    def _first(self, function: Callable[[Any, int], Any]) -> Any:
        """The first answer that is not empty of ``function(store, offset)`` over the shards in order."""
        shards = list(zip(self.stores, self.offsets.tolist()))
        return next((found for found in self.fan_out(lambda shard: function(*shard), shards) if found), None)

    def passages_with_content(self, sha256: str) -> list[Passage]:
        return self._first(lambda store, offset: [dataclasses.replace(p, idx=p.idx + offset)
                                                  for p in store.passages_with_content(sha256)]) or []

    def document(self, doc_id: str) -> Document | None:
        return self._first(lambda store, _: store.document(doc_id))

    def holds(self, doc: Document) -> str | None:
        return self._first(lambda store, _: store.holds(doc))

    def holds_content(self, doc: Document) -> str | None:
        return self._first(lambda store, _: store.holds_content(doc))

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(doc_ids))
        found: dict[str, dict] = {}
        for part in self.fan_out(lambda store: store.metadata(ids), self.stores):
            found = {**part, **found}  # the first shard holding a document wins
        return found

    def passages_where(self, conditions: Sequence[Condition]) -> np.ndarray:
        shards = list(zip(self.stores, self.offsets.tolist()))
        parts = self.fan_out(lambda shard: shard[0].passages_where(conditions) + shard[1], shards)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def metadata_fields(self) -> set[str]:
        return set().union(*self.fan_out(lambda store: store.metadata_fields(), self.stores))

    def close(self) -> None:
        for store in self.stores:
            store.close()


class ShardedVectors:
    """The shards' stored vectors as one read-only array: ``vectors[ids]`` gathers rows."""

    def __init__(self, parts: Sequence[np.ndarray], fan_out: FanOut = None):
        self.parts, self.fan_out = list(parts), fan_out or serial
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
        groups = list(self._split(rows))
        for (_, _, where), found in zip(groups, self.fan_out(lambda group: self.parts[group[0]][group[1]], groups)):
            out[where] = found
        return out[0] if scalar else out


class ShardedSearch:
    """The shards' dense indexes searched as one (each for its best ``k``, merged by score)."""

    def __init__(self, indexes: Sequence, fan_out: FanOut = None):
        self.indexes, self.fan_out = list(indexes), fan_out or serial
        self.offsets = offsets_of([i.ntotal for i in self.indexes])
        self.ntotal, self.d = int(self.offsets[-1]), self.indexes[0].d

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        all_scores, all_ids = [], []
        found = self.fan_out(lambda index: index.search(queries, min(k, index.ntotal)), self.indexes)
        for (scores, ids), offset in zip(found, self.offsets.tolist()):
            all_scores.append(np.where(ids >= 0, scores, -np.inf))
            all_ids.append(np.where(ids >= 0, ids + offset, -1))
        scores, ids = np.concatenate(all_scores, axis=1), np.concatenate(all_ids, axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, axis=1), np.take_along_axis(ids, best, axis=1)


def _idf(passages: int, holding: int) -> np.float32:
    """bm25s's (Lucene's) inverse document frequency, rounded to float32 as its stored scores are."""
    return np.float32(math.log(1 + (passages - holding + 0.5) / (holding + 0.5)))


@dataclass(frozen=True)
class BM25Stats:
    """What a query's BM25 scores are computed with: the collection's passage count, its average
    passage length (None: each part keeps its own length normalisation) and how many of its
    passages hold each query term (what a distributed search engine's statistics pass gathers)."""

    passages: int
    average_length: float | None
    holding: dict[str, int]

    def as_dict(self) -> dict:
        return {"passages": self.passages, "average_length": self.average_length, "holding": self.holding}


class BM25Part:
    """The BM25 part of one unsharded index (its bm25s model and, where stored, its passage
    lengths), scoring a query with a whole collection's statistics: each query term's stored
    scores are rescaled from this part's idf to the collection's and, where the lengths are
    known, from this part's average passage length to the collection's (exactly the scores of
    one index of the whole collection, up to float rounding)."""

    def __init__(self, model, lengths: np.ndarray | None, k1: float, b: float):
        self.model, self.lengths, self.k1, self.b = model, lengths, k1, b
        self.passages = int(model.scores["num_docs"])
        self.total_length = None if lengths is None else float(np.sum(lengths, dtype=np.float64))

    def holding(self, terms: Iterable[str]) -> dict[str, int]:
        """How many of this part's passages hold each of ``terms`` (terms it lacks left out)."""
        indptr, vocab = self.model.scores["indptr"], self.model.vocab_dict
        return {t: int(indptr[c + 1] - indptr[c]) for t in terms if t and (c := vocab.get(t)) is not None}

    def scores(self, counts: dict[str, int], stats: BM25Stats) -> ArrayScores | None:
        """This part's scores for a query of ``counts`` (term: times in the query); None when it
        holds none of the terms."""
        vocab = self.model.vocab_dict
        found = {t: vocab[t] for t in counts if t and t in vocab}
        if not found:
            return None
        n = self.passages
        indptr, data, indices = self.model.scores["indptr"], self.model.scores["data"], self.model.scores["indices"]
        renormalise = stats.average_length is not None and self.total_length is not None
        scores = np.zeros(n, dtype=np.float32)
        for term, column in found.items():
            lo, hi = int(indptr[column]), int(indptr[column + 1])
            rows, stored = indices[lo:hi], np.asarray(data[lo:hi], dtype=np.float64)
            own, every = _idf(n, hi - lo), _idf(stats.passages, stats.holding.get(term, hi - lo))
            if not renormalise:
                rescaled = stored * (float(every) / float(own))
            else:  # stored = idf * tf / (tf + norm): recover tf / (tf + norm), renormalise the length
                length = np.asarray(self.lengths[rows], dtype=np.float64)
                norm_own = self.k1 * (1 - self.b + self.b * length / (self.total_length / max(n, 1)))
                norm_all = self.k1 * (1 - self.b + self.b * length / stats.average_length)
                part = stored / float(own)
                rescaled = float(every) * part * norm_own / (part * norm_own + (1 - part) * norm_all)
            scores[rows] += (counts[term] * rescaled).astype(np.float32)
        return ArrayScores(scores)


class ShardedBM25:
    """BM25 over the shards' parts (in shard order: :class:`BM25Part`, or a shard served by
    another machine) as one index: the query terms' passage counts are gathered from every
    shard, then each shard scores its passages with the statistics of all of them. It is
    itself a part (``holding``, ``scores``), so a sharded index can be one shard of another."""

    def __init__(self, parts: Sequence, fan_out: FanOut = None):
        self.parts, self.fan_out = list(parts), fan_out or serial
        self.offsets = offsets_of([p.passages for p in self.parts])
        self.passages = int(self.offsets[-1])
        totals = [p.total_length for p in self.parts]
        self.total_length = None if any(t is None for t in totals) else float(sum(totals))

    def holding(self, terms: Iterable[str]) -> dict[str, int]:
        terms = list(terms)
        holding: Counter = Counter()
        for part in self.fan_out(lambda part: part.holding(terms), self.parts):
            holding.update(part)
        return dict(holding)

    def scores(self, counts: dict[str, int], stats: BM25Stats) -> ShardedScores | None:
        parts = self.fan_out(lambda part: part.scores(counts, stats), self.parts)
        return None if all(p is None for p in parts) else ShardedScores(parts, self.offsets, self.fan_out)

    def stats(self, holding: dict[str, int]) -> BM25Stats:
        """This collection's statistics for a query whose terms ``holding`` passages hold."""
        average = None if self.total_length is None else self.total_length / max(self.passages, 1)
        return BM25Stats(self.passages, average, holding)

    def search(self, terms: list[str]) -> ShardedScores | None:
        """The scores of a query of analysed ``terms``; None when no term is in any shard."""
        return self.search_many([terms])[0]

    def search_many(self, queries: Sequence[list[str]]) -> list[ShardedScores | None]:
        """:meth:`search` of each query; the shards are asked once for the terms of all of them."""
        counts = [Counter(t for t in terms if t) for terms in queries]
        holding = self.holding(sorted(set().union(*counts))) if counts else {}
        found = []
        for query in counts:
            mine = {t: holding[t] for t in query if t in holding}
            found.append(self.scores(query, self.stats(mine)) if mine else None)
        return found
