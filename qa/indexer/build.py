"""Build an index directory from a corpus: passage store, BM25 index, dense vectors, manifest.

The index is written to a temporary sibling directory and moved into place only when
complete, so a failed or interrupted build leaves any previous index as it was.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

import qa
from qa.corpora import SUPPORTED_SUFFIXES, Document, ReadReport, read_corpus
from qa.errors import QAError
from qa.fsutil import replace_directory, staging_dir
from qa.indexer import layout
from qa.indexer.analysis import ANALYZER_NAME, analyze
from qa.indexer.embed import Embedder
from qa.indexer.passages import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP_WORDS, split_passages
from qa.indexer.store import PassageStore, PassageWriter
from qa.models import DEFAULT_EMBEDDING_MODEL
from qa.progress import progress_bar

BM25_K1 = 1.2
BM25_B = 0.75


@dataclass
class BuildResult:
    """What :func:`build_index` made: where, the manifest it wrote, and the read report."""

    path: Path
    manifest: dict[str, Any]
    report: ReadReport
    seconds: float


def build_index(
    corpus: str | Path | Iterable[Document],
    index_dir: str | Path | None = None,
    *,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    max_words: int = DEFAULT_MAX_WORDS,
    overlap_words: int = DEFAULT_OVERLAP_WORDS,
    device: str | None = None,
    batch_size: int = 64,
    id_field: str = "id",
    title_field: str = "title",
    text_field: str = "text",
    show_progress: bool = False,
    metadata: dict[str, Any] | None = None,
) -> BuildResult:
    """Index ``corpus`` (a file or folder read with :func:`read_corpus`, or documents) into
    ``index_dir`` (default: ``$QA_INDEX`` or ``./.qa-index``), replacing the index there, if any,
    only once the new one is complete. ``metadata`` is stored as is in the manifest."""
    started = time.perf_counter()
    target = Path(index_dir) if index_dir is not None else layout.default_index_dir()
    _check_replaceable(target)
    report = ReadReport()
    if isinstance(corpus, (str, os.PathLike)):
        fields = {"id_field": id_field, "title_field": title_field, "text_field": text_field}
        docs = list(read_corpus(corpus, report, **fields))
        corpus_path = str(Path(corpus).resolve())
    else:
        docs = list(corpus)
        report.documents = len(docs)
        corpus_path = None
    if not docs and corpus_path is None:
        raise QAError("no documents to index")
    if not docs:
        skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items()) or "none"
        raise QAError(
            f"no documents found in {str(corpus)!r} (files read: {report.files_read}; skipped: "
            f"{skipped}); supported file types: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    embedder = Embedder(embedding_model, device=device, batch_size=batch_size)

    with staging_dir(target) as staging:
        writer = PassageWriter(staging / layout.STORE)
        for doc in docs:
            spans = split_passages(doc.text, max_words, overlap_words)
            writer.add(doc, [(s.start, s.end) for s in spans])
        writer.close()
        if writer.passages == 0:
            raise QAError("the documents contain no words to index")

        store = PassageStore(staging / layout.STORE)
        texts = [f"{title}\n{text}" if title else text for title, text in store.texts()]
        store.close()

        bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B)
        bm25.index([analyze(t) for t in texts], show_progress=False)
        bm25.save(staging / layout.BM25_DIR, show_progress=False)

        vectors = _embed(embedder, texts, show_progress)
        (staging / layout.VECTORS).parent.mkdir()
        np.save(staging / layout.VECTORS, vectors.astype(np.float16), allow_pickle=False)

        manifest = {
            "format": layout.FORMAT_NAME,
            "format_version": layout.FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "qa_version": qa.__version__,
            "corpus": {"path": corpus_path, **report.as_dict()},
            "counts": {"documents": writer.documents, "passages": writer.passages},
            "passages": {"unit": "words", "max_words": max_words, "overlap_words": overlap_words},
            "bm25": {
                "engine": "bm25s",
                "engine_version": bm25s.__version__,
                "k1": BM25_K1,
                "b": BM25_B,
                "analyzer": ANALYZER_NAME,
                "fields": "title+text",
            },
            "dense": {
                "model": embedding_model,
                "dim": embedder.dim,
                "dtype": "float16",
                "normalized": True,
                "metric": "inner_product",
                "faiss_index": "IndexFlatIP",
                "fields": "title+text",
            },
            "metadata": metadata or {},
        }
        (staging / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        replace_directory(staging, target)
    return BuildResult(target, manifest, report, time.perf_counter() - started)


def _check_replaceable(target: Path) -> None:
    if target.is_file():
        raise QAError(f"index path {str(target)!r} is a file; choose a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / layout.MANIFEST).is_file():
        raise QAError(
            f"{str(target)!r} exists and is not a qa index; refusing to overwrite it: choose another --index"
        )


def _embed(embedder: Embedder, texts: list[str], show_progress: bool) -> np.ndarray:
    if not show_progress:
        return embedder.encode(texts)
    with progress_bar("passages") as progress:
        task = progress.add_task(f"Embedding ({embedder.device})", total=len(texts))
        return embedder.encode(texts, on_batch=lambda n: progress.advance(task, n))
