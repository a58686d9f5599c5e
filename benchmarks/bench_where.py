"""Searching part of an index (`qa ask --where`): how long choosing the passages takes, what a
restricted search costs against a whole one, and how much of the exact restricted top 10 it finds.

For each set of conditions: the passages of the documents that meet them (`store.passages_where`,
timed once, in a fresh process the first call), then SQuAD v1.1 dev questions searched by BM25,
dense and hybrid retrieval (top 10, as `qa ask`) over the whole index and within those passages,
one question at a time. "exact" is the restricted search done the slow, sure way: every passage of
the subset scored by BM25 and by cosine; the figure is the share of its top 10 that qa's restricted
search returns (up to 20,000 passages qa scores each of them itself, so it is 100% by construction;
beyond, it reads the whole index's rankings deeper, and an approximate dense index such as IVF can
miss some). The same share for the whole index's dense search (against every passage scored) is
the dense index's own approximation, what a restricted search can at best keep.

    python benchmarks/bench_query_memory.py --passages 1000000 --keep /tmp/qa-1m   # a large index (ids doc0 … doc999999)
    python benchmarks/bench_where.py --index /tmp/qa-1m --where "id=*7" --where "id=*17" --where "id=*117" \\
        --out benchmarks/results/where_1m.json
    python benchmarks/bench_where.py --index ~/.cache/qa/indexes/open-squad-* --where "title=a*" --where "title=super_bowl_50"

Repeat ``--where`` for several sets of conditions; within one, separate conditions with " & ".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa.corpora.squad import load_squad  # noqa: E402
from qa.device import cpu_info  # noqa: E402
from qa.index.analysis import analyze  # noqa: E402
from qa.index.scores import top_k  # noqa: E402
from qa.index.where import parse_where  # noqa: E402
from qa.retriever import Index, make_retriever  # noqa: E402

from data import DATA  # noqa: E402

K = 10


def exact(index: Index, question: str, vector: np.ndarray, within: np.ndarray) -> dict[str, set[int]]:
    """The restricted top K by BM25 and by cosine, every passage of ``within`` scored."""
    found = {"bm25": set(), "dense": set()}
    scores = index.bm25_search(analyze(question))
    if scores is not None:
        found["bm25"] = {int(within[i]) for i, _ in top_k(scores.at(within), K, positive_only=True)}
    cosines = np.concatenate([index.vectors[within[i : i + 50_000]].astype(np.float32) @ vector
                              for i in range(0, len(within), 50_000)])
    found["dense"] = {int(within[i]) for i, _ in top_k(cosines, K)}
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--where", action="append", required=True, help='conditions, " & " between them (repeatable)')
    ap.add_argument("--questions", type=int, default=100, help="SQuAD v1.1 dev questions (the first N)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "where.json")
    args = ap.parse_args()
    squad = DATA / "squad" / "dev-v1.1.json"
    if not squad.exists():
        print(f"{squad} not found: skipping", file=sys.stderr)
        return 0
    questions = [e.question for e in load_squad(squad).examples[: args.questions]]
    index = Index(args.index).load()
    retrievers = {kind: make_retriever(index, kind) for kind in ("bm25", "dense", "hybrid")}
    vectors = index.question_encoder.encode(questions)
    for kind, retriever in retrievers.items():  # warm: the first searches load pages
        retriever.search(questions[0], K)
    everything = np.arange(len(index), dtype=np.int64)  # the dense index's own approximation, for comparison
    whole_found = [len({h.passage.idx for h in retrievers["dense"].search(q, K)} & exact(index, q, v, everything)["dense"]) / K
                   for q, v in zip(questions, vectors)]
    whole_dense_pct = round(100 * statistics.mean(whole_found), 2)

    rows = []
    for where in args.where:
        conditions = parse_where([c.strip() for c in where.split(" & ")])
        t0 = time.perf_counter()
        within = index.store.passages_where(conditions)
        select = time.perf_counter() - t0
        row = {"where": [str(c) for c in conditions], "passages": len(within), "of": len(index),
               "share_pct": round(100 * len(within) / len(index), 3), "select_seconds": round(select, 3)}
        if len(within):
            truth = [exact(index, q, v, within) for q, v in zip(questions, vectors)]
            for kind, retriever in retrievers.items():
                whole, part, recall, outside = [], [], [], 0
                for question, best in zip(questions, truth):
                    t0 = time.perf_counter()
                    retriever.search(question, K)
                    t1 = time.perf_counter()
                    hits = retriever.search(question, K, within=within)
                    t2 = time.perf_counter()
                    whole.append(t1 - t0)
                    part.append(t2 - t1)
                    found = {h.passage.idx for h in hits}
                    outside += int((~np.isin(list(found), within)).sum()) if found else 0
                    if kind in best and best[kind]:
                        recall.append(len(found & best[kind]) / len(best[kind]))
                row[kind] = {"whole_ms_p50": round(1000 * statistics.median(whole), 2),
                             "within_ms_p50": round(1000 * statistics.median(part), 2),
                             "exact_top10_found_pct": round(100 * statistics.mean(recall), 2) if recall else None,
                             "hits_outside": outside}
        rows.append(row)

    print(f"\n{cpu_info().name}; {args.index} ({len(index):,} passages, {index.manifest['dense'].get('faiss_index', 'IndexFlatIP')}); "
          f"{len(questions)} questions, top {K}, one at a time; the whole index's dense search finds {whole_dense_pct}% of the exact top 10")
    print("| where | passages (share) | choosing them | retriever | whole index p50 | within p50 | exact top 10 found |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for kind in retrievers:
            r = row.get(kind)
            found = "" if not r or r["exact_top10_found_pct"] is None else f"{r['exact_top10_found_pct']:.1f}%"
            print(f"| {' & '.join(row['where'])} | {row['passages']:,} ({row['share_pct']}%) | {row['select_seconds']:.2f} s | {kind} | "
                  + (f"{r['whole_ms_p50']} ms | {r['within_ms_p50']} ms | {found} |" if r else "| | |"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "index": str(args.index), "passages": len(index),
                                    "dense_index": index.manifest["dense"].get("faiss_index"), "questions": len(questions),
                                    "whole_index_dense_exact_top10_found_pct": whole_dense_pct,
                                    "k": K, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
