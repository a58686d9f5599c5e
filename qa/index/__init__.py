"""The index on disk: its layout, manifest and format marker, the passage store, the BM25,
vector and FAISS parts, checks, opening for search (:class:`Index`) and writing a new
generation atomically (:class:`IndexWriter`). The indexer writes through this package and the
retriever reads through it; see docs/INDEX_FORMAT.md."""

from qa.index.check import CheckReport, check_index
from qa.index.layout import FORMAT_VERSION, default_index_dir, read_manifest
from qa.index.read import Index
from qa.index.store import Passage, PassageStore, PassageWriter
from qa.index.write import IndexWriter

__all__ = [
    "FORMAT_VERSION",
    "CheckReport",
    "Index",
    "IndexWriter",
    "Passage",
    "PassageStore",
    "PassageWriter",
    "check_index",
    "default_index_dir",
    "read_manifest",
]
