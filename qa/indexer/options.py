"""What a build can be told, grouped by stage: reading the corpus, splitting it into passages,
embedding them, and laying out the dense index. Each group checks its own values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.corpora import Document, ReadReport, read_corpus
from qa.corpora.readers import DEFAULT_MAX_FILE_MB
from qa.embedding import DEFAULT_EMBEDDING_MODEL
from qa.errors import QAError
from qa.index.dense import KINDS
from qa.indexer.passages import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS, DEFAULT_OVERLAP_WORDS


@dataclass(frozen=True)
class ReadOptions:
    """Which files of a corpus folder are read, and the fields of JSON/JSONL records."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_mb: float = DEFAULT_MAX_FILE_MB
    id_field: str = "id"
    title_field: str = "title"
    text_field: str = "text"

    def read(self, path: str | Path, report: ReadReport) -> Iterator[Document]:
        return read_corpus(
            path, report, include=self.include, exclude=self.exclude, max_file_mb=self.max_file_mb,
            id_field=self.id_field, title_field=self.title_field, text_field=self.text_field,
        )


@dataclass(frozen=True)
class PassageOptions:
    """How documents are split: windows of ``max_words`` words when given, else of
    ``max_tokens`` (default 200) tokens of the embedding model's tokenizer, ending at a sentence
    end where cheap."""

    max_tokens: int | None = None
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    max_words: int | None = None
    overlap_words: int = DEFAULT_OVERLAP_WORDS

    def settings(self, embedding_model: str = DEFAULT_EMBEDDING_MODEL) -> dict[str, Any]:
        """The manifest's ``passages`` entry for these options with ``embedding_model``'s tokenizer."""
        if self.max_words is not None and self.max_tokens is not None:
            raise QAError("--max-words and --max-tokens choose different windows: give one of them, not both")
        if self.max_words is not None:
            if self.overlap_words >= self.max_words:
                raise QAError(f"--overlap-words must be less than --max-words (got {self.overlap_words} and {self.max_words})")
            return {"unit": "words", "max_words": self.max_words, "overlap_words": self.overlap_words}
        max_tokens = DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens
        if self.overlap_tokens >= max_tokens:
            raise QAError(f"--overlap-tokens must be less than --max-tokens (got {self.overlap_tokens} and {max_tokens})")
        return {"unit": "tokens", "tokenizer": embedding_model, "max_tokens": max_tokens,
                "overlap_tokens": self.overlap_tokens, "sentence_aware": True}


@dataclass(frozen=True)
class EmbeddingOptions:
    """The sentence-transformers model (a local folder or hub id; None: all-MiniLM-L6-v2, or
    with ``add`` the index's own), where and how many passages at a time it embeds, and what runs it."""

    model: str | None = None
    device: str | None = None
    batch_size: int | None = None
    backend: str = "auto"
    """What runs the encoder (:func:`qa.device.choose_backend`): ``auto``, ``torch`` or ``openvino``."""
    precision: str = "auto"
    """The encoder's arithmetic (:class:`qa.embedding.Embedder`): ``auto``, ``fp32``, ``bf16``,
    ``fp16`` (CUDA), or ``int8`` (static int8 on OpenVINO where ``qa[openvino]`` is installed)."""

    @property
    def model_id(self) -> str | None:
        """How the manifest names the model: a local folder by its absolute path (so that the
        index opens from any directory), a hub id as given."""
        if not self.model:
            return None
        path = Path(self.model).expanduser()
        return str(path.resolve()) if path.is_dir() else self.model


@dataclass(frozen=True)
class LayoutOptions:
    """How the index is laid out on disk. ``dense_index``: the dense index's kind, ``auto``
    (exact below 200,000 passages, else IVF), ``flat``, ``ivf`` or ``hnsw`` (see
    :mod:`qa.index.dense`), per shard in a sharded index. ``shard_passages``: write shards of this
    many passages or just over (a document's passages stay in one shard; each shard is a store, a
    BM25 and a dense part, and the shards are searched as one index); when
    adding to an index, the added documents go into new shards and an unsharded index becomes
    shard 0. Adding to a sharded index always writes new shards (of the size it was built with).
    ``open_shards``: new shards filled at once, each document going to the open one with the
    fewest passages, so that a Ray build's writer actors add in parallel (1: one after the other,
    in corpus order; with more, the same passages are numbered in another order)."""

    dense_index: str = "auto"
    shard_passages: int | None = None
    open_shards: int = 1

    def __post_init__(self):
        if self.dense_index not in KINDS:
            raise QAError(f"unknown dense index {self.dense_index!r}: choose from {', '.join(KINDS)}")
        if self.shard_passages is not None and self.shard_passages < 1:
            raise QAError(f"--shard-passages must be at least 1, not {self.shard_passages}")
        if self.open_shards < 1:
            raise QAError(f"--open-shards must be at least 1, not {self.open_shards}")


SHARD_WRITERS = ("here", "cluster")


@dataclass(frozen=True)
class RayOptions:
    """Where and how a Ray build runs (``qa index --ray``).

    ``address``: a running cluster's (``auto``: the one this machine belongs to), ``local`` (a new
    Ray instance of this machine's CPUs), or None (Ray's own choice: ``$RAY_ADDRESS``, else local).
    ``workers``: embedding actors; None gives one per GPU of the cluster, else one per
    ``cpus_per_worker`` CPUs; a number of CPU actors share the cluster's CPUs evenly.
    ``documents_per_batch``: the documents handed to an actor at a time.
    ``shard_writers`` (a sharded build's): ``here``, a writer actor per shard on this machine,
    whose disk holds the index; or ``cluster``, the shards dealt in turn to the cluster's nodes,
    each written on its node's local disk and copied into the index folder when complete (which
    then must be on a file system every node mounts at the same path)."""

    address: str | None = "local"
    workers: int | None = None
    cpus_per_worker: int = 2
    documents_per_batch: int = 64
    shard_writers: str = "here"

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise QAError(f"--ray-workers must be at least 1 (got {self.workers})")
        if self.cpus_per_worker < 1 or self.documents_per_batch < 1:
            raise QAError("--ray-cpus-per-worker and the documents per batch must be at least 1")
        if self.shard_writers not in SHARD_WRITERS:
            raise QAError(f"--ray-shard-writers is {' or '.join(SHARD_WRITERS)}, not {self.shard_writers!r}")
