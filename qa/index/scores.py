"""A question's BM25 scores as the retriever reads them: its best passages (:meth:`top`) and the
scores of given passages (:meth:`at`). An index on this machine holds every passage's score in one
array (:class:`ArrayScores`); a sharded index merges its shards' (:class:`ShardedScores`), and a
shard served by another machine answers both questions itself (``qa.index.remote``), so no machine
holds a score per passage of the whole collection.

:func:`top_many` and :func:`at_many` ask the same of a batch of questions' scores at once: a shard
served by another machine then answers the whole batch in one request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class Scores(Protocol):
    def top(self, k: int) -> list[tuple[int, float]]:
        """``(passage number, score)`` of the ``k`` best passages with a positive score, best
        first (ties: lower number first)."""

    def at(self, ids: Sequence[int]) -> np.ndarray:
        """The scores (float32) of passages ``ids``."""


def top_k(scores: np.ndarray, k: int, positive_only: bool = False) -> list[tuple[int, float]]:
    """``(position, score)`` of the ``k`` highest of ``scores``, best first, ties by position."""
    k = min(k, len(scores))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    last = scores[top].min()
    if np.count_nonzero(scores >= last) > k:  # a tie across the cut: the tied ones at the lowest positions
        above = np.flatnonzero(scores > last)
        top = np.concatenate([above, np.flatnonzero(scores == last)[: k - len(above)]])
    top = top[np.lexsort((top, -scores[top]))]
    return [(int(i), float(scores[i])) for i in top if not positive_only or scores[i] > 0]


def top_many(batch: Sequence[Scores], k: int) -> list[list[tuple[int, float]]]:
    """``scores.top(k)`` of each of ``batch``, asked together where its kind can (a kind with a
    ``top_many`` of its own: sharded and served scores)."""
    batch = list(batch)
    kind = type(batch[0]) if batch else None
    if kind is not None and hasattr(kind, "top_many") and all(type(scores) is kind for scores in batch):
        return kind.top_many(batch, k)
    return [scores.top(k) for scores in batch]


def at_many(batch: Sequence[Scores], ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """``scores.at(ids)`` of each of ``batch`` with its passages ``ids``, asked together where its
    kind can (as :func:`top_many`)."""
    batch = list(batch)
    kind = type(batch[0]) if batch else None
    if kind is not None and hasattr(kind, "at_many") and all(type(scores) is kind for scores in batch):
        return kind.at_many(batch, ids)
    return [scores.at(mine) for scores, mine in zip(batch, ids)]


class ArrayScores:
    """Every passage's score in one array."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def top(self, k: int) -> list[tuple[int, float]]:
        return top_k(self.scores, k, positive_only=True)

    def at(self, ids: Sequence[int]) -> np.ndarray:
        return np.asarray(self.scores[np.asarray(ids, dtype=np.int64)], dtype=np.float32)


class ShardedScores:
    """The shards' scores (in shard order; None for a shard that holds no query term) as those of
    one index: passage ``i`` of shard ``s`` is passage ``offsets[s] + i``. ``fan_out(function,
    items)`` maps over the shards (in parallel where some are remote)."""

    def __init__(self, parts: Sequence[Scores | None], offsets: np.ndarray, fan_out: Callable = None):
        self.parts, self.offsets = list(parts), offsets
        self.fan_out = fan_out or (lambda function, items: [function(item) for item in items])

    def top(self, k: int) -> list[tuple[int, float]]:
        return self.top_many([self], k)[0]

    def at(self, ids: Sequence[int]) -> np.ndarray:
        return self.at_many([self], [ids])[0]

    @staticmethod
    def _alike(batch: Sequence[ShardedScores]) -> bool:
        first = batch[0]
        return all(len(s.parts) == len(first.parts) and np.array_equal(s.offsets, first.offsets) for s in batch)

    @staticmethod
    def top_many(batch: Sequence[ShardedScores], k: int) -> list[list[tuple[int, float]]]:
        """Each shard asked once for the best ``k`` of every question of ``batch``, merged by score."""
        if not ShardedScores._alike(batch):
            return [scores.top_many([scores], k)[0] for scores in batch]
        first = batch[0]

        def shard_top(shard: int) -> list[tuple[int, list[tuple[int, float]]]]:
            asking = [q for q, scores in enumerate(batch) if scores.parts[shard] is not None]
            found = top_many([batch[q].parts[shard] for q in asking], k)
            offset = int(first.offsets[shard])
            return [(q, [(offset + i, score) for i, score in hits]) for q, hits in zip(asking, found)]

        merged: list[list[tuple[int, float]]] = [[] for _ in batch]
        for found in first.fan_out(shard_top, range(len(first.parts))):
            for q, hits in found:
                merged[q].extend(hits)
        return [sorted(hits, key=lambda hit: (-hit[1], hit[0]))[:k] for hits in merged]

    @staticmethod
    def at_many(batch: Sequence[ShardedScores], ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Each shard asked once for the scores of its passages among every question's ``ids``."""
        if not ShardedScores._alike(batch):
            return [scores.at_many([scores], [mine])[0] for scores, mine in zip(batch, ids)]
        first = batch[0]
        ids = [np.asarray(mine, dtype=np.int64).reshape(-1) for mine in ids]
        shard_of = [np.searchsorted(first.offsets, mine, side="right") - 1 for mine in ids]

        def shard_at(shard: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
            asking = [q for q, scores in enumerate(batch) if scores.parts[shard] is not None and (shard_of[q] == shard).any()]
            where = [np.flatnonzero(shard_of[q] == shard) for q in asking]
            local = [ids[q][w] - first.offsets[shard] for q, w in zip(asking, where)]
            return list(zip(asking, where, at_many([batch[q].parts[shard] for q in asking], local)))

        out = [np.zeros(len(mine), dtype=np.float32) for mine in ids]
        for found in first.fan_out(shard_at, range(len(first.parts))):
            for q, where, scores in found:
                out[q][where] = scores
        return out
