"""Retrieval with one question/passage encoder against another (issue 18): recall@1/5/10/20 and MRR
of BM25, dense and hybrid retrieval on the dev questions of open-squad and COVID-QA.

    python benchmarks/compare_encoders.py --models sentence-transformers/all-MiniLM-L6-v2,/work/runs/retriever18/minilm-sc \\
        --dev-questions 2000 --out benchmarks/results/encoders.json

Each model gets the benchmark corpora's indexes as ``qa evaluate --embedding-model MODEL`` builds
and caches them (built on first use: the whole corpus is embedded, which is most of a run's time).
The dev questions are those ``qa evaluate open-squad --limit N --seed S`` draws and all of COVID-QA
dev; a passage is relevant when it contains a gold answer (as ``qa evaluate``'s recall). Hybrid is
the fusion qa ships (``qa.retriever.retrievers.RRF_K``, ``HYBRID_WEIGHTS``), so the table says what
``qa ask`` would retrieve with each model; BM25 does not depend on the model and is the same in
every row (a check that both runs searched the same corpus and questions). The row "either"
counts a question found at k when BM25's top k or dense's top k holds a relevant passage: about
the most any fusion of the two lists can give at k (it has no MRR). End-to-end EM/F1 is
``qa evaluate``'s job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa.corpora.squad import sample_examples  # noqa: E402
from qa.device import cpu_info  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.eval.runner import prepare_index  # noqa: E402
from qa.retriever import Index  # noqa: E402
from qa.retriever.retrievers import HYBRID_WEIGHTS, RRF_K  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
from tune_hybrid import KS, fusion, metrics, rankings  # noqa: E402  (the same recall and fusion as the fusion's choice)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated encoders: hub ids or folders (qa train retriever's output)")
    ap.add_argument("--data", type=Path, default=DATA, help="data directory (as qa evaluate --data)")
    ap.add_argument("--dev-questions", type=int, default=2000, help="open-squad dev questions (all of COVID-QA dev is used)")
    ap.add_argument("--depth", type=int, default=100, help="passages each retriever gives the fusion (as qa)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "encoders.json")
    args = ap.parse_args()
    if not (args.data / "squad").is_dir() or not (args.data / "covid-qa").is_dir():
        print(f"SQuAD or COVID-QA not found under {args.data}: skipping", file=sys.stderr)
        return 0

    methods = {
        "bm25": lambda row: [i for i, _ in row["bm25"]],
        "dense": lambda row: [i for i, _ in row["dense"]],
        "hybrid": fusion(RRF_K, HYBRID_WEIGHTS[1] / HYBRID_WEIGHTS[0]),
    }
    benchmarks = {}  # each corpus and its dev questions, the same for every model
    for name in ("open-squad", "covid-qa"):
        benchmark = load_question_set(name, data=args.data)
        examples = sample_examples(benchmark.examples, args.dev_questions if name == "open-squad" else None, args.seed)
        benchmarks[name] = benchmark, [e for e in examples if e.answerable]
    results = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for name, (benchmark, examples) in benchmarks.items():
            started = time.perf_counter()
            index = Index(prepare_index(benchmark, embedding_model=model, show_progress=True))
            built = time.perf_counter() - started
            rows = rankings(index, examples, args.depth)
            for method, rank in methods.items():
                results.append({"model": model, "corpus": name, "method": method, "questions": len(rows),
                                "index_seconds": round(built, 1), **metrics(rows, rank)})
            results.append({"model": model, "corpus": name, "method": "either", "questions": len(rows),
                            "index_seconds": round(built, 1), **either(rows)})
            print(f"{model} {name}: {len(rows)} questions (index ready in {built:.0f} s)", file=sys.stderr)

    print(f"\n{cpu_info().name}; hybrid: RRF k = {RRF_K}, dense weight {HYBRID_WEIGHTS[1] / HYBRID_WEIGHTS[0]:g}")
    print("| corpus | retrieval | encoder | " + " | ".join(f"R@{k}" for k in KS) + " | MRR |")
    print("|---|---|---|" + "---|" * (len(KS) + 1))
    order = [*methods, "either"]
    for r in sorted(results, key=lambda r: (r["corpus"] != "open-squad", order.index(r["method"]))):
        mrr = "" if r["MRR"] is None else f"{r['MRR']:.3f}"
        print(f"| {r['corpus']} ({r['questions']}) | {r['method']} | {r['model']} | "
              + " | ".join(f"{r[f'R@{k}']:.2f}" for k in KS) + f" | {mrr} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "seed": args.seed, "depth": args.depth,
                                    "fusion": {"rrf_k": RRF_K, "weights": list(HYBRID_WEIGHTS)}, "results": results}, indent=2) + "\n")
    return 0


def either(rows: list[dict]) -> dict:
    """Recall@k (%) of BM25's and dense's top k taken together: a relevant passage in either list."""
    def found(row, k):
        return bool(row["relevant"] & {i for i, _ in row["bm25"][:k] + row["dense"][:k]})

    return {**{f"R@{k}": round(100 * sum(found(row, k) for row in rows) / len(rows), 2) for k in KS}, "MRR": None}


if __name__ == "__main__":
    sys.exit(main())
