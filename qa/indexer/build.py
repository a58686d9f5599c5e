"""Build an index directory from a corpus: passage store, BM25 index, dense vectors, manifest.

The index is written to a temporary sibling directory and moved into place only when
complete, so a failed or interrupted build leaves any previous index as it was.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from qa.device import pick_device
from qa.fsutil import absolute, directory_lock, recover_directory, replace_directory, staging_dir
from qa.indexer import layout
from qa.indexer.analysis import ANALYZER_NAME
from qa.indexer.bm25 import BM25Writer
from qa.indexer.dense import build_faiss, check_kind, choose_kind
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
from qa.indexer.vectors import VectorFile, VectorWriter
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

    Only a folder that ``qa index`` wrote (or an empty or new one) is replaced; anything else
    is refused with :class:`QAError`. Documents stream through: each is stored, split, analysed
    for BM25 and embedded in batches as it is read, so memory does not grow with the corpus.

    With ``add=True`` the documents are added to the existing index instead: documents already
    there (same id and content, or the same content under another id) are skipped, the existing
    passages are not embedded again, and the passage settings and embedding model are the
    index's own. The new index replaces the old one only when complete; a lock file keeps a
    second writer out.
    """
    started = time.perf_counter()
    check_kind(dense_index)
    pick_device(device)  # a device that cannot be used fails now, not after reading the corpus
    embedding_model = model_id(embedding_model) if embedding_model else None
    requested = passage_settings(embedding_model or DEFAULT_EMBEDDING_MODEL, max_words, overlap_words, max_tokens, overlap_tokens)
    target = absolute(index_dir if index_dir is not None else layout.default_index_dir())
    if isinstance(corpus, (str, os.PathLike)):
        corpus_root = absolute(corpus)
        if not corpus_root.exists():
            raise QAError(f"corpus path {str(corpus)!r} does not exist")
        if target == corpus_root or target in corpus_root.parents:
            raise QAError(f"the index {str(target)!r} would contain the corpus {str(corpus)!r}: choose another --index")
    try:
        return _build(corpus, target, add, embedding_model, requested, device, batch_size, include, exclude,
                      max_file_mb, dense_index, show_progress, metadata, started,
                      {"id_field": id_field, "title_field": title_field, "text_field": text_field})
    except sqlite3.Error as err:
        raise QAError(_write_failure(target, err)) from None
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM):
            raise QAError(_write_failure(target, err)) from None
        raise


def _write_failure(target: Path, err: Exception) -> str:
    what = getattr(err, "strerror", None) or str(err)
    return (
        f"cannot write the index at {str(target)!r} ({what}): free space or choose a writable --index; "
        "any previous index there is unchanged"
    )


def _build(corpus, target, add, embedding_model, requested, device, batch_size, include, exclude,
           max_file_mb, dense_index, show_progress, metadata, started, fields) -> BuildResult:
    with directory_lock(target):
        recover_directory(target)
        previous = layout.read_manifest(target) if add else None
        if previous is None:
            layout.check_replaceable(target)
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
            docs: Iterable[Document] = read_corpus(corpus, report, include=include, exclude=exclude, max_file_mb=max_file_mb, **fields)
            corpus_path = str(Path(corpus).resolve())
        else:
            docs = _counted(corpus, report)
            corpus_path = None
        embedder = Embedder(embedding_model, device=device, batch_size=batch_size)

        with staging_dir(target) as staging, progress_bar("files", disable=not show_progress) as progress:
            task = progress.add_task(f"Indexing ({embedder.device})", total=None)
            report.on_file = lambda done, total: progress.update(task, completed=done, total=total)
            if previous is not None:
                shutil.copyfile(target / layout.STORE, staging / layout.STORE)
            writer = PassageWriter(staging / layout.STORE, append=previous is not None)
            first_new = writer.passages
            bm25 = BM25Writer(staging / "bm25-scratch", BM25_K1, BM25_B)
            vectors = VectorWriter(staging / layout.VECTORS, embedder.dim)
            if previous is not None:  # the stored passages: BM25 counts them again, vectors are copied
                progress.update(task, description="Reading the index")
                store = PassageStore(staging / layout.STORE)
                for title, text in store.texts():
                    bm25.add(retrieval_text(title, text))
                store.close()
                old = _open_vectors(target, previous)
                for first in range(0, len(old), 100_000):
                    vectors.add(old[first : first + 100_000])
            queue = EmbeddingQueue(embedder, vectors)
            split = _splitter(passages_config, embedder)
            documents_read = 0
            for doc in docs:
                documents_read += 1
                if previous is not None and _already_stored(writer, doc, report):
                    continue
                try:
                    doc_idx = writer.add_document(doc)
                except ValueError as err:
                    report.documents -= 1
                    report.skip(f"{doc.source} ({doc.id})", str(err))
                    continue
                spans = []
                for span in split(doc.text):
                    spans.append((span.start, span.end))
                    text = retrieval_text(doc.title, doc.text[span.start : span.end])
                    bm25.add(text)
                    queue.add(text)
                    if len(spans) == 1024:
                        writer.add_passages(doc_idx, spans)
                        spans = []
                writer.add_passages(doc_idx, spans)
                progress.update(task, description=f"Indexing ({embedder.device}): {writer.passages - first_new} passages")
            queue.flush()
            vectors.close()
            writer.close()
            if documents_read == 0:
                raise _nothing_found(corpus, corpus_path, report, include)
            if writer.passages == 0:
                raise QAError("the documents contain no words to index")
            if not bm25.vocab:
                raise QAError("the documents hold no searchable words (only stop words or symbols): nothing to index")
            progress.update(task, description="Writing the BM25 index")
            bm25.write(staging / layout.BM25_DIR)
            progress.update(task, description="Writing the dense index")
            faiss_description = build_faiss(
                VectorFile(staging / layout.VECTORS),  # read, not mapped: RSS stays what faiss holds
                choose_kind(dense_index, writer.passages),
                staging / layout.FAISS_FILE,
            )

            read = {"path": corpus_path, **report.as_dict()}
            manifest = {
                "format": layout.FORMAT_NAME,
                "format_version": layout.FORMAT_VERSION,
                "created": previous["created"] if previous else _now(),
                **({"updated": _now()} if previous else {}),
                "generation": _generation(target, previous) + 1,
                "build_id": uuid.uuid4().hex,
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
                "files": {name: layout.file_record(staging / name) for name in layout.data_files(staging)},
            }
            (staging / layout.MARKER).write_text(layout.marker_text())
            (staging / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            _sync_tree(staging)
            replace_directory(staging, target)
    return BuildResult(target, manifest, report, time.perf_counter() - started, writer.passages - first_new)


class EmbeddingQueue:
    """Passage texts waiting to be embedded, in the chunks :meth:`Embedder.encode` makes of a
    list (so that streaming gives the same vectors as one call over all passages)."""

    def __init__(self, embedder: Embedder, out: VectorWriter):
        self.embedder, self.out = embedder, out
        self.size = embedder.chunk_size
        self.texts: list[str] = []

    def add(self, text: str) -> None:
        self.texts.append(text)
        if len(self.texts) == self.size:
            self.flush()

    def flush(self) -> None:
        if self.texts:
            self.out.add(self.encode(self.texts).astype(np.float16))
            self.texts = []

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)


