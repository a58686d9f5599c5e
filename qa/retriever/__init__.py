"""Retriever: find the passages of an index most likely to answer a question."""

from qa.index import Index
from qa.retriever.retrievers import (
    DEFAULT_RETRIEVER,
    RETRIEVERS,
    BM25Retriever,
    DenseRetriever,
    Hit,
    HybridRetriever,
    Retriever,
    make_retriever,
    reciprocal_rank_fusion,
)

__all__ = [
    "DEFAULT_RETRIEVER",
    "RETRIEVERS",
    "BM25Retriever",
    "DenseRetriever",
    "Hit",
    "HybridRetriever",
    "Index",
    "Retriever",
    "make_retriever",
    "reciprocal_rank_fusion",
]
