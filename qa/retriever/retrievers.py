"""Retrievers over an :class:`Index`: BM25, dense, and their weighted reciprocal rank fusion.

Each question is scored once: its BM25 scores and its vector are computed a single time per
search, and every :class:`Hit` carries both for its passage (the evidence that answer ranking
weighs), whichever retriever found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa.errors import QAError
from qa.index import Index, Passage
from qa.index.analysis import analyze
from qa.index.scores import Scores

RRF_K = 10
"""Rank offset of reciprocal rank fusion (Cormack et al., 2009, used 60). Chosen with
:data:`HYBRID_WEIGHTS` on COVID-QA and SQuAD training questions by
``benchmarks/tune_hybrid.py``: with 60, a passage ranked 50th counts about half as much as the first."""
HYBRID_WEIGHTS = (1.0, 0.75)
"""Weights of the BM25 and dense rankings in the hybrid fusion (same benchmark)."""
HYBRID_DEPTH = 100
"""Passages of each ranking that the hybrid fusion combines."""


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its retriever score (higher is better) and 1-based rank.

    ``bm25`` and ``cosine`` are the passage's BM25 score for the question and the cosine of its
    vector with the question's, whichever retriever found it (None when the search was asked for
    no evidence and its retriever did not compute them)."""

    passage: Passage
    score: float
    rank: int
    bm25: float | None = None
    cosine: float | None = None


@dataclass
class Query:
    """What a search knows of one question: its BM25 scores (None when no term of it is indexed)
    and its vector, each computed at most once."""

    text: str
    bm25: Scores | None = None
    has_bm25: bool = False
    vector: np.ndarray | None = None


class Retriever:
    """Common to the retrievers: searching one question or many, and the evidence of each hit."""

    name = ""
    uses_bm25 = False
    uses_vectors = False

    def __init__(self, index: Index):
        self.index = index

    def search(self, question: str, k: int, *, evidence: bool = True) -> list[Hit]:
        """The ``k`` best passages for ``question``, best first."""
        return self.search_batch([question], k, evidence=evidence)[0]

    def search_batch(self, questions: Sequence[str], k: int, *, evidence: bool = True) -> list[list[Hit]]:
        """The ``k`` best passages for each question. Their vectors are computed in one call of
        the encoder. With ``evidence``, every hit carries its BM25 score and cosine."""
        queries = [Query(q) for q in questions]
        if queries and (self.uses_vectors or evidence):
            vectors = self.index.question_encoder.encode([q.text for q in queries])
            for query, vector in zip(queries, vectors):
                query.vector = vector
        if self.uses_bm25 or evidence:
            for query in queries:
                self._score_bm25(query)
        return [self._hits(self.rank(query, k), query, evidence) for query in queries]

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        """``(passage number, score)`` of the ``k`` best passages, best first."""
        raise NotImplementedError

    def _score_bm25(self, query: Query) -> None:
        if not query.has_bm25:
            query.bm25 = self.index.bm25_search(analyze(query.text))
            query.has_bm25 = True

    def _hits(self, ranked: list[tuple[int, float]], query: Query, evidence: bool) -> list[Hit]:
        ids = [i for i, _ in ranked]
        passages = self.index.store.get(ids)
        bm25: list[float | None] = [None] * len(ids)
        cosine: list[float | None] = [None] * len(ids)
        if evidence and ids:
            at = np.asarray(ids, dtype=np.int64)
            bm25 = (query.bm25.at(at) if query.bm25 is not None else np.zeros(len(ids), np.float32)).astype(np.float32).tolist()
            cosine = (self.index.vectors[at].astype(np.float32) @ query.vector).tolist()
        return [
            Hit(p, s, r, b, c)
            for r, (p, (_, s), b, c) in enumerate(zip(passages, ranked, bm25, cosine), start=1)
        ]


class BM25Retriever(Retriever):
    name = "bm25"
    uses_bm25 = True

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        self._score_bm25(query)
        return [] if query.bm25 is None else query.bm25.top(k)


class DenseRetriever(Retriever):
    name = "dense"
    uses_vectors = True

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        scores, ids = self.index.faiss.search(query.vector[None, :], min(k, len(self.index)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


class HybridRetriever(Retriever):
    """Weighted reciprocal rank fusion of the top ``depth`` of BM25 and dense:
    score = sum over both lists of weight / (rrf_k + rank)."""

    name = "hybrid"
    uses_bm25 = True
    uses_vectors = True

    def __init__(
        self,
        index: Index,
        depth: int = HYBRID_DEPTH,
        rrf_k: float = RRF_K,
        weights: tuple[float, float] = HYBRID_WEIGHTS,
    ):
        super().__init__(index)
        self.depth = depth
        self.rrf_k = rrf_k
        self.weights = weights
        self.bm25 = BM25Retriever(index)
        self.dense = DenseRetriever(index)

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        depth = max(k, self.depth)
        fused = reciprocal_rank_fusion(
            [self.bm25.rank(query, depth), self.dense.rank(query, depth)],
            k=self.rrf_k,
            weights=self.weights,
        )
        return fused[:k]


RETRIEVERS: dict[str, type[Retriever]] = {"hybrid": HybridRetriever, "bm25": BM25Retriever, "dense": DenseRetriever}
"""The retrievers by name; the first is the default."""
DEFAULT_RETRIEVER = next(iter(RETRIEVERS))


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


def make_retriever(index: Index, kind: str = DEFAULT_RETRIEVER) -> Retriever:
    """The retriever named ``kind`` (one of :data:`RETRIEVERS`) over ``index``."""
    if kind not in RETRIEVERS:
        raise QAError(f"unknown retriever {kind!r}: choose one of {', '.join(RETRIEVERS)}")
    return RETRIEVERS[kind](index)
