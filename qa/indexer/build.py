"""Build an index from a corpus, in stages: read documents, store and split them, analyse and
embed their passages as they stream by, then write the BM25 and dense parts and the manifest.

Everything is written through :class:`qa.index.IndexWriter`: into a staging folder that replaces
the index only once complete, so a failed or interrupted build leaves any previous index as it was.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.corpora import SUPPORTED_SUFFIXES, Document, ReadReport
from qa.device import pick_device
from qa.embedding import DEFAULT_EMBEDDING_MODEL, Embedder, host_cores
from qa.errors import QAError
from qa.fsutil import absolute
from qa.index import IndexWriter, PassageStore, layout
from qa.index.vectors import VectorFile
from qa.indexer.options import EmbeddingOptions, LayoutOptions, PassageOptions, RayOptions, ReadOptions
from qa.index.store import retrieval_text
from qa.indexer.sharding import LocalShard, ShardedParts, ShardSettings, is_sharded_build, shard_limit
from qa.indexer.stages import (SPLIT_THREADS, Parts, already_stored, embedded_precision, manifest_content, split_ahead, splitter,
                               write_search_parts)
from qa.indexer.stages import EmbeddingQueue  # noqa: F401  (qa.indexer.build.EmbeddingQueue: what tests and benchmarks replace)
from qa.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What :func:`build_index` made: where, the manifest it wrote, and the read report."""

    path: Path
    manifest: dict[str, Any]
    report: ReadReport
    seconds: float
    new_passages: int = 0


