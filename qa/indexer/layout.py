"""The on-disk index format (see docs/INDEX_FORMAT.md): file names, manifest, location."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.fsutil import directory_lock, recover_directory

FORMAT_NAME = "qa-index"
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
STORE = "passages.sqlite"
BM25_DIR = "bm25"
VECTORS = "dense/vectors.npy"
FAISS_FILE = "dense/faiss.index"  # only for approximate (IVF, HNSW) dense indexes

DEFAULT_INDEX_DIR = ".qa-index"
INDEX_ENV = "QA_INDEX"


def default_index_dir() -> Path:
    """``$QA_INDEX`` when set, else ``./.qa-index``."""
    return Path(os.environ.get(INDEX_ENV) or DEFAULT_INDEX_DIR)


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of the index at ``index_dir``, checked for format and version."""
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if not index_dir.exists() and any(index_dir.parent.glob(f".{index_dir.name}.old-*")):
        with directory_lock(index_dir):  # a writer was killed while swapping the index in
            recover_directory(index_dir)
    if not index_dir.exists():
        raise QAError(f"no index at {str(index_dir)!r}: build one with `qa index PATH --index {index_dir}`")
    if not path.is_file():
        raise QAError(f"{str(index_dir)!r} is not a qa index (no {MANIFEST}): build one with `qa index PATH`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise QAError(f"index manifest {str(path)!r} is unreadable ({err}): rebuild the index") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise QAError(f"{str(path)!r} is not a qa index manifest: rebuild the index")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise QAError(
            f"index {str(index_dir)!r} has format version {version}, this qa reads version "
            f"{FORMAT_VERSION}: rebuild it with `qa index`"
        )
    return manifest
