"""Choose the hybrid retriever's fusion: the reciprocal rank fusion offset k and the weight of the
dense ranking against BM25's, on training questions, reported on dev questions.

Both evaluation corpora, as ``qa evaluate`` indexes them (the cached index, built on first use):
open-squad (every SQuAD v1.1 paragraph) and covid-qa (every COVID-QA article). Each question's top
``--depth`` BM25 and dense passages are retrieved once; every fusion of the grid then ranks them,
and a passage is relevant when it contains a gold answer (as ``qa evaluate``'s recall).

The search sees only training questions: a seeded sample of ``--train-questions`` SQuAD v1.1 train
questions and all COVID-QA train questions (their paragraphs and articles are in the corpora). It
picks the fusion with the best recall@10 (the passages the pipeline reads by default) averaged over
the two corpora, MRR breaking ties. Reported on the dev questions (open-squad: the seeded sample
``qa evaluate open-squad --limit N --seed S`` draws; covid-qa: all): BM25 alone, dense alone, plain
RRF (k = 60, equal weights), the fusion qa ships, and the search's best.

    python benchmarks/tune_hybrid.py --train-questions 2000 --dev-questions 2000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa.corpora.squad import load_squad  # noqa: E402
from qa.eval import datasets  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.eval.retrieval import (  # noqa: E402
    contains_answer,
    first_relevant,
    mean_reciprocal_rank,
    recall_curve,
)
from qa.corpora.squad import sample_examples  # noqa: E402
from qa.eval.runner import prepare_index  # noqa: E402
from qa.retriever import Index, reciprocal_rank_fusion  # noqa: E402
from qa.retriever.retrievers import HYBRID_WEIGHTS, RRF_K, BM25Retriever, DenseRetriever  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
RRF_KS = (5, 10, 20, 30, 60)
DENSE_WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
KS = (1, 5, 10, 20)


def rankings(index: Index, examples, depth: int) -> list[dict]:
    """Each question's BM25 and dense top ``depth`` ids, and which passages hold an answer."""
    bm25, dense = BM25Retriever(index), DenseRetriever(index)
    questions = [e.question for e in examples]
    dense_ids = []
    for first in range(0, len(questions), 64):
        found = dense.search_batch(questions[first : first + 64], depth, evidence=False)
        dense_ids += [[(h.passage.idx, h.score) for h in hits] for hits in found]
    rows = []
    for example, dense_hits in zip(examples, dense_ids):
        bm25_hits = [(h.passage.idx, h.score) for h in bm25.search(example.question, depth, evidence=False)]
        ids = list(dict.fromkeys(i for i, _ in bm25_hits + dense_hits))
        relevant = {p.idx for p in index.store.get(ids) if contains_answer(p.text, example.answers)}
        rows.append({"bm25": bm25_hits, "dense": dense_hits, "relevant": relevant})
    return rows


def metrics(rows: list[dict], rank) -> dict:
    """Recall@k (%) and MRR of the ranking ``rank(row)`` gives each question."""
    firsts = [first_relevant([i in row["relevant"] for i in rank(row)]) for row in rows]
    curve = recall_curve(firsts, max(KS))
    return {**{f"R@{k}": round(100 * float(curve[k - 1]), 2) for k in KS}, "MRR": round(mean_reciprocal_rank(firsts), 4)}


def fusion(rrf_k: float, dense_weight: float):
    def rank(row):
        fused = reciprocal_rank_fusion([row["bm25"], row["dense"]], k=rrf_k, weights=(1.0, dense_weight))
        return [i for i, _ in fused]

    return rank


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="data directory (as qa evaluate --data)")
    ap.add_argument("--train-questions", type=int, default=2000, help="SQuAD v1.1 train questions to tune on")
    ap.add_argument("--dev-questions", type=int, default=2000, help="open-squad dev questions to report on")
    ap.add_argument("--depth", type=int, default=100, help="passages each retriever gives the fusion (as qa)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "hybrid_fusion.json")
    args = ap.parse_args()
    if not (args.data / "squad").is_dir() or not (args.data / "covid-qa").is_dir():
        print(f"SQuAD or COVID-QA not found under {args.data}: skipping", file=sys.stderr)
        return 0

    squad_train = load_squad(datasets.resolve("squad-v1.1-train", args.data), id_prefix="train/")
    covid_train = load_squad(datasets.resolve("covid-qa-train", args.data))
    corpora = {
        "open-squad": sample_examples(squad_train.examples, args.train_questions, args.seed),
        "covid-qa": covid_train.examples,
    }
    train, dev = {}, {}
    for name, train_examples in corpora.items():
        benchmark = load_question_set(name, data=args.data)
        index = Index(prepare_index(benchmark, show_progress=True))
        dev_examples = sample_examples(benchmark.examples, args.dev_questions if name == "open-squad" else None, args.seed)
        train[name] = rankings(index, train_examples, args.depth)
        dev[name] = rankings(index, [e for e in dev_examples if e.answerable], args.depth)
        print(f"{name}: {len(train[name])} train and {len(dev[name])} dev questions retrieved", file=sys.stderr)

    grid = {
        (k, w): {name: metrics(rows, fusion(k, w)) for name, rows in train.items()}
        for k, w in itertools.product(RRF_KS, DENSE_WEIGHTS)
    }

    def objective(setting):
        cells = grid[setting].values()
        return statistics.fmean(c["R@10"] for c in cells), statistics.fmean(c["MRR"] for c in cells)

    best = max(grid, key=objective)
    shipped = (RRF_K, HYBRID_WEIGHTS[1] / HYBRID_WEIGHTS[0])
    methods = {
        "bm25": lambda row: [i for i, _ in row["bm25"]],
        "dense": lambda row: [i for i, _ in row["dense"]],
        "rrf k=60, 1:1": fusion(60, 1.0),
        f"qa: k={shipped[0]}, 1:{shipped[1]:g}": fusion(*shipped),
        f"best: k={best[0]}, 1:{best[1]:g}": fusion(*best),
    }
    report = {
        "train_questions": {n: len(r) for n, r in train.items()},
        "dev_questions": {n: len(r) for n, r in dev.items()},
        "depth": args.depth,
        "seed": args.seed,
        "shipped": {"rrf_k": shipped[0], "dense_weight": shipped[1]},
        "best": {"rrf_k": best[0], "dense_weight": best[1]},
        "grid_train": [{"rrf_k": k, "dense_weight": w, **cells} for (k, w), cells in grid.items()],
        "results": [],
    }
    print(f"\n{'corpus':<11} {'method':<18} {'train R@10':>10} {'train MRR':>9}  "
          + " ".join(f"{'dev R@' + str(k):>9}" for k in KS) + f" {'dev MRR':>7}")
    for name, train_rows in train.items():
        for method, rank in methods.items():
            t, d = metrics(train_rows, rank), metrics(dev[name], rank)
            report["results"].append({"corpus": name, "method": method, "train": t, "dev": d})
            print(f"{name:<11} {method:<18} {t['R@10']:>10.2f} {t['MRR']:>9.4f}  "
                  + " ".join(f"{d[f'R@{k}']:>9.2f}" for k in KS) + f" {d['MRR']:>7.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
