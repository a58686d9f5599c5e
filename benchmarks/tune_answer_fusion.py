"""Choose the weights that add retrieval evidence to the reader's span score.

An answer's score is ``reader span score + w_bm25 * BM25 score + w_dense * cosine`` of its
passage (``qa.pipeline.rank_answers``). This script asks a seeded sample of open-squad dev
questions once through the pipeline (hybrid retrieval, the top ``--max-k`` passages read, no
abstention; the same sample as ``qa evaluate open-squad --limit N --seed S``, over the same cached
index), then grid-searches the two weights on the questions after the first ``--held-out`` ones
and reports, on those held-out questions (which the search never sees), no evidence (0, 0), the
weights qa ships, and the best weights of the search. Answers are ranked by the pipeline's own
``rank_answers``, so what is scored is what ``qa ask`` would answer.

    python benchmarks/tune_answer_fusion.py --reader ../shared/models/reference-reader-minilm-l6-squad1 \\
        --questions 1000 --held-out 300 --seed 0

With ``--tune-on train``, the weights are searched on ``--questions`` SQuAD v1.1 *training*
questions asked over the same open-squad index (which holds the training paragraphs), drawn from
those after the first ``--train-skip`` (a reader trained on ``qa train open-data --limit N`` has
not seen the questions after the first N), and all ``--held-out`` questions are dev questions: no
dev question chooses the weights.

``--embedding-model`` asks over the indexes built with another encoder (e.g. ``qa train
retriever``'s output): its cosines are spread differently, so the dense weight is re-chosen for it.
``--covid-qa`` also asks all COVID-QA dev questions over the covid-qa index and reports the same
weights there, held out (nothing is tuned on them). ``--covid-train`` adds COVID-QA's *training*
questions, asked over the same covid-qa index, to the search: the weights then maximise the mean of
the two tuning sets' F1 (SQuAD's and COVID-QA's), so that one pair of weights serves both kinds of
corpus (BM25 scores, for one, are larger over long articles). Use it only with a reader and an
encoder that did not train on COVID-QA train. ``--bm25-scales raw,relative`` searches the weights
for BM25 scores as they are and divided by the best of the question's top k (measured in
docs/RESULTS.md: relative scaling did not pay).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qa.corpora.squad import load_squad, sample_examples  # noqa: E402
from qa.device import cpu_info  # noqa: E402
from qa.embedding import DEFAULT_EMBEDDING_MODEL  # noqa: E402
from qa.eval import datasets  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.eval.runner import prepare_index  # noqa: E402
from qa.metrics import squad_scores  # noqa: E402
from qa.pipeline import BM25_WEIGHT, DENSE_WEIGHT, Pipeline, rank_answers  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
BM25_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
RELATIVE_BM25_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0)  # for BM25 scores divided by the best one
DENSE_WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0)


def read_questions(pipe: Pipeline, questions: list[tuple[str, list[str]]], max_k: int, label: str) -> list[dict]:
    """Each question's hits, the reader's spans over its ``max_k`` passages, and its gold answers."""
    rows = []
    for first in range(0, len(questions), pipe.question_batch):
        group = questions[first : first + pipe.question_batch]
        for (_, golds), prediction in zip(group, pipe.ask_batch([q for q, _ in group], max_k, 1)):
            rows.append({"golds": list(golds), "hits": prediction.hits, "reading": prediction.reading})
        if len(rows) % 400 < pipe.question_batch:
            print(f"{label}: read {len(rows)}/{len(questions)} questions", file=sys.stderr)
    return rows


def relative_bm25(hits):
    """The hits with their BM25 scores divided by the best of them (1 for the best passage), so that
    a weight means the same over short paragraphs and long articles, whose BM25 scores run larger."""
    top = max((h.bm25 for h in hits), default=0.0)
    return [dataclasses.replace(h, bm25=h.bm25 / top if top > 0 else 0.0) for h in hits]


def evaluate_weights(rows, k, w_bm25, w_dense, scale="raw"):
    """EM and F1 of the best answer of each row, ranked with these weights over its top ``k``
    (``scale="relative"``: BM25 scores divided by the best of the top ``k``)."""
    em = f1 = 0.0
    for row in rows:
        hits = row["hits"][:k] if scale == "raw" else relative_bm25(row["hits"][:k])
        answers = rank_answers(hits, row["reading"], 1, bm25_weight=w_bm25, dense_weight=w_dense) if hits else []
        e, f = squad_scores(answers[0].text if answers else "", row["golds"])
        em, f1 = em + e, f1 + f
    return 100 * em / len(rows), 100 * f1 / len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="data directory (as qa evaluate --data)")
    ap.add_argument("--reader", required=True)
    ap.add_argument("--embedding-model", default=DEFAULT_EMBEDDING_MODEL, help="the indexes' encoder (as qa evaluate --embedding-model)")
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-k", type=int, default=20)
    ap.add_argument("--tune-on", choices=("dev", "train"), default="dev", help="where the tuning questions come from")
    ap.add_argument("--train-skip", type=int, default=0, help="with --tune-on train: leave out the first N training questions")
    ap.add_argument("--covid-qa", action="store_true", help="also report the weights on all COVID-QA dev questions (held out)")
    ap.add_argument("--covid-train", action="store_true", help="also tune on all COVID-QA train questions (mean F1 of both sets)")
    ap.add_argument("--bm25-scales", default="raw", help="comma-separated: raw (BM25 scores as they are), relative "
                    "(divided by the best of the question's top k)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/answer_fusion.json"))
    args = ap.parse_args()
    covid_wanted = args.covid_qa or args.covid_train
    if not (args.data / "squad").is_dir() or (covid_wanted and not (args.data / "covid-qa").is_dir()):
        print(f"SQuAD{' or COVID-QA' if covid_wanted else ''} not found under {args.data}: skipping", file=sys.stderr)
        return 0
    started = time.perf_counter()
    benchmark = load_question_set("open-squad", data=args.data)
    if args.tune_on == "dev":
        questions = [(e.question, e.answers) for e in sample_examples(benchmark.examples, args.questions, args.seed)]
    else:
        train = [e for e in load_squad(args.data / "squad" / "train-v1.1.json.gz").examples if e.answerable][args.train_skip :]
        questions = [(e.question, e.answers) for e in sample_examples(benchmark.examples, args.held_out, args.seed)]
        questions += [(e.question, e.answers) for e in sample_examples(train, args.questions, args.seed)]
    pipe = Pipeline(prepare_index(benchmark, embedding_model=args.embedding_model, show_progress=True),
                    reader=args.reader, retriever="hybrid", abstention=None)
    rows = read_questions(pipe, questions, args.max_k, "open-squad")
    held_out, tune = rows[: args.held_out], rows[args.held_out :]
    covid, covid_tune = [], []
    if covid_wanted:
        covid_set = load_question_set("covid-qa", data=args.data)
        covid_pipe = Pipeline(prepare_index(covid_set, embedding_model=args.embedding_model, show_progress=True),
                              reader=pipe.reader, retriever="hybrid", abstention=None)
        if args.covid_qa:
            covid = read_questions(covid_pipe, [(e.question, e.answers) for e in covid_set.examples if e.answerable], args.max_k, "covid-qa")
        if args.covid_train:
            train_set = load_squad(datasets.resolve("covid-qa-train", args.data))
            covid_tune = read_questions(covid_pipe, [(e.question, e.answers) for e in train_set.examples if e.answerable], args.max_k,
                                        "covid-qa train")

    report = {"questions": len(rows), "held_out": len(held_out), "covid_qa": len(covid), "covid_train": len(covid_tune), "seed": args.seed, "tune_on": args.tune_on,
              "train_skip": args.train_skip, "reader": args.reader, "embedding_model": args.embedding_model, "cpu": cpu_info().name,
              "results": []}
    print(f"\n{cpu_info().name}; reader {args.reader}; encoder {args.embedding_model}"
          + ("; tune = mean of SQuAD train and COVID-QA train" if covid_tune else ""))
    print(f"{'k':>3} {'bm25':>8} {'w_bm25':>6} {'w_dense':>7}  {'tune EM':>7} {'tune F1':>7}  {'held-out EM':>11} {'held-out F1':>11}"
          + (f"  {'COVID-QA EM':>11} {'COVID-QA F1':>11}" if covid else ""))
    for k, scale in itertools.product((5, 10, 20), args.bm25_scales.split(",")):
        if k > args.max_k:
            continue
        bm25_weights = BM25_WEIGHTS if scale == "raw" else RELATIVE_BM25_WEIGHTS
        grid = {(a, b): evaluate_weights(tune, k, a, b, scale) for a, b in itertools.product(bm25_weights, DENSE_WEIGHTS)}
        if covid_tune:  # one pair of weights for both kinds of corpus: the mean of the two sets' scores
            covid_grid = {w: evaluate_weights(covid_tune, k, *w, scale) for w in grid}
            grid = {w: ((grid[w][0] + covid_grid[w][0]) / 2, (grid[w][1] + covid_grid[w][1]) / 2) for w in grid}
        best = max(grid, key=lambda w: (grid[w][1], grid[w][0]))
        shipped = [(BM25_WEIGHT, DENSE_WEIGHT)] if scale == "raw" else []
        for weights in dict.fromkeys([(0.0, 0.0), *shipped, best]):
            t_em, t_f1 = grid[weights]
            h_em, h_f1 = evaluate_weights(held_out, k, *weights, scale)
            result = {"k": k, "bm25_scale": scale, "w_bm25": weights[0], "w_dense": weights[1], "tune": [t_em, t_f1], "held_out": [h_em, h_f1]}
            line = f"{k:>3} {scale:>8} {weights[0]:>6} {weights[1]:>7}  {t_em:7.1f} {t_f1:7.1f}  {h_em:11.1f} {h_f1:11.1f}"
            if covid:
                result["covid_qa"] = list(evaluate_weights(covid, k, *weights, scale))
                line += f"  {result['covid_qa'][0]:11.1f} {result['covid_qa'][1]:11.1f}"
            print(line)
            report["results"].append(result)
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
