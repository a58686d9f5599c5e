"""Memory of a large index at query time (and of building it): a synthetic collection of
``--passages`` passages (default 1M) is indexed by qa's own `build_index`, then opened in a fresh
process the way `qa ask` opens it, and questions are asked: retrieval only, then with the reader.

- Passages: words drawn from the unigram distribution of SQuAD v1.1 training paragraphs (raw
  whitespace words), with the paragraphs' lengths capped at 150 words, so that each document is
  one passage at qa's default window (160 words); BM25 is built from them as `qa index` builds it.
- Vectors: embedding a million passages takes half a day on a 2-core CPU, so the embedding step
  is replaced by random unit vectors (float16, the model's 384 dimensions). The dense index is what
  `--dense-index auto` picks at that size (IVF-SQ8 from 200k passages); its memory does not depend
  on what the vectors mean.
- Queries: SQuAD v1.1 dev questions, hybrid retrieval of the top 10 (BM25 and dense depth 100),
  as `qa ask` does; then `Pipeline.ask` with the reader reading the top 10.

Memory is read from /proc/self/status: peak resident set (VmHWM, which counts the pages of the
memory-mapped BM25 matrix and vectors that queries touched) and anonymous resident memory
(RssAnon: what the process itself allocated). Latencies are printed too, but memory is the figure
this script exists for; take latencies from a run on an otherwise idle machine.

    python benchmarks/bench_query_memory.py --passages 1000000 --keep /tmp/qa-1m
    python benchmarks/bench_query_memory.py --index /tmp/qa-1m      # query part only, on a kept index
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from qa.device import cpu_name  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)


def status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def synthetic_documents(n: int, seed: int):
    from qa.corpora.documents import Document
    from qa.corpora.squad import load_squad

    train = load_squad(DATA / "squad" / "train-v1.1.json.gz")
    counts: Counter = Counter()
    lengths = []
    for doc in train.documents:
        words = doc.text.split()
        counts.update(words)
        lengths.append(min(len(words), 150))
    vocab = list(counts)
    p = np.array([counts[w] for w in vocab], dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    sizes = rng.choice(lengths, size=n)
    for first in range(0, n, 100_000):
        block = sizes[first : first + 100_000]
        words = rng.choice(len(vocab), size=int(block.sum()), p=p).tolist()
        at = 0
        for i, size in enumerate(block.tolist()):
            text = " ".join(vocab[j] for j in words[at : at + size])
            at += size
            yield Document(id=f"doc{first + i}", text=text, title="")


_VECTORS_RNG = np.random.default_rng(0)


def random_vectors(texts: list[str]) -> np.ndarray:
    rng = _VECTORS_RNG  # one stream for all the build's chunks
    out = np.empty((len(texts), 384), dtype=np.float32)
    for first in range(0, len(texts), 100_000):
        block = rng.standard_normal((min(100_000, len(texts) - first), 384), dtype=np.float32)
        out[first : first + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def build(n: int, target: Path, model: str) -> dict:
    import qa.indexer.build as build_module
    from qa.indexer import EmbeddingOptions, PassageOptions

    build_module.EmbeddingQueue.encode = lambda queue, texts: random_vectors(texts)
    t0 = time.perf_counter()
    result = build_module.build_index(synthetic_documents(n, seed=0), target, embedding=EmbeddingOptions(model), passages=PassageOptions(max_words=160))  # as measured: one passage a document
    return {
        "passages": result.manifest["counts"]["passages"],
        "dense_index": result.manifest["dense"]["faiss_index"],
        "build_seconds": round(time.perf_counter() - t0, 1),
        "build_peak_rss_mb": round(status_mb("VmHWM")),
        "index_mb": round(sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 2**20),
    }


def query(index_path: Path, reader: str | None, n_queries: int) -> dict:
    from qa.corpora.squad import load_squad
    from qa.pipeline import Pipeline
    from qa.retriever import Index, make_retriever

    questions = [e.question for e in load_squad(DATA / "squad" / "dev-v1.1.json").examples]
    rng = np.random.default_rng(0)
    questions = [questions[i] for i in rng.choice(len(questions), n_queries, replace=False)]
    row: dict = {"start_rss_mb": round(status_mb("VmRSS"))}
    index = Index(index_path)
    retriever = make_retriever(index, "hybrid")
    retriever.search(questions[0], 10)  # loads BM25, the dense index and the question encoder
    row["opened_rss_mb"] = round(status_mb("VmRSS"))
    times = []
    for q in questions:
        t0 = time.perf_counter()
        retriever.search(q, 10)  # with the evidence (BM25 score, cosine) answer ranking uses
        times.append(time.perf_counter() - t0)
    row.update(
        retrieve_p50_ms=round(1000 * float(np.median(times)), 1),
        retrieval_peak_rss_mb=round(status_mb("VmHWM")),
        retrieval_anon_mb=round(status_mb("RssAnon")),
    )
    if reader:
        pipe = Pipeline(index, reader=reader)
        times = []
        for q in questions:
            t0 = time.perf_counter()
            pipe.ask(q, top_k=10)
            times.append(time.perf_counter() - t0)
        row.update(
            reader=reader,
            ask_p50_ms=round(1000 * float(np.median(times)), 1),
            ask_peak_rss_mb=round(status_mb("VmHWM")),
            ask_anon_mb=round(status_mb("RssAnon")),
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--index", help="query an index kept by an earlier run instead of building one")
    parser.add_argument("--keep", help="build the index here and keep it (default: a temporary folder, removed)")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--reader", default=None, help="reader for the second part (default: qa's default reader)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "query_memory.json"))
    parser.add_argument("--part", choices=["build", "query"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part == "build":
        print(json.dumps(build(args.passages, Path(args.index), args.model)))
        return
    if args.part == "query":
        print(json.dumps(query(Path(args.index), args.reader, args.queries)))
        return

    from qa.reader import resolve_reader

    reader = resolve_reader(args.reader)
    row: dict = {}
    scratch = None
    if args.index:
        index = Path(args.index)
    else:
        index = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qa-query-memory-")) / "index"
        scratch = None if args.keep else index.parent
        out = subprocess.run([sys.executable, __file__, "--part", "build", "--index", str(index),
                              "--passages", str(args.passages), "--model", args.model],
                             check=True, capture_output=True, text=True)
        row.update(json.loads(out.stdout.strip().splitlines()[-1]))
    try:
        command = [sys.executable, __file__, "--part", "query", "--index", str(index), "--queries", str(args.queries)]
        out = subprocess.run(command + (["--reader", reader] if reader else []), check=True, capture_output=True, text=True)
        row.update(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    manifest = json.loads((index / "manifest.json").read_text()) if index.exists() else {}
    row.setdefault("passages", manifest.get("counts", {}).get("passages"))
    row.setdefault("dense_index", manifest.get("dense", {}).get("faiss_index"))

    print(f"{'passages':>10} {'dense':>8} {'opened RSS':>11} {'retrieval peak RSS':>19} {'anon':>6} {'ask peak RSS':>13} {'anon':>6}")
    print(f"{row['passages']:>10,} {row['dense_index']!s:>8} {row['opened_rss_mb']:>8} MB {row['retrieval_peak_rss_mb']:>16} MB "
          f"{row['retrieval_anon_mb']:>6} {row.get('ask_peak_rss_mb', '-'):>10} MB {row.get('ask_anon_mb', '-'):>6}")
    for key in ("build_seconds", "build_peak_rss_mb", "index_mb", "retrieve_p50_ms", "ask_p50_ms"):
        if key in row:
            print(f"{key}: {row[key]}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu_name(), **row}, indent=2) + "\n")


if __name__ == "__main__":
    main()
