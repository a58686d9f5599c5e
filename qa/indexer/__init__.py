"""Indexer: corpus -> documents -> passages -> BM25 postings and dense vectors, written as one
index through :mod:`qa.index`."""

from qa.indexer.options import EmbeddingOptions, LayoutOptions, PassageOptions, RayOptions, ReadOptions
from qa.indexer.passages import split_passages

__all__ = [
    "BuildResult",
    "EmbeddingOptions",
    "LayoutOptions",
    "PassageOptions",
    "RayOptions",
    "ReadOptions",
    "build_index",
    "split_passages",
]


def __getattr__(name: str):
    # The build (and bm25s with it) is imported when first used, so that the options stay cheap
    # to import for the command line (`qa ask` never builds).
    if name in ("BuildResult", "build_index"):
        from qa.indexer import build

        return getattr(build, name)
    raise AttributeError(f"module 'qa.indexer' has no attribute {name!r}")
