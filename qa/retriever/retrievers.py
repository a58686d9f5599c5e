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
from qa.index.scores import Scores, at_many, top_k, top_many

RRF_K = 10
"""Rank offset of reciprocal rank fusion (Cormack et al., 2009, used 60). Chosen with
:data:`HYBRID_WEIGHTS` on COVID-QA and SQuAD training questions by
``benchmarks/tune_hybrid.py``: with 60, a passage ranked 50th counts about half as much as the first."""
HYBRID_WEIGHTS = (1.0, 0.75)
"""Weights of the BM25 and dense rankings in the hybrid fusion (same benchmark)."""
HYBRID_DEPTH = 100
"""Passages of each ranking that the hybrid fusion combines."""
EXACT_WITHIN = 20_000
"""A search within at most this many passages scores each of them (BM25 and cosine); within
more, it reads ever deeper into the whole index's rankings until it holds enough of them."""
EXACT_WITHIN_REMOTE = 1_000
""":data:`EXACT_WITHIN` of an index with shards served by other machines, whose vectors and
scores then travel as JSON (20,000 vectors are 7.7 million numbers of it)."""


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
    and its best passages by them (``lexical``, of a search ``lexical_depth`` deep), its vector and
    its best passages by vector (``dense``, ``dense_depth`` deep), each computed at most once;
    with ``within`` (passage numbers, ascending), only those passages are searched."""

    text: str
    within: np.ndarray | None = None
    bm25: Scores | None = None
    has_bm25: bool = False
    lexical: list[tuple[int, float]] | None = None
    lexical_depth: int = 0
    vector: np.ndarray | None = None
    dense: list[tuple[int, float]] | None = None
    dense_depth: int = 0


class Retriever:
    """Common to the retrievers: searching one question or many, and the evidence of each hit."""

    name = ""
    uses_bm25 = False
    uses_vectors = False

    def __init__(self, index: Index):
        self.index = index

    def search(self, question: str, k: int, *, evidence: bool = True, within: np.ndarray | None = None) -> list[Hit]:
        """The ``k`` best passages for ``question``, best first."""
        return self.search_batch([question], k, evidence=evidence, within=within)[0]

    def search_batch(
        self, questions: Sequence[str], k: int, *, evidence: bool = True, within: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """The ``k`` best passages for each question. Their vectors are computed in one call of
        the encoder and searched in one call of the dense index, their BM25 best passages asked
        together (one request per shard server), and the passages found read in one call of the
        store. With ``evidence``, every hit carries its BM25 score and cosine. With ``within``
        (passage numbers, such as ``index.store.passages_where(conditions)``), only those
        passages are searched."""
        if within is not None:
            within = np.asarray(within, dtype=np.int64)
            if len(within) > 1 and not (np.diff(within) > 0).all():  # passages_where's are ascending already
                within = np.unique(within)
        queries = [Query(q, within=within) for q in questions]
        if queries and (self.uses_vectors or evidence):
            vectors = self.index.question_encoder.encode([q.text for q in queries])
            for query, vector in zip(queries, vectors):
                query.vector = vector
        if queries and (self.uses_bm25 or evidence):
            self._score_bm25(queries)
        if queries and self.uses_bm25:
            self._search_bm25(queries, self.depth(k))
        if queries and self.uses_vectors:
            self._search_dense(queries, self.depth(k))
        return self._hits([self.rank(query, k) for query in queries], queries, evidence)

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        """``(passage number, score)`` of the ``k`` best passages, best first."""
        raise NotImplementedError

    def depth(self, k: int) -> int:
        """How deep :meth:`rank` reads the BM25 and dense rankings for the best ``k``."""
        return k

    def _score_bm25(self, queries: Sequence[Query]) -> None:
        asking = [q for q in queries if not q.has_bm25]
        for query, scores in zip(asking, self.index.bm25_search_many([analyze(q.text) for q in asking])):
            query.bm25, query.has_bm25 = scores, True

    def _search_bm25(self, queries: Sequence[Query], depth: int) -> None:
        self._score_bm25(queries)
        scored = [q for q in queries if q.bm25 is not None]

        def score(ids: np.ndarray) -> list[np.ndarray]:
            return at_many([q.bm25 for q in scored], [ids] * len(scored))

        best = iter(self._best(scored, depth, lambda d: top_many([q.bm25 for q in scored], d), score, positive_only=True))
        for query in queries:  # in the order of the queries
            query.lexical, query.lexical_depth = next(best) if query.bm25 is not None else [], depth

    def _search_dense(self, queries: Sequence[Query], depth: int) -> None:
        depth = min(depth, len(self.index))
        vectors = np.stack([q.vector for q in queries])

        def search(d: int) -> list[list[tuple[int, float]]]:
            scores, ids = self.index.faiss.search(vectors, d)
            return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0] for row_scores, row_ids in zip(scores, ids)]

        def score(ids: np.ndarray) -> list[np.ndarray]:
            return list(vectors @ self.index.vectors[ids].astype(np.float32).T)

        for query, best in zip(queries, self._best(queries, depth, search, score)):
            query.dense, query.dense_depth = best, depth

    def _best(self, queries: Sequence[Query], depth: int, search, score, positive_only: bool = False) -> list[list[tuple[int, float]]]:
        """Each query's ``depth`` best ``(passage, score)``: ``search(d)`` ranks the whole index
        ``d`` deep for every query, ``score(ids)`` scores passages ``ids`` for every query.
        Within a subset (the queries') of at most :data:`EXACT_WITHIN` passages, each of them is
        scored; within more, the whole index's rankings are read ever deeper until they hold
        ``depth`` of the subset's passages or end."""
        within = queries[0].within if queries else None
        if within is None:
            return search(depth) if queries else []
        if len(within) <= (EXACT_WITHIN_REMOTE if self.index.remote else EXACT_WITHIN):
            if not len(within):
                return [[] for _ in queries]
            return [[(int(within[i]), s) for i, s in top_k(row, depth, positive_only)] for row in score(within)]
        total = len(self.index)
        d = min(total, max(depth, -(-2 * depth * total // len(within))))
        while True:
            found = search(d)
            kept = [[(i, s) for i, s in ranking if _holds(within, i)] for ranking in found]
            ended = all(len(ranking) < d for ranking in found)  # nothing deeper to read
            if ended or d >= total or all(len(ranking) >= depth for ranking in kept):
                return [ranking[:depth] for ranking in kept]
            d = min(total, 4 * d)

    def _hits(self, rankings: list[list[tuple[int, float]]], queries: list[Query], evidence: bool) -> list[list[Hit]]:
        ids = [i for ranked in rankings for i, _ in ranked]
        passages = self.index.store.get(ids)
        rows = self.index.vectors[np.asarray(ids, dtype=np.int64)].astype(np.float32) if evidence and ids else None
        lexical: dict[int, np.ndarray] = {}
        if evidence:  # the BM25 scores of every question's hits, asked together
            scored = [(query, [i for i, _ in ranked]) for ranked, query in zip(rankings, queries) if ranked and query.bm25 is not None]
            found_scores = at_many([query.bm25 for query, _ in scored], [mine for _, mine in scored])
            lexical = {id(query): scores for (query, _), scores in zip(scored, found_scores)}
        found, first = [], 0
        for ranked, query in zip(rankings, queries):
            n, last = len(ranked), first + len(ranked)
            bm25: list[float | None] = [None] * n
            cosine: list[float | None] = [None] * n
            if evidence and n:
                bm25 = lexical.get(id(query), np.zeros(n, np.float32)).astype(np.float32).tolist()
                cosine = (rows[first:last] @ query.vector).tolist()
            found.append([Hit(p, s, r, b, c) for r, (p, (_, s), b, c) in enumerate(zip(passages[first:last], ranked, bm25, cosine), start=1)])
            first = last
        return found


class BM25Retriever(Retriever):
    name = "bm25"
    uses_bm25 = True

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        if query.lexical is None or query.lexical_depth < k:
            self._search_bm25([query], k)
        return query.lexical[:k]


class DenseRetriever(Retriever):
    name = "dense"
    uses_vectors = True

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        if query.dense is None or query.dense_depth < min(k, len(self.index)):
            self._search_dense([query], k)
        return query.dense[:k]


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
        self.fusion_depth = depth
        self.rrf_k = rrf_k
        self.weights = weights
        self.bm25 = BM25Retriever(index)
        self.dense = DenseRetriever(index)

    def depth(self, k: int) -> int:
        return max(k, self.fusion_depth)

    def rank(self, query: Query, k: int) -> list[tuple[int, float]]:
        depth = self.depth(k)
        fused = reciprocal_rank_fusion(
            [self.bm25.rank(query, depth), self.dense.rank(query, depth)],
            k=self.rrf_k,
            weights=self.weights,
        )
        return fused[:k]


def _holds(within: np.ndarray, passage: int) -> bool:
    at = int(np.searchsorted(within, passage))
    return at < len(within) and int(within[at]) == passage


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
