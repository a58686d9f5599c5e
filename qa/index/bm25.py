"""Write a bm25s index from a stream of passages, in memory bounded by the vocabulary and one
block, not by the corpus.

``bm25s.BM25.index`` needs every passage's term ids in memory at once (several times over while
it builds its matrix). :class:`BM25Writer` instead appends each passage's (term, count) pairs to a
scratch file as passages arrive, and at the end writes the same score matrix bm25s would
(``method="lucene"``, float32, CSC: one column per term, rows in passage order) straight into
bm25s's files, column block by column block. ``bm25s.BM25.load`` reads the result as usual; a
test checks that the arrays equal those of ``bm25s.BM25.index`` on the same passages.
"""

from __future__ import annotations

import math
from array import array
from pathlib import Path

import bm25s
import numpy as np

from qa.index.analysis import analyze
from qa.index.layout import BM25_LENGTHS  # terms per passage: a sharded index normalises lengths over all shards

DATA = "data.csc.index.npy"
INDICES = "indices.csc.index.npy"
INDPTR = "indptr.csc.index.npy"
BLOCK_PAIRS = 2_000_000  # (passage, term) pairs per column block: ~120 bytes each (computed) while it is written


class BM25Writer:
    """``add`` each passage's retrieval text in index order, then ``write`` the index."""

    def __init__(self, scratch: Path, k1: float, b: float):
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        self._scratch_paths = (scratch.with_suffix(".terms"), scratch.with_suffix(".counts"))
        self._terms, self._counts = (open(path, "wb") for path in self._scratch_paths)
        self._lengths = array("q")  # terms per passage
        self._unique = array("q")  # distinct terms per passage (pairs in the scratch file)
        self._df = np.zeros(1024, dtype=np.int64)  # passages holding each term

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, text: str) -> None:
        vocab = self.vocab
        ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in analyze(text)), dtype=np.int32)
        terms, counts = np.unique(ids, return_counts=True)
        self._lengths.append(len(ids))
        self._unique.append(len(terms))
        if len(vocab) > len(self._df):
            self._df = np.concatenate([self._df, np.zeros(max(len(vocab), len(self._df)), np.int64)])
        self._df[terms] += 1
        self._terms.write(terms.astype(np.int32).tobytes())
        self._counts.write(counts.astype(np.int32).tobytes())

    def write(self, folder: Path) -> None:
        """Write the index to ``folder`` (bm25s's layout) and delete the scratch files."""
        self._terms.close()
        self._counts.close()
        n_docs, n_vocab = len(self._lengths), len(self.vocab)
        df = self._df[:n_vocab]
        lengths = np.asarray(self._lengths, dtype=np.int64)
        avg_doc_len = lengths.mean()
        # As bm25s computes them: idf in float64 rounded to float32; the length part in float64.
        idf = np.array([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) for d in df.tolist()], dtype=np.float32)
        norm = self.k1 * ((1 - self.b) + self.b * lengths / avg_doc_len)
        nnz = int(df.sum())
        index_dtype = np.int32 if max(nnz, n_docs, n_vocab) < 2**31 else np.int64
        indptr = np.zeros(n_vocab + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])

        # The JSON files (vocabulary with bm25s's empty token, parameters) come from bm25s itself.
        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.nonoccurrence_array = None  # lucene has none
        model.vocab_dict = {**self.vocab, "": n_vocab}
        empty = np.zeros(0, np.float32)
        model.scores = {"data": empty, "indices": empty.astype(index_dtype), "indptr": indptr, "num_docs": n_docs}
        model.save(folder, show_progress=False)
        np.save(folder / BM25_LENGTHS, lengths.astype(np.int32), allow_pickle=False)

        unique = np.asarray(self._unique, dtype=np.int64)
        pair_offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(unique, out=pair_offsets[1:])
        with open(folder / DATA, "wb") as data_file, open(folder / INDICES, "wb") as indices_file:
            _npy_header(data_file, np.float32, nnz)
            _npy_header(indices_file, index_dtype, nnz)
            for lo, hi in _column_blocks(df, BLOCK_PAIRS):
                terms, docs, tfs = self._pairs_in(lo, hi, pair_offsets, unique)
                order = np.argsort(terms, kind="stable")  # by term; passages stay in order
                terms, docs, tfs = terms[order], docs[order], tfs[order]
                tf = tfs.astype(np.float32).astype(np.float64)
                scores = idf[terms].astype(np.float64) * (tf / (norm[docs] + tf))
                data_file.write(scores.astype(np.float32).tobytes())
                indices_file.write(docs.astype(index_dtype).tobytes())
        for path in self._scratch_paths:
            path.unlink()

    def _pairs_in(self, lo: int, hi: int, pair_offsets: np.ndarray, unique: np.ndarray):
        """All (term, passage, count) pairs with ``lo <= term < hi``, read from the scratch files
        in chunks of about ``BLOCK_PAIRS`` pairs."""
        parts = []
        n_docs = len(unique)
        with open(self._scratch_paths[0], "rb") as terms_file, open(self._scratch_paths[1], "rb") as counts_file:
            first = 0
            while first < n_docs:
                last = int(np.searchsorted(pair_offsets, pair_offsets[first] + BLOCK_PAIRS, "right")) - 1
                last = min(max(last, first + 1), n_docs)
                size = 4 * int(pair_offsets[last] - pair_offsets[first])
                terms = np.frombuffer(terms_file.read(size), dtype=np.int32)
                tfs = np.frombuffer(counts_file.read(size), dtype=np.int32)
                docs = np.repeat(np.arange(first, last, dtype=np.int64), unique[first:last])
                keep = (terms >= lo) & (terms < hi)
                parts.append((terms[keep], docs[keep], tfs[keep]))
                first = last
        if not parts:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32)
        return tuple(np.concatenate(column) for column in zip(*parts))


def _column_blocks(df: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive term ranges holding at most ``budget`` pairs each (a single larger term
    forms a range of its own)."""
    blocks, lo, held = [], 0, 0
    for term, count in enumerate(df.tolist()):
        if held and held + count > budget:
            blocks.append((lo, term))
            lo, held = term, 0
        held += count
    if lo < len(df):
        blocks.append((lo, len(df)))
    return blocks


def _npy_header(f, dtype, length: int) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)}
    )