def build_index(
    corpus: str | Path | Iterable[Document],
    index_dir: str | Path | None = None,
    *,
    add: bool = False,
    reading: ReadOptions = ReadOptions(),
    passages: PassageOptions = PassageOptions(),
    embedding: EmbeddingOptions = EmbeddingOptions(),
    layout_options: LayoutOptions = LayoutOptions(),
    show_progress: bool = False,
    metadata: dict[str, Any] | None = None,
    ray: RayOptions | None = None,
) -> BuildResult:
    """Index ``corpus`` (a file or folder read as ``reading`` says, or documents) into
    ``index_dir`` (default: ``$QA_INDEX`` or ``./.qa-index``), replacing the index there, if any,
    only once the new one is complete. ``metadata`` is stored as is in the manifest. Documents
    are split as ``passages`` says (default: windows of 200 embedding-model tokens sharing 40)
    and embedded as ``embedding`` says (default: all-MiniLM-L6-v2).

    Only a folder that ``qa index`` wrote (or an empty or new one) is replaced; anything else
    is refused with :class:`QAError`. Documents stream through: each is stored, split, analysed
    for BM25 and embedded in batches as it is read, so memory does not grow with the corpus.

    With ``add=True`` the documents are added to the existing index instead: documents already
    there (same id and content, or the same content under another id) are skipped, the existing
    passages are not embedded again, and the passage settings and embedding model are the
    index's own. The new index replaces the old one only when complete; a lock file keeps a
    second writer out.

    With ``ray`` (:class:`RayOptions`), the corpus is read, split and embedded by a Ray cluster
    (:mod:`qa.indexer.ray_build`) and written here as it streams back: the same index.
    """
    started = time.perf_counter()
    if ray is None:  # a device that cannot be used fails now, not after reading the corpus (Ray's workers pick their own)
        pick_device(embedding.device)
    requested = passages.settings(embedding.model_id or DEFAULT_EMBEDDING_MODEL)
    target = absolute(index_dir if index_dir is not None else layout.default_index_dir())
    if isinstance(corpus, (str, os.PathLike)):
        corpus_root = absolute(corpus)
        if not corpus_root.exists():
            raise QAError(f"corpus path {str(corpus)!r} does not exist")
        if target == corpus_root or target in corpus_root.parents:
            raise QAError(f"the index {str(target)!r} would contain the corpus {str(corpus)!r}: choose another --index")

    with IndexWriter(target, add=add) as writer:
        previous = writer.previous
        if previous is not None and layout.is_joined(previous):
            raise QAError(
                f"the index at {str(target)!r} joins shards served by other machines: add the documents to one of them "
                "(qa index --add there), then join the shards again (qa index --join)"
            )
        model, passage_config = _model_and_passages(writer, embedding.model_id, requested)
        report = ReadReport()
        embedded: set[str] = set()  # the precisions this build's passages were embedded in
        corpus_path = str(Path(corpus).resolve()) if isinstance(corpus, (str, os.PathLike)) else None
        if ray is not None and corpus_path is None:
            raise QAError("a Ray build reads a corpus folder or file: give its path, not documents")
        if ray is None:
            embedder = Embedder(model, device=embedding.device, batch_size=embedding.batch_size, backend=embedding.backend,
                                precision=embedding.precision)
            where, dim = embedder.device, embedder.dim
        else:
            embedder, where = None, "ray"
            dim = int(previous["dense"]["dim"]) if previous is not None else None
        sharded = is_sharded_build(previous, layout_options.shard_passages)
        if ray is not None and ray.shard_writers != "here" and not sharded:
            raise QAError("--ray-shard-writers cluster writes the shards of a sharded build: add --shard-passages N")
        if layout_options.open_shards > 1 and not sharded:
            raise QAError("--open-shards fills several shards at once: add --shard-passages N")
        with progress_bar("files", disable=not show_progress) as progress:
            task = progress.add_task(f"Indexing ({where})", total=None)
            say = lambda what: progress.update(task, description=what)  # noqa: E731
            report.on_file = lambda done, total: progress.update(task, completed=done, total=total)
            parts, stored = _open_parts(writer, sharded, layout_options, ShardSettings(layout_options, passage_config, model, {"path": corpus_path}),
                                        dim, embedder, ray, say, embedded)
            stage = time.perf_counter()
            on_document = lambda n: say(f"Indexing ({where}): {n} passages")  # noqa: E731
            if ray is None:
                docs = reading.read(corpus, report) if corpus_path is not None else _counted(corpus, report)
                split = split_ahead(docs, splitter(passage_config, embedder), min(host_cores(), SPLIT_THREADS))
                documents = ((doc, windows, None) for doc, windows in split)
                embedded.add(embedder.precision)
            else:
                from qa.indexer.ray_build import documents_with_ray

                documents = documents_with_ray(corpus, report, reading=reading, passage_config=passage_config,
                                               model=model, embedding=embedding, ray=ray, embedded=embedded)
            documents_read = _ingest(documents, parts, report, stored=stored, on_document=on_document)
            logger.info("read, split and embedded %d documents into %d passages in %.1f s",
                        report.documents, parts.new_passages, time.perf_counter() - stage)
            if documents_read == 0:
                raise _nothing_found(corpus, corpus_path, report, reading.include)
            if parts.passages == 0:
                raise QAError("the documents contain no words to index")
            if not parts.has_words:
                raise QAError("the documents hold no searchable words (only stop words or symbols): nothing to index")
            precision = embedded_precision(previous, embedded if parts.new_passages else set())
            content = _content(parts, previous, {"path": corpus_path, **report.as_dict()}, passage_config, model, precision,
                               layout_options, say)
        content["metadata"] = {**(previous or {}).get("metadata", {}), **(metadata or {})}
        manifest = writer.commit(content)
    seconds = time.perf_counter() - started
    logger.info("indexed into %s (generation %d) in %.1f s", target, manifest["generation"], seconds)
    return BuildResult(target, manifest, report, seconds, parts.new_passages)


def _open_parts(writer: IndexWriter, sharded: bool, layout_options: LayoutOptions, settings: ShardSettings, dim: int | None,
                embedder: Embedder | None, ray: RayOptions | None, say: Callable[[str], None],
                embedded: set[str]) -> tuple[Parts | ShardedParts, Any]:
    """Where the build streams to: the parts of one index (with those of the index added to
    carried over), or shards (written here, or by Ray writer actors); and the store of what the
    index added to holds (None for a new index)."""
    previous = writer.previous
    if sharded:
        if ray is not None:
            from qa.indexer.ray_build import shard_writers

            open_shard = shard_writers(settings, ray.shard_writers)
        else:
            open_shard = lambda folder, dim: LocalShard(folder, dim, embedder, settings, say)  # noqa: E731
        parts = ShardedParts(writer, shard_limit(previous, layout_options.shard_passages), dim, open_shard, layout_options.open_shards,
                             embedded)
        return parts, parts.kept_store
    if previous is not None:
        writer.copy_previous(layout.STORE)
    parts = Parts(writer.staging, dim, embedder, append=previous is not None)
    if previous is not None:
        say("Reading the index")
        _carry_over(parts, writer)
    return parts, parts.store if previous is not None else None


