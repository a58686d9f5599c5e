"""Build an index directory from a corpus: passage store, BM25 index, dense vectors, manifest.

The index is written to a temporary sibling directory and moved into place only when
complete, so a failed or interrupted build leaves any previous index as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

import qa
from qa.corpora import SUPPORTED_SUFFIXES, Document, ReadReport, read_corpus
from qa.corpora.readers import DEFAULT_MAX_FILE_MB
from qa.errors import QAError
from qa.fsutil import directory_lock, recover_directory, replace_directory, staging_dir
from qa.indexer import layout
from qa.indexer.analysis import ANALYZER_NAME, analyze_corpus
from qa.indexer.dense import build_faiss, choose_kind
from qa.indexer.embed import Embedder
from qa.indexer.passages import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    DEFAULT_OVERLAP_WORDS,
    Span,
    split_passages,
    split_token_windows,
    tokenizer_counter,
)
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
    new_passages: int = 0


def passage_settings(
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    max_words: int | None = None,
    overlap_words: int = DEFAULT_OVERLAP_WORDS,
    max_tokens: int | None = None,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> dict[str, Any]:
    """How documents are split, as the manifest records it: windows of ``max_words`` words when
    given, else of ``max_tokens`` (default 200) tokens of the embedding model's tokenizer."""
    if max_words is not None and max_tokens is not None:
        raise QAError("--max-words and --max-tokens choose different windows: give one of them, not both")
    if max_words is not None:
        if overlap_words >= max_words:
            raise QAError(f"--overlap-words must be less than --max-words (got {overlap_words} and {max_words})")
        return {"unit": "words", "max_words": max_words, "overlap_words": overlap_words}
    max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    if overlap_tokens >= max_tokens:
        raise QAError(f"--overlap-tokens must be less than --max-tokens (got {overlap_tokens} and {max_tokens})")
    return {"unit": "tokens", "tokenizer": embedding_model, "max_tokens": max_tokens,
            "overlap_tokens": overlap_tokens, "sentence_aware": True}


def build_index(
    corpus: str | Path | Iterable[Document],
    index_dir: str | Path | None = None,
    *,
    add: bool = False,
    embedding_model: str | None = None,
    max_words: int | None = None,
    overlap_words: int = DEFAULT_OVERLAP_WORDS,
    max_tokens: int | None = None,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    device: str | None = None,
    batch_size: int | None = None,
    id_field: str = "id",
    title_field: str = "title",
    text_field: str = "text",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    dense_index: str = "auto",
    show_progress: bool = False,
    metadata: dict[str, Any] | None = None,
) -> BuildResult:
    """Index ``corpus`` (a file or folder read with :func:`read_corpus`, or documents) into
    ``index_dir`` (default: ``$QA_INDEX`` or ``./.qa-index``), replacing the index there, if any,
    only once the new one is complete. ``metadata`` is stored as is in the manifest. Documents are
    split into windows of the embedding model's tokens (``max_tokens``, default 200, sharing
    ``overlap_tokens``), or of words when ``max_words`` is given (see :func:`passage_settings`).

    With ``add=True`` the documents are added to the existing index instead: documents already
    there (same id and content) are skipped, the existing passages are not embedded again, and
    the passage settings and embedding model are the index's own. The new index replaces the
    old one only when complete; a lock file keeps a second writer out.
    """
    started = time.perf_counter()
    requested = passage_settings(embedding_model or DEFAULT_EMBEDDING_MODEL, max_words, overlap_words, max_tokens, overlap_tokens)
    target = Path(index_dir) if index_dir is not None else layout.default_index_dir()
    with directory_lock(target):
        recover_directory(target)
        previous = layout.read_manifest(target) if add else None
        if previous is None:
            _check_replaceable(target)
            embedding_model = embedding_model or DEFAULT_EMBEDDING_MODEL
            passages_config = requested
        else:
            if embedding_model and embedding_model != previous["dense"]["model"]:
                raise QAError(
                    f"the index at {str(target)!r} was embedded with {previous['dense']['model']!r}, not "
                    f"{embedding_model!r}: add with its model, or build a new index"
                )
            embedding_model = previous["dense"]["model"]
            passages_config = previous["passages"]
        report = ReadReport()
        if isinstance(corpus, (str, os.PathLike)):
            fields = {"id_field": id_field, "title_field": title_field, "text_field": text_field}
            docs = list(read_corpus(corpus, report, include=include, exclude=exclude, max_file_mb=max_file_mb, **fields))
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
            if previous is not None:
                shutil.copyfile(target / layout.STORE, staging / layout.STORE)
            writer = PassageWriter(staging / layout.STORE, append=previous is not None)
            first_new = writer.passages
            split = _splitter(passages_config, embedder)
            for doc in docs:
                held = writer.holds(doc)
                if held is not None:
                    report.documents -= 1
                    report.skip(
                        f"{doc.source} ({doc.id})",
                        "already in the index" if held == "same" else "id already in the index with other content (rebuild to replace it)",
                    )
                    continue
                writer.add(doc, [(s.start, s.end) for s in split(doc.text)])
            writer.close()
            if writer.passages == 0:
                raise QAError("the documents contain no words to index")

            store = PassageStore(staging / layout.STORE)
            texts = [f"{title}\n{text}" if title else text for title, text in store.texts()]
            store.close()

            bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B)
            term_ids, vocab = analyze_corpus(texts)
            if not vocab:
                raise QAError("the documents hold no searchable words (only stop words or symbols): nothing to index")
            bm25.index((term_ids, vocab), show_progress=False)
            del term_ids
            bm25.save(staging / layout.BM25_DIR, show_progress=False)

            vectors = _embed(embedder, texts[first_new:], show_progress).astype(np.float16)
            if previous is not None:
                vectors = np.concatenate([np.load(target / layout.VECTORS, allow_pickle=False), vectors])
            (staging / layout.VECTORS).parent.mkdir()
            np.save(staging / layout.VECTORS, vectors, allow_pickle=False)
            faiss_description = build_faiss(vectors, choose_kind(dense_index, len(vectors)), staging / layout.FAISS_FILE)

            read = {"path": corpus_path, **report.as_dict()}
            manifest = {
                "format": layout.FORMAT_NAME,
                "format_version": layout.FORMAT_VERSION,
                "created": previous["created"] if previous else _now(),
                **({"updated": _now()} if previous else {}),
                "qa_version": qa.__version__,
                "corpus": previous["corpus"] if previous else read,
                "additions": [*previous.get("additions", []), {"added": _now(), **read}] if previous else [],
                "counts": {"documents": writer.documents, "passages": writer.passages},
                "passages": passages_config,
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
                    **faiss_description,
                    "fields": "title+text",
                },
                "metadata": {**(previous or {}).get("metadata", {}), **(metadata or {})},
            }
            (staging / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            replace_directory(staging, target)
    return BuildResult(target, manifest, report, time.perf_counter() - started, writer.passages - first_new)


def _splitter(config: dict[str, Any], embedder: Embedder) -> Callable[[str], Iterable[Span]]:
    """The passage splitter a manifest's ``passages`` entry describes."""
    if config["unit"] == "words":
        return lambda text: split_passages(text, config["max_words"], config["overlap_words"])
    count = tokenizer_counter(embedder.tokenizer)
    return lambda text: split_token_windows(
        text, count, config["max_tokens"], config["overlap_tokens"], config.get("sentence_aware", True)
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
