"""A question's BM25 scores as the retriever reads them: its best passages (:meth:`top`) and the
scores of given passages (:meth:`at`). An index on this machine holds every passage's score in one
array (:class:`ArrayScores`); a sharded index merges its shards' (:class:`ShardedScores`), and a
shard served by another machine answers both questions itself (``qa.index.remote``), so no machine
holds a score per passage of the whole collection.
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
    top = top[np.lexsort((top, -scores[top]))]
    return [(int(i), float(scores[i])) for i in top if not positive_only or scores[i] > 0]


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
        shards = [s for s, part in enumerate(self.parts) if part is not None]
        found = self.fan_out(lambda s: [(int(self.offsets[s]) + i, score) for i, score in self.parts[s].top(k)], shards)
        merged = sorted((hit for hits in found for hit in hits), key=lambda hit: (-hit[1], hit[0]))
        return merged[:k]

    def at(self, ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.zeros(len(ids), dtype=np.float32)
        shard_of = np.searchsorted(self.offsets, ids, side="right") - 1
        asked = [int(s) for s in np.unique(shard_of) if self.parts[s] is not None]

        def score(shard: int) -> tuple[np.ndarray, np.ndarray]:
            where = np.flatnonzero(shard_of == shard)
            return where, self.parts[shard].at(ids[where] - self.offsets[shard])

        for where, scores in self.fan_out(score, asked):
            out[where] = scores
        return out