def model_id(name: str) -> str:
    """How the manifest names an embedding model: a local folder by its absolute path (so that
    the index opens from any directory), anything else (a hub id) as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def _already_stored(writer: PassageWriter, doc: Document, report: ReadReport) -> bool:
    held = writer.holds(doc)
    same_content = writer.holds_content(doc) if held is None else None
    if held is None and same_content is None:
        return False
    report.documents -= 1
    if held == "same":
        reason = "already in the index"
    elif held == "changed":
        reason = "id already in the index with other content (rebuild to replace it)"
    else:
        reason = "same content already in the index under another id"
    report.skip(f"{doc.source} ({doc.id})", reason)
    return True


def _counted(documents: Iterable[Document], report: ReadReport) -> Iterator[Document]:
    for doc in documents:
        report.documents += 1
        yield doc


def retrieval_text(title: str, text: str) -> str:
    """What BM25 and the embedding model see of a passage: its document's title, then its text."""
    return f"{title}\n{text}" if title else text


def _open_vectors(index_dir: Path, manifest: dict[str, Any]) -> VectorFile:
    try:
        vectors = VectorFile(index_dir / layout.VECTORS)
    except (OSError, ValueError) as err:
        raise QAError(f"the index at {str(index_dir)!r} is damaged ({layout.VECTORS}: {err}): rebuild it") from None
    if len(vectors) != manifest["counts"]["passages"]:
        raise QAError(f"the index at {str(index_dir)!r} is damaged ({layout.VECTORS} does not match its manifest): rebuild it")
    return vectors


def _generation(target: Path, previous: dict[str, Any] | None) -> int:
    """The generation of the index being replaced (0 when there is none or it is unreadable)."""
    if previous is None:
        try:
            previous = json.loads((target / layout.MANIFEST).read_text())
        except (OSError, ValueError):
            return 0
    generation = previous.get("generation", 1) if isinstance(previous, dict) else 0
    return generation if isinstance(generation, int) else 0


def _sync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk before it is renamed into place, so that a power
    cut cannot leave a complete-looking index with empty files."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _nothing_found(corpus, corpus_path, report: ReadReport, include: Sequence[str]) -> QAError:
    if corpus_path is None:
        return QAError("no documents to index")
    if include and report.files_selected == 0:
        return QAError(
            f"no file in {str(corpus)!r} matches --include {' '.join(include)} (files are matched by name "
            "unless the pattern has a '/'): check the patterns"
        )
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items())
    found = f"files read: {report.files_read}" + (f"; skipped: {skipped}" if skipped else "")
    return QAError(f"no documents found in {str(corpus)!r} ({found}); supported file types: {', '.join(SUPPORTED_SUFFIXES)}")


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
