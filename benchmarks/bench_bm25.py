"""BM25 engines side by side: rank-bm25 (the design card's library) against bm25s (qa's engine).

Synthetic corpora of N passages are drawn word by word from the unigram distribution of the SQuAD
v1.1 training paragraphs, after qa's analyzer (lower case, stop words out, Snowball stems), with
passage lengths drawn from the real passages' lengths; queries are SQuAD v1.1 dev questions,
analysed the same way. Both engines get the same token lists, k1 = 1.2, b = 0.75, and are asked
for the top 10 of every passage. Each engine runs in its own process, so that memory is its own:

- build: seconds to index the token lists;
- memory: resident memory added by building (and what querying needs), from /proc/self/status;
- query p50/p95: one question at a time, scoring every passage and taking the top 10;
- agreement: mean overlap of the two engines' top-10 sets on the same questions.

    pip install ".[bench]"
    python benchmarks/bench_bm25.py --sizes 100000,1000000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from bench_query_memory import status_mb  # benchmarks/ is on the path

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
K1, B = 1.2, 0.75


def corpus_and_queries(n: int, n_queries: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    from qa.corpora.squad import load_squad
    from qa.index.analysis import analyze
    from qa.indexer.passages import split_passages

    train = load_squad(DATA / "squad" / "train-v1.1.json.gz")
    counts: Counter = Counter()
    lengths = []
    for doc in train.documents:
        for span in split_passages(doc.text):
            tokens = analyze(f"{doc.title}\n{doc.text[span.start:span.end]}")
            counts.update(tokens)
            lengths.append(len(tokens))
    vocab = list(counts)  # passages share these str objects: 1M passages fit in memory
    p = np.array([counts[w] for w in vocab], dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    passage_lengths = rng.choice(lengths, size=n)
    words = rng.choice(len(vocab), size=int(passage_lengths.sum()), p=p)
    corpus, at = [], 0
    for length in passage_lengths:
        corpus.append([vocab[j] for j in words[at : at + length].tolist()])
        at += length
    dev = load_squad(DATA / "squad" / "dev-v1.1.json")
    picked = rng.choice(len(dev.examples), size=n_queries, replace=False)
    queries = [analyze(dev.examples[i].question) for i in picked]
    return corpus, [q for q in queries if q]


def run_engine(engine: str, n: int, n_queries: int, seed: int) -> dict:
    corpus, queries = corpus_and_queries(n, n_queries, seed)
    base = status_mb("VmRSS")
    t0 = time.perf_counter()
    if engine == "bm25s":
        import bm25s

        model = bm25s.BM25(k1=K1, b=B)
        model.index(corpus, show_progress=False)
        del corpus

        def top10(query):
            ids = model.get_tokens_ids(query)
            scores = model.get_scores_from_ids(ids) if ids else np.zeros(n, np.float32)
            top = np.argpartition(-scores, 10)[:10]
            return top[np.argsort(-scores[top])]
    else:
        from rank_bm25 import BM25Okapi

        model = BM25Okapi(corpus, k1=K1, b=B)
        del corpus

        def top10(query):
            scores = model.get_scores(query)
            top = np.argpartition(-scores, 10)[:10]
            return top[np.argsort(-scores[top])]
    build = time.perf_counter() - t0
    built = status_mb("VmRSS")
    latencies, results = [], []
    for query in queries:
        t0 = time.perf_counter()
        results.append(top10(query).tolist())
        latencies.append(time.perf_counter() - t0)
    return {
        "engine": engine,
        "passages": n,
        "queries": len(queries),
        "build_seconds": round(build, 1),
        "index_memory_mb": round(built - base),
        "peak_rss_mb": round(status_mb("VmRSS")),
        "query_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "query_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
        "top10": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--engines", default="bm25s,rank-bm25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bm25.json"))
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: ENGINE N, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_engine(args.one[0], int(args.one[1]), args.queries, args.seed)))
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        by_engine = {}
        for engine in args.engines.split(","):
            cmd = [sys.executable, __file__, "--one", engine, str(n), "--queries", str(args.queries), "--seed", str(args.seed)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            by_engine[engine] = result
            print(f"{engine:<9} {n:>9,} passages: build {result['build_seconds']:>7} s, +{result['index_memory_mb']} MB, "
                  f"p50 {result['query_p50_ms']} ms, p95 {result['query_p95_ms']} ms", flush=True)
        if len(by_engine) == 2:
            a, b = by_engine.values()
            overlap = [len(set(x) & set(y)) / 10 for x, y in zip(a["top10"], b["top10"])]
            speedup = b["query_p50_ms"] / a["query_p50_ms"]
            print(f"  top-10 agreement {100 * np.mean(overlap):.1f}%, {a['engine']} {speedup:.0f}x faster at p50")
        for result in by_engine.values():
            top = result.pop("top10")
            if len(by_engine) == 2:
                result["top10_agreement"] = round(100 * float(np.mean(overlap)), 1)
            rows.append(result)
            del top
    print(f"\n{'engine':<9} {'passages':>9} {'build s':>8} {'index MB':>8} {'p50 ms':>8} {'p95 ms':>8} {'top-10 agree':>12}")
    for r in rows:
        print(f"{r['engine']:<9} {r['passages']:>9,} {r['build_seconds']:>8} {r['index_memory_mb']:>8} {r['query_p50_ms']:>8} "
              f"{r['query_p95_ms']:>8} {r.get('top10_agreement', ''):>12}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seed": args.seed, "k1": K1, "b": B, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
