"""Dense search, exact against approximate: recall@10, latency, build time and memory of qa's
FAISS index kinds (flat, IVF-SQ8, HNSW-SQ8) at growing collection sizes.

Passage vectors start from a real qa index (``--index``, e.g. the cached open-squad index) and are
grown to each size by adding noisy copies of them (re-normalised), which keeps the clustered shape
of real embeddings; queries are real SQuAD dev questions embedded with the index's model. Recall@10
is the share of the exact top 10 that the approximate index returns.

    python benchmarks/bench_dense.py --index ~/.cache/qa/indexes/open-squad-* --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from qa.corpora.squad import load_squad  # noqa: E402
from qa.index.dense import build_faiss, open_faiss  # noqa: E402
from qa.embedding import Embedder  # noqa: E402
from qa.retriever import Index  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)


def grow(vectors: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, vectors.shape[1]), dtype=np.float16)
    out[: min(n, len(vectors))] = vectors[:n]
    for first in range(len(vectors), n, 100_000):
        rows = min(100_000, n - first)
        base = vectors[rng.integers(0, len(vectors), rows)].astype(np.float32)
        base += rng.normal(0, noise, base.shape).astype(np.float32)
        out[first : first + rows] = base / np.linalg.norm(base, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="a qa index whose vectors seed the collection")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--kinds", default="flat,ivf,hnsw")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.02, help="standard deviation of the noise per dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dense.json"))
    args = parser.parse_args()
    index = Index(args.index)
    seed_vectors = np.asarray(index.vectors)
    questions = [e.question for e in load_squad(DATA / "squad" / "dev-v1.1.json").examples]
    rng = np.random.default_rng(args.seed)
    queries = Embedder(index.manifest["dense"]["model"]).encode([questions[i] for i in rng.choice(len(questions), args.queries, replace=False)])
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        vectors = grow(seed_vectors, n, args.noise, args.seed)
        exact_ids = None
        for kind in args.kinds.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                description = build_faiss(vectors, kind, Path(tmp) / "faiss.index")
                searcher = open_faiss(vectors, description, Path(tmp), "cpu")
                build = time.perf_counter() - t0
                size_mb = (Path(tmp) / "faiss.index").stat().st_size / 2**20 if kind != "flat" else vectors.shape[0] * vectors.shape[1] * 4 / 2**20
                latencies, ids = [], []
                for q in queries:
                    t0 = time.perf_counter()
                    _, found = searcher.search(q[None, :], 10)
                    latencies.append(time.perf_counter() - t0)
                    ids.append(found[0])
            if kind == "flat":
                exact_ids = ids
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])) if exact_ids else None
            row = {"passages": n, "kind": kind, "faiss_index": description["faiss_index"], "build_seconds": round(build, 1),
                   "memory_mb": round(size_mb), "query_p50_ms": round(1000 * float(np.median(latencies)), 2),
                   "recall_at_10_vs_exact": round(100 * recall, 1) if recall is not None else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seed_index": args.index, "noise": args.noise, "queries": args.queries, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
