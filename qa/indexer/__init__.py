"""Indexer: corpus -> passages -> BM25 index + dense vectors, in one versioned directory."""

from qa.indexer.build import BuildResult, build_index
from qa.indexer.embed import Embedder
from qa.indexer.layout import FORMAT_VERSION, default_index_dir, read_manifest
from qa.indexer.passages import split_passages
from qa.indexer.store import Passage, PassageStore

__all__ = [
    "BuildResult",
    "Embedder",
    "FORMAT_VERSION",
    "Passage",
    "PassageStore",
    "build_index",
    "default_index_dir",
    "read_manifest",
    "split_passages",
]
