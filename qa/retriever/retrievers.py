"""Retrievers over an :class:`Index`: BM25, dense, and their weighted reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa.errors import QAError
from qa.indexer.store import Passage
from qa.retriever.index import Index

RETRIEVERS = ("hybrid", "bm25", "dense")
RRF_K = 10
"""Rank offset of reciprocal rank fusion (Cormack et al., 2009, used 60). Chosen with
:data:`HYBRID_WEIGHTS` on COVID-QA and SQuAD training questions by
``benchmarks/tune_hybrid.py``: with 60, a passage ranked 50th counts about half as much as the first."""
HYBRID_WEIGHTS = (1.0, 0.75)
"""Weights of the BM25 and dense rankings in the hybrid fusion (same benchmark)."""


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its retriever score (higher is better) and 1-based rank."""

    passage: Passage
    score: float
    rank: int


class BM25Retriever:
    name = "bm25"

    def __init__(self, index: Index):
        self.index = index

    def search_ids(self, question: str, k: int) -> list[tuple[int, float]]:
        scores = self.index.bm25_scores(question)
        return [] if scores is None else _top_k(scores, k, positive_only=True)

    def search(self, question: str, k: int) -> list[Hit]:
        return _hits(self.index, self.search_ids(question, k))


class DenseRetriever:
    name = "dense"

    def __init__(self, index: Index):
        self.index = index

    def search_ids_batch(self, questions: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        return self._search_vectors(self.index.embedder.encode(list(questions)), k)

    def search_ids(self, question: str, k: int) -> list[tuple[int, float]]:
        return self._search_vectors(self.index.question_vector(question)[None, :], k)[0]

    def _search_vectors(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        scores, ids = self.index.faiss.search(queries, min(k, len(self.index)))
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids, scores)
        ]

    def search(self, question: str, k: int) -> list[Hit]:
        return _hits(self.index, self.search_ids(question, k))


class HybridRetriever:
    """Weighted reciprocal rank fusion of the top ``depth`` of BM25 and dense:
    score = sum over both lists of weight / (rrf_k + rank)."""

    name = "hybrid"

    def __init__(
        self,
        index: Index,
        depth: int = 100,
        rrf_k: float = RRF_K,
        weights: tuple[float, float] = HYBRID_WEIGHTS,
    ):
        self.index = index
        self.depth = depth
        self.rrf_k = rrf_k
        self.weights = weights
        self.bm25 = BM25Retriever(index)
        self.dense = DenseRetriever(index)

    def search_ids(self, question: str, k: int) -> list[tuple[int, float]]:
        depth = max(k, self.depth)
        fused = reciprocal_rank_fusion(
            [self.bm25.search_ids(question, depth), self.dense.search_ids(question, depth)],
            k=self.rrf_k,
            weights=self.weights,
        )
        return fused[:k]

    def search(self, question: str, k: int) -> list[Hit]:
        return _hits(self.index, self.search_ids(question, k))


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[tuple[int, float]]],
    k: float = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse ranked lists of ``(id, score)``: each id scores the sum of ``weight / (k + rank)``
    over the lists it is in (weights default to 1); ties keep the order of first appearance."""
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, (doc, _) in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def make_retriever(index: Index, kind: str = "hybrid"):
    """The retriever named ``kind`` (one of ``hybrid``, ``bm25``, ``dense``) over ``index``."""
    classes = {"hybrid": HybridRetriever, "bm25": BM25Retriever, "dense": DenseRetriever}
    if kind not in classes:
        raise QAError(f"unknown retriever {kind!r}: choose one of {', '.join(RETRIEVERS)}")
    return classes[kind](index)


def _top_k(scores: np.ndarray, k: int, positive_only: bool = False) -> list[tuple[int, float]]:
    k = min(k, len(scores))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((top, -scores[top]))]
    return [(int(i), float(scores[i])) for i in top if not positive_only or scores[i] > 0]


def _hits(index: Index, ranked: list[tuple[int, float]]) -> list[Hit]:
    passages = index.store.get([i for i, _ in ranked])
    return [Hit(p, s, r) for r, (p, (_, s)) in enumerate(zip(passages, ranked), start=1)]
