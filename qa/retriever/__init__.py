"""Retriever: find the passages of an index most likely to answer a question."""

from qa.retriever.index import Index
from qa.retriever.retrievers import (
    RETRIEVERS,
    BM25Retriever,
    DenseRetriever,
    Hit,
    HybridRetriever,
    make_retriever,
    reciprocal_rank_fusion,
)

__all__ = [
    "RETRIEVERS",
    "BM25Retriever",
    "DenseRetriever",
    "Hit",
    "HybridRetriever",
    "Index",
    "make_retriever",
    "reciprocal_rank_fusion",
]
