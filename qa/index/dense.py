"""The FAISS index over passage vectors: exact for small collections, approximate for large ones.

- ``flat``: exact inner product over float32 copies of the stored vectors, built when the index
  is opened (nothing extra on disk). Memory: 4 bytes x dim per passage.
- ``ivf``: inverted lists over k-means cells with 8-bit scalar-quantised vectors
  (``IVF{nlist},SQ8``, inner product), searched in ``nprobe`` cells. Memory: ~1 byte x dim per
  passage; written to ``dense/faiss.index``.
- ``ivfpq``: inverted lists with product-quantised vectors (``IVF{nlist},PQ{dim/8}``: 8 bits for
  each group of 8 dimensions), for collections whose 8-bit vectors outgrow memory. Memory:
  dim / 8 bytes per passage (48 for all-MiniLM-L6-v2's 384) plus 8 for its id; trained on a
  sample of at least :data:`PQ_MIN_TRAIN` vectors, so it needs that many passages. Alone it
  ranks coarsely, so its :data:`RERANK_CANDIDATES` best are re-scored exactly from the stored
  float16 vectors (:class:`ExactRerank`), which stay on disk, memory-mapped: faiss's own
  ``IndexRefine`` would hold a second copy of every vector in memory.
- ``hnsw``: a navigable small-world graph over 8-bit vectors (``HNSW32,SQ8``), searched with
  ``efSearch``. Memory: ~1 byte x dim + 256 bytes of links per passage.

``auto`` chooses ``flat`` below :data:`APPROXIMATE_FROM` passages and ``ivf`` from there on.
On a machine whose faiss has GPU support, flat and IVF indexes are searched on the GPU.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import QAError

logger = logging.getLogger(__name__)

KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
APPROXIMATE_FROM = 200_000
IVF_NPROBE = 32
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 96
RERANK_CANDIDATES = 100  # IVF-PQ candidates re-scored exactly per query (docs/SCALING.md measures recall)
TRAIN_PER_CELL = 64  # k-means training vectors per IVF cell
PQ_MIN_TRAIN = 39 * 256  # faiss asks 39 training vectors per centroid of each 8-bit sub-quantiser
_GPU_RESOURCES: list = []  # kept alive as long as the GPU indexes that use them


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise QAError(f"unknown dense index {kind!r}: choose from {', '.join(KINDS)}")
    return kind


def choose_kind(kind: str, n_passages: int) -> str:
    check_kind(kind)
    if kind == "auto":
        return "flat" if n_passages < APPROXIMATE_FROM else "ivf"
    return kind


def ivf_cells(n_passages: int) -> int:
    """About 4·√n cells (faiss's usual advice), at least 1 and at most n / 39."""
    return max(1, min(int(4 * math.sqrt(n_passages)), n_passages // 39 or 1))


def build_faiss(vectors: np.ndarray, kind: str, path: Path, seed: int = 0) -> dict[str, Any]:
    """Build the ``kind`` index over ``vectors`` (unit length), write it to ``path`` unless it is
    ``flat``, and return its description for the manifest."""
    import faiss

    n, dim = vectors.shape
    if kind == "flat":
        return {"faiss_index": "IndexFlatIP"}
    if kind in ("ivf", "ivfpq"):
        nlist = ivf_cells(n)
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            name, train = f"IVF{nlist},SQ8", TRAIN_PER_CELL * nlist
        else:
            if n < PQ_MIN_TRAIN or dim % 8:
                raise QAError(f"--dense-index ivfpq needs at least {PQ_MIN_TRAIN:,} passages and a dimension divisible by 8 "
                              f"(this index: {n:,} of {dim}): use ivf or flat")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, dim // 8, 8, faiss.METRIC_INNER_PRODUCT)
            name, train = f"IVF{nlist},PQ{dim // 8}", max(TRAIN_PER_CELL * nlist, PQ_MIN_TRAIN)
        rng = np.random.default_rng(seed)
        sample = rng.choice(n, size=min(n, train), replace=False)
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
        description = {"faiss_index": name, "nprobe": min(IVF_NPROBE, nlist)}
    elif kind == "hnsw":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.train(np.ascontiguousarray(vectors[: min(n, 100_000)], dtype=np.float32))
        description = {"faiss_index": f"HNSW{HNSW_M},SQ8", "ef_search": HNSW_EF_SEARCH}
    else:
        raise QAError(f"unknown dense index {kind!r}")
    for first in range(0, n, 100_000):
        index.add(np.ascontiguousarray(vectors[first : first + 100_000], dtype=np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    return {**description, "faiss_file": path.name}


def open_faiss(vectors: np.ndarray, description: dict[str, Any], folder: Path, device: str | None):
    """The searchable index the manifest's ``description`` names (on the GPU when ``device`` is
    CUDA and faiss can put it there; else on the CPU)."""
    import faiss

    if description.get("faiss_index", "IndexFlatIP") == "IndexFlatIP":
        index = faiss.IndexFlatIP(vectors.shape[1])
        for first in range(0, len(vectors), 100_000):
            index.add(np.ascontiguousarray(vectors[first : first + 100_000], dtype=np.float32))
    else:
        path = folder / description["faiss_file"]
        if not path.is_file():
            raise QAError(f"index is incomplete (missing {path}): rebuild it with `qa index`")
        index = faiss.read_index(str(path))
        if "nprobe" in description:
            faiss.extract_index_ivf(index).nprobe = int(description["nprobe"])
        if "ef_search" in description:
            index.hnsw.efSearch = int(description["ef_search"])
    if device and device.startswith("cuda") and hasattr(faiss, "StandardGpuResources") and "HNSW" not in description.get("faiss_index", ""):
        try:
            gpu = int(device.split(":")[1]) if ":" in device else 0
            resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(resources, gpu, index)
            _GPU_RESOURCES.append(resources)
        except (RuntimeError, AttributeError) as err:  # no usable GPU in this faiss: stay on the CPU
            logger.info("the dense index stays on the CPU: faiss could not use %s (%s)", device, err)
        else:
            logger.info("the dense index is searched on %s", device)
    if ",PQ" in description.get("faiss_index", ""):
        return ExactRerank(index, vectors)
    return index


class ExactRerank:
    """A product-quantised index searched for ``candidates`` passages per query, which are then
    scored exactly (inner product with the stored vectors) and the best ``k`` returned. Searches
    like a faiss index (``search``, ``ntotal``, ``d``)."""

    def __init__(self, index, vectors: np.ndarray, candidates: int = RERANK_CANDIDATES):
        self.index, self.vectors, self.candidates = index, vectors, candidates
        self.ntotal, self.d = index.ntotal, index.d

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        _, found = self.index.search(queries, min(max(k, self.candidates), self.ntotal))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, candidates) in enumerate(zip(queries, found)):
            candidates = np.sort(candidates[candidates >= 0])  # in file order: fewer page reads
            exact = self.vectors[candidates].astype(np.float32) @ query
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(best)], ids[row, : len(best)] = exact[best], candidates[best]
        return scores, ids
