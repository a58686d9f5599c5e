"""An index opened for search: manifest, passage store, and the BM25 and dense parts loaded
on first use. Scoring a question against them is the retriever's job (``qa.retriever``)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.device import pick_device
from qa.embedding import Embedder, QuestionEncoder, load_question_encoder
from qa.errors import QAError, first_line
from qa.index import layout
from qa.index.dense import open_faiss
from qa.index.remote import RemoteShard
from qa.index.scores import ArrayScores, Scores
from qa.index.shards import BM25Part, ShardedBM25, ShardedSearch, ShardedStore, ShardedVectors, parallel, serial
from qa.index.store import PassageStore

logger = logging.getLogger(__name__)


class Index:
    """A built index directory, opened read-only.

    Damage (missing or truncated files, a manifest without the keys readers need, files that
    do not agree with each other, a model of another dimension) raises :class:`QAError` saying
    to rebuild. :meth:`is_current` tells whether ``qa index`` has replaced the index since it
    was opened; parts not loaded yet are then refused rather than mixed with the old ones.
    """

    def __init__(self, path: str | Path | None = None, *, device: str | None = None, precision: str = "auto"):
        self.path = Path(path) if path is not None else layout.default_index_dir()
        self._stamp = layout.manifest_stamp(self.path)
        self.manifest: dict[str, Any] = layout.read_manifest(self.path)
        self.device = device
        self.precision = precision  # of the question encoder (see Embedder)
        self.generation = int(self.manifest.get("generation", 1))
        self.build_id = self.manifest.get("build_id")
        entries = self.manifest.get("shards") or []
        self.remote = any("url" in entry for entry in entries)  # some shards are served by other machines
        self._fan_out = parallel if self.remote else serial
        self.shards: list[Index | RemoteShard] = self._fan_out(self._open_shard, entries)
        if self.shards:
            self.store = ShardedStore([s.store for s in self.shards], [len(s) for s in self.shards], self._fan_out)
            stored, where = sum(len(s) for s in self.shards), "its shards hold"  # each shard checked its own store
        else:
            self.store = self._open_parts()
            stored, where = self.store.count(), f"{layout.STORE} holds"
        if stored != len(self):
            raise self._damaged(f"{where} {stored} passages, the manifest {len(self)}")
        dense = self.manifest["dense"]
        logger.info(
            "opened the index at %s: %d documents, %d passages in %d shard(s), generation %d, dense %s (%s, %d dims)",
            self.path, self.manifest["counts"]["documents"], len(self), max(len(self.shards), 1), self.generation,
            dense.get("faiss_index", "IndexFlatIP"), dense["model"], dense["dim"],
        )

    def _open_parts(self) -> PassageStore:
        """Check that an unsharded index's parts are there at the sizes the build wrote; its store."""
        missing = [name for name in (layout.STORE, layout.BM25_DIR, layout.VECTORS) if not (self.path / name).exists()]
        if missing:
            raise QAError(
                f"index {str(self.path)!r} is incomplete (missing {', '.join(missing)}): rebuild it with `qa index`"
            )
        problems = layout.size_problems(self.path, self.manifest)
        if problems:
            raise self._damaged("; ".join(problems[:3]))
        return PassageStore(self.path / layout.STORE)

    def _open_shard(self, entry: dict) -> Index | RemoteShard:
        """A shard as the manifest lists it (a folder of this index, or the URL of a shard server),
        checked to be the shard that the build wrote or the join found."""
        if "url" in entry:
            shard, name = RemoteShard(entry), f"the shard served at {entry['url']}"
        else:
            shard, name = Index(self.path / entry["path"], device=self.device, precision=self.precision), entry["path"]
        if shard.shards or shard.build_id != entry.get("build_id") or len(shard) != entry.get("passages"):
            raise self._damaged(f"{name} is not the shard the build wrote")
        if shard.manifest["dense"]["dim"] != self.manifest["dense"]["dim"]:
            raise self._damaged(f"{name} holds vectors of another dimension")
        return shard

    def __len__(self) -> int:
        return int(self.manifest["counts"]["passages"])

    def is_current(self) -> bool:
        """False when the index on disk is no longer the one opened (``qa index`` replaced or
        updated it, or it was removed). Costs one ``stat`` when nothing changed."""
        stamp = layout.manifest_stamp(self.path)
        if stamp == self._stamp:
            return True
        try:
            manifest = json.loads((self.path / layout.MANIFEST).read_text())
        except (OSError, ValueError):
            return False
        if isinstance(manifest, dict) and manifest.get("build_id") == self.build_id and self.build_id:
            self._stamp = stamp  # the same build, touched or copied back
            return True
        return False

    def _check_current(self, part: str) -> None:
        if not self.is_current():
            raise QAError(
                f"the index at {str(self.path)!r} was replaced after it was opened; open it again "
                f"(Index(...) or Pipeline(...)) before using its {part}"
            )

    def _damaged(self, detail: str) -> QAError:
        return QAError(f"the index at {str(self.path)!r} is damaged ({detail}): rebuild it with `qa index`")

    @functools.cached_property
    def bm25(self):
        """The bm25s model of an unsharded index (a sharded one has one per shard: ``shards[i].bm25``)."""
        import bm25s

        if self.shards:
            raise QAError(f"the index at {str(self.path)!r} is sharded: its BM25 parts are its shards' (Index.shards)")
        self._check_current("BM25 index")
        try:
            bm25 = bm25s.BM25.load(self.path / layout.BM25_DIR, mmap=True, show_progress=False)
            n_docs = int(bm25.scores["num_docs"])
            indptr = bm25.scores["indptr"]
            sizes_agree = int(indptr[-1]) == len(bm25.scores["data"]) == len(bm25.scores["indices"])
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise self._damaged(f"{layout.BM25_DIR}: {first_line(err)}") from None
        if n_docs != len(self) or not sizes_agree:
            raise self._damaged(f"{layout.BM25_DIR} does not agree with the manifest ({n_docs} passages, {len(self)} expected)")
        return bm25

    @functools.cached_property
    def bm25_lengths(self) -> np.ndarray | None:
        """Terms per passage as BM25 counted them (memory-mapped); None for an index written
        before qa stored them."""
        path = self.path / layout.BM25_DIR / layout.BM25_LENGTHS
        if self.shards or not path.is_file():
            return None
        try:
            lengths = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise self._damaged(f"{layout.BM25_DIR}/{layout.BM25_LENGTHS}: {first_line(err)}") from None
        if lengths.shape != (len(self),):
            raise self._damaged(f"{layout.BM25_DIR}/{layout.BM25_LENGTHS} holds {lengths.shape} lengths, expected {len(self)}")
        return lengths

    @functools.cached_property
    def bm25_part(self) -> BM25Part | ShardedBM25:
        """The BM25 part that scores a query with given collection statistics: this index's
        (unsharded), or its shards' searched as one (what a shard server answers with)."""
        if self.shards:
            return ShardedBM25([s.bm25_part for s in self.shards], self._fan_out)
        settings = self.manifest["bm25"]
        return BM25Part(self.bm25, self.bm25_lengths, settings["k1"], settings["b"])

    @functools.cached_property
    def vectors(self) -> np.ndarray:
        """Passage vectors as stored (float16, unit length), memory-mapped."""
        self._check_current("vectors")
        if self.shards:
            return ShardedVectors([s.vectors for s in self.shards], self._fan_out)  # type: ignore[return-value]
        try:
            vectors = np.load(self.path / layout.VECTORS, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise self._damaged(f"{layout.VECTORS}: {first_line(err)}") from None
        expected = (len(self), int(self.manifest["dense"]["dim"]))
        if vectors.shape != expected:
            raise self._damaged(f"{layout.VECTORS} has shape {vectors.shape}, the manifest says {expected}")
        return vectors

    @functools.cached_property
    def faiss(self):
        """The FAISS index the manifest names: exact (built now from the vectors) or approximate
        (read from disk); on the GPU when this index's device is CUDA and faiss supports it."""
        vectors = self.vectors
        if self.shards:
            return ShardedSearch([s.faiss for s in self.shards], self._fan_out)
        try:
            index = open_faiss(vectors, self.manifest["dense"], self.path / layout.FAISS_FILE.rsplit("/", 1)[0], pick_device(self.device))
        except RuntimeError as err:  # faiss reports damage as RuntimeError
            raise self._damaged(f"{layout.FAISS_FILE}: {first_line(err)}") from None
        if index.ntotal != len(self) or index.d != vectors.shape[1]:
            raise self._damaged(f"the dense index holds {index.ntotal} vectors of {index.d} values, expected {len(self)} of {vectors.shape[1]}")
        return index

    @functools.cached_property
    def question_encoder(self) -> QuestionEncoder | Embedder:
        """The model that embedded the passages, to embed questions the same way."""
        model = self.manifest["dense"]["model"]
        if model.startswith("/") and not Path(model).is_dir():
            raise QAError(
                f"the index at {str(self.path)!r} was embedded with the model folder {model!r}, which no longer "
                "exists: restore that folder, or rebuild the index with an available --embedding-model"
            )
        encoder = load_question_encoder(model, device=self.device, precision=self.precision)
        if encoder.dim != int(self.manifest["dense"]["dim"]):
            raise QAError(
                f"the embedding model {model!r} gives vectors of {encoder.dim} values, but the index at "
                f"{str(self.path)!r} holds {self.manifest['dense']['dim']}: it is not the model the index was built with; rebuild the index"
            )
        return encoder

    def load(self) -> Index:
        """Load now every part that is otherwise loaded on first use (BM25, vectors, the dense
        index, the question encoder), so that no question pays for it; returns the index."""
        self.load_search_parts()
        _ = self.question_encoder
        return self

    def load_search_parts(self) -> Index:
        """Load the BM25 and dense parts now (what a shard server needs: questions come to it
        as terms and vectors); returns the index."""
        _ = self.bm25_part, self.faiss
        return self

    def reopen(self) -> Index:
        """The index as it is on disk now (after ``qa index`` replaced it), with this one's
        question encoder when both were embedded with the same model (it is not loaded again)."""
        fresh = Index(self.path, device=self.device, precision=self.precision)
        same_model = fresh.manifest["dense"]["model"] == self.manifest["dense"]["model"]
        if same_model and "question_encoder" in self.__dict__:  # where functools.cached_property keeps it
            fresh.__dict__["question_encoder"] = self.__dict__["question_encoder"]
        return fresh

    def bm25_search(self, terms: list[str]) -> Scores | None:
        """The BM25 scores of a query of analysed ``terms`` as the retriever reads them (its best
        passages, given passages' scores); None when no term is in the index. A sharded index
        gathers the terms' statistics from all its shards first."""
        return self.bm25_search_many([terms])[0]

    def bm25_search_many(self, queries: Sequence[list[str]]) -> list[Scores | None]:
        """:meth:`bm25_search` of each query (a sharded index gathers the statistics of all their
        terms from each shard at once)."""
        if self.shards:
            self._check_current("BM25 index")
            return self.bm25_part.search_many(queries)
        found = [self.bm25_scores(terms) for terms in queries]
        return [None if scores is None else ArrayScores(scores) for scores in found]

    def bm25_scores(self, terms: list[str]) -> np.ndarray | None:
        """BM25 scores of every passage for a query of analysed ``terms`` (a full pass over the
        index's postings of those terms); None when no term is in the index. (Of an index whose
        shards are served by other machines, every score travels: :meth:`bm25_search` is what
        searches.)"""
        if self.shards:
            found = self.bm25_search(terms)
            return None if found is None else found.at(np.arange(len(self)))
        bm25 = self.bm25
        ids = bm25.get_tokens_ids(terms)
        if not ids:
            return None
        try:
            return bm25.get_scores_from_ids(ids)
        except (IndexError, ValueError) as err:
            raise self._damaged(f"{layout.BM25_DIR}: {first_line(err)}") from None

    def close(self) -> None:
        self.store.close()  # a sharded index's store closes its shards' stores
