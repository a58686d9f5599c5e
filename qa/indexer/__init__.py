"""Indexer: corpus -> documents -> passages -> BM25 postings and dense vectors, written as one
index through :mod:`qa.index`."""

from qa.indexer.build import BuildResult, build_index
from qa.indexer.options import EmbeddingOptions, LayoutOptions, PassageOptions, ReadOptions
from qa.indexer.passages import split_passages

__all__ = [
    "BuildResult",
    "EmbeddingOptions",
    "LayoutOptions",
    "PassageOptions",
    "ReadOptions",
    "build_index",
    "split_passages",
]
