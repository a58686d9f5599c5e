"""Choose the weights that add retrieval evidence to the reader's span score.

An answer's score is ``reader span score + w_bm25 * BM25 score + w_dense * cosine`` of its
passage. This script reads the top passages of a seeded sample of open-squad dev questions once
(the same sample as ``qa evaluate open-squad --limit N --seed S``, over the same cached index),
then grid-searches the two weights on the questions after the first ``--held-out`` ones and reports,
on those held-out questions (which the search never sees), no evidence (0, 0), the weights qa ships,
and the best weights of the search.

    python benchmarks/tune_answer_fusion.py --reader ../shared/models/reference-reader-minilm-l6-squad1 \\
        --questions 1000 --held-out 300 --seed 0

With ``--tune-on train``, the weights are searched on ``--questions`` SQuAD v1.1 *training*
questions asked over the same open-squad index (which holds the training paragraphs), drawn from
those after the first ``--train-skip`` (a reader trained on ``qa train open-data --limit N`` has
not seen the questions after the first N), and all ``--held-out`` questions are dev questions: no
dev question chooses the weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.corpora.squad import load_squad, sample_examples  # noqa: E402
from qa.eval.runner import prepare_index  # noqa: E402
from qa.metrics import squad_scores  # noqa: E402
from qa.pipeline import BM25_WEIGHT, DENSE_WEIGHT  # noqa: E402
from qa.reader import Reader  # noqa: E402
from qa.retriever import Index, make_retriever  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
BM25_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
DENSE_WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0)


def evaluate_weights(rows, k, w_bm25, w_dense):
    em = f1 = 0.0
    for row in rows:
        best, best_score = "", -np.inf
        for p, reader_score, text in row["spans"]:
            if p < k:
                s = reader_score + w_bm25 * row["bm25"][p] + w_dense * row["dense"][p]
                if s > best_score:
                    best, best_score = text, s
        e, f = squad_scores(best, row["golds"])
        em, f1 = em + e, f1 + f
    return 100 * em / len(rows), 100 * f1 / len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="data directory (as qa evaluate --data)")
    ap.add_argument("--reader", required=True)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-k", type=int, default=20)
    ap.add_argument("--tune-on", choices=("dev", "train"), default="dev", help="where the tuning questions come from")
    ap.add_argument("--train-skip", type=int, default=0, help="with --tune-on train: leave out the first N training questions")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/answer_fusion.json"))
    args = ap.parse_args()
    if not (args.data / "squad").is_dir():
        print(f"SQuAD not found under {args.data}: skipping", file=sys.stderr)
        return 0
    benchmark = load_question_set("open-squad", data=args.data)
    if args.tune_on == "dev":
        questions = [(e.question, e.answers) for e in sample_examples(benchmark.examples, args.questions, args.seed)]
    else:
        train = [e for e in load_squad(args.data / "squad" / "train-v1.1.json.gz").examples if e.answerable][args.train_skip :]
        questions = [(e.question, e.answers) for e in sample_examples(benchmark.examples, args.held_out, args.seed)]
        questions += [(e.question, e.answers) for e in sample_examples(train, args.questions, args.seed)]
    index = Index(prepare_index(benchmark, show_progress=True))
    retriever = make_retriever(index, "hybrid")
    reader = Reader(args.reader)
    rows = []
    for i, (question, golds) in enumerate(questions):
        hits = retriever.search(question, args.max_k)
        spans = reader.read(question, [h.passage.text for h in hits], n_best=5)
        rows.append(
            {
                "golds": list(golds),
                "bm25": [h.bm25 for h in hits],
                "dense": [h.cosine for h in hits],
                "spans": [(s.passage, s.score, s.text) for s in spans],
            }
        )
        if (i + 1) % 100 == 0:
            print(f"read {i + 1}/{len(questions)} questions", file=sys.stderr)

    held_out, tune = rows[: args.held_out], rows[args.held_out :]
    report = {"questions": len(rows), "held_out": len(held_out), "seed": args.seed, "tune_on": args.tune_on,
              "train_skip": args.train_skip, "reader": args.reader, "results": []}
    print(f"{'k':>3} {'w_bm25':>6} {'w_dense':>7}  {'tune EM':>7} {'tune F1':>7}  {'held-out EM':>11} {'held-out F1':>11}")
    for k in (5, 10, 20):
        if k > args.max_k:
            continue
        grid = {(a, b): evaluate_weights(tune, k, a, b) for a, b in itertools.product(BM25_WEIGHTS, DENSE_WEIGHTS)}
        best = max(grid, key=lambda w: (grid[w][1], grid[w][0]))
        for weights in dict.fromkeys([(0.0, 0.0), (BM25_WEIGHT, DENSE_WEIGHT), best]):
            t_em, t_f1 = grid[weights]
            h_em, h_f1 = evaluate_weights(held_out, k, *weights)
            print(f"{k:>3} {weights[0]:>6} {weights[1]:>7}  {t_em:7.1f} {t_f1:7.1f}  {h_em:11.1f} {h_f1:11.1f}")
            report["results"].append(
                {"k": k, "w_bm25": weights[0], "w_dense": weights[1], "tune": [t_em, t_f1], "held_out": [h_em, h_f1]}
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
