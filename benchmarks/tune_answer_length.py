"""The reader's answer-length limit (``Reader(max_answer_tokens=...)``, 30 tokens today) chosen on
COVID-QA *train* (issue 18: COVID-QA answers are much longer than SQuAD's; 21.5% of its training
answers exceed 30 tokens, benchmarks/answer_lengths.py), and what each limit does to SQuAD.

    python benchmarks/tune_answer_length.py --limits 30,40,60,80,120 --folds 5 --squad-questions 2000 \
        --out benchmarks/results/answer_length.json

Every COVID-QA training question is read on its whole article (as ``qa evaluate covid-qa --gold``
reads dev), answering all (no abstention); the articles are dealt into ``--folds`` folds (seed 0)
and EM/F1 reported per fold, so that the choice shows its spread: the limit with the best mean F1
over the folds is the one to choose, no COVID-QA dev question is used. The same for
``--squad-questions`` SQuAD v1.1 dev questions on their gold paragraphs (seed 1): what the limit
costs or gives where answers are short. The reader's forward passes are computed once and reused
for every limit (only the span decoding changes), so a run costs about one reading of each set.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)

from qa.device import cpu_info
from qa.eval import load_question_set
from qa.metrics import squad_scores
from qa.reader import Reader, default_reader_path


class CachedForward:
    """The reader's forward pass, remembered by its batch's token ids (a second reading of the
    same questions and passages, with another limit, computes nothing)."""

    def __init__(self, forward):
        self.forward, self.cache = forward, {}

    def __call__(self, windows):
        key = tuple(tuple(w.ids) for w in windows)
        if key not in self.cache:
            self.cache[key] = self.forward(windows)
        return self.cache[key]


def read_all(reader: Reader, question_set, examples, batch: int = 16) -> dict[str, str]:
    documents = {d.id: d for d in question_set.documents}
    answers = {}
    for first in range(0, len(examples), batch):
        group = examples[first : first + batch]
        output = reader.read_batch([e.question for e in group], [documents[e.doc_id].text for e in group], n_best=1)
        for i, example in enumerate(group):
            part = output.part(i, i + 1)
            answers[example.id] = part.spans[0].text if part.spans else ""
    return answers


def scores(examples, answers: dict[str, str]) -> tuple[float, float]:
    pairs = [squad_scores(answers[e.id], e.answers) for e in examples]
    return 100 * float(np.mean([p[0] for p in pairs])), 100 * float(np.mean([p[1] for p in pairs]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", default=None, help="a reader folder (default: the packaged reader)")
    parser.add_argument("--limits", default="30,40,60,80,120")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--questions", type=int, default=None, help="the first N COVID-QA training questions only (a quick run)")
    parser.add_argument("--squad-questions", type=int, default=2000, help="0: no SQuAD")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "answer_length.json")
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]

    covid = load_question_set("squad-json", path=DATA / "covid-qa" / "covid-qa-train.json", gold=True)
    covid.examples = covid.examples[: args.questions]
    articles = sorted({e.doc_id for e in covid.examples})
    random.Random(0).shuffle(articles)
    fold_of = {doc: i % args.folds for i, doc in enumerate(articles)}
    folds = [fold for f in range(args.folds) if (fold := [e for e in covid.examples if fold_of[e.doc_id] == f])]
    squad = load_question_set("squad-gold", data=DATA) if args.squad_questions else None
    squad_examples = random.Random(1).sample(squad.examples, min(args.squad_questions, len(squad.examples))) if squad else []

    reader = Reader(args.reader or default_reader_path())
    reader._forward = CachedForward(reader._forward)
    rows = []
    for limit in limits:
        reader.max_answer_tokens = limit
        started = time.perf_counter()
        answers = read_all(reader, covid, covid.examples)
        per_fold = [scores(fold, answers) for fold in folds]
        row = {"limit": limit, "covid_qa_train_folds": [{"exact_match": round(em, 2), "f1": round(f1, 2), "questions": len(fold)}
                                                        for (em, f1), fold in zip(per_fold, folds)]}
        row["covid_qa_train_mean"] = {"exact_match": round(float(np.mean([p[0] for p in per_fold])), 2),
                                      "f1": round(float(np.mean([p[1] for p in per_fold])), 2),
                                      "f1_sd_over_folds": round(float(np.std([p[1] for p in per_fold])), 2)}
        if squad:
            em, f1 = scores(squad_examples, read_all(reader, squad, squad_examples))
            row["squad_gold"] = {"exact_match": round(em, 2), "f1": round(f1, 2), "questions": len(squad_examples)}
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    best = max(rows, key=lambda r: r["covid_qa_train_mean"]["f1"])
    print(f"COVID-QA train ({len(covid.examples)} questions, {args.folds} folds by article), answering all; {cpu_info().name}")
    print("| max answer tokens | COVID-QA train EM | F1 (mean of folds ± sd) | SQuAD dev gold EM / F1 |")
    print("|---|---|---|---|")
    for r in rows:
        m = r["covid_qa_train_mean"]
        squad_cell = f"{r['squad_gold']['exact_match']} / {r['squad_gold']['f1']}" if "squad_gold" in r else "-"
        mark = " (best)" if r is best else ""
        print(f"| {r['limit']}{mark} | {m['exact_match']} | {m['f1']} ± {m['f1_sd_over_folds']} | {squad_cell} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "reader": str(args.reader or default_reader_path()),
                                    "folds": args.folds, "rows": rows, "best_limit": best["limit"]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