def _content(parts: Parts | ShardedParts, previous, read, passage_config, model: str, precision: str | None,
             layout_options: LayoutOptions, say: Callable[[str], None]) -> dict[str, Any]:
    """The manifest's content: of one index once its BM25 and dense parts are written, or of the
    shards (each wrote its own parts)."""
    if isinstance(parts, ShardedParts):
        counts = {"documents": parts.documents, "passages": parts.passages}
        kinds = sorted({e.get("faiss_index", "IndexFlatIP") for e in parts.shards})
        content = manifest_content(previous, read, counts, passage_config, model, parts.dim, {"faiss_index": ", ".join(kinds)}, precision)
        return {**content, "shards": parts.shards, "shard_passages": parts.limit}
    faiss_description = write_search_parts(parts, layout_options, say)
    counts = {"documents": parts.store.documents, "passages": parts.passages}
    return manifest_content(previous, read, counts, passage_config, model, parts.dim, faiss_description, precision)


def _model_and_passages(writer: IndexWriter, model: str | None, requested: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The embedding model and passage settings of this build: as asked for a new index, the
    index's own when adding to one."""
    previous = writer.previous
    if previous is None:
        return model or DEFAULT_EMBEDDING_MODEL, requested
    if model and model != previous["dense"]["model"]:
        raise QAError(
            f"the index at {str(writer.target)!r} was embedded with {previous['dense']['model']!r}, not "
            f"{model!r}: add with its model, or build a new index"
        )
    return previous["dense"]["model"], previous["passages"]


def _carry_over(parts: Parts, writer: IndexWriter) -> None:
    """Adding to an index: its stored passages are counted for BM25 again, its vectors copied."""
    store = PassageStore(writer.staging / layout.STORE)
    for title, text in store.texts():
        parts.bm25.add(retrieval_text(title, text))
    store.close()
    old = _open_vectors(writer.target, writer.previous)
    for first in range(0, len(old), 100_000):
        parts.add_vectors(old[first : first + 100_000])


def _ingest(
    documents: Iterable[tuple[Document, Iterable[tuple[int, int]], np.ndarray | None]],
    parts: Parts | ShardedParts,
    report: ReadReport,
    *,
    stored: Any,
    on_document: Callable[[int], None],
) -> int:
    """Store, analyse and embed each document with its windows as they arrive: split in this
    process (ahead, on threads: :func:`qa.indexer.stages.split_ahead`) and embedded through the
    queue, or split and embedded on Ray workers (:mod:`qa.indexer.ray_build`, vectors given).
    Documents that ``stored`` (the store of the index added to) holds are skipped. Returns the
    documents read."""
    documents_read = 0
    for doc, windows, vectors in documents:
        documents_read += 1
        if stored is not None and already_stored(stored, doc, report):
            continue
        if parts.add_document(doc, windows, report, vectors):
            on_document(parts.new_passages)
    parts.close()
    return documents_read


def _counted(documents: Iterable[Document], report: ReadReport) -> Iterator[Document]:
    for doc in documents:
        report.documents += 1
        yield doc


def _open_vectors(index_dir: Path, manifest: dict[str, Any]) -> VectorFile:
    try:
        vectors = VectorFile(index_dir / layout.VECTORS)
    except (OSError, ValueError) as err:
        raise QAError(f"the index at {str(index_dir)!r} is damaged ({layout.VECTORS}: {err}): rebuild it") from None
    if len(vectors) != manifest["counts"]["passages"]:
        raise QAError(f"the index at {str(index_dir)!r} is damaged ({layout.VECTORS} does not match its manifest): rebuild it")
    return vectors


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
