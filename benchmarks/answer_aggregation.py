"""Answer aggregation (issue 17, means 4): does summing the scores of spans with the same text,
across a question's passages, choose better answers than the best single span?

    python benchmarks/answer_aggregation.py --questions 1000 --seed 0      # and --seed 1 to confirm

The packaged reader (or ``--reader``) reads each question's top 10 hybrid passages once, keeping
the 5 best spans of each passage; answers are then ranked from that reading with and without
aggregation, keeping the best 1, 3 or 5 spans of each passage. Questions are drawn from SQuAD v1.1
dev as ``qa evaluate open-squad --limit N --seed S`` draws them, over the same cached index.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)

from qa.corpora.squad import sample_examples
from qa.device import cpu_info
from qa.eval import load_question_set, prepare_index
from qa.index import Index
from qa.metrics import squad_scores
from qa.pipeline import AGGREGATIONS, Pipeline, rank_answers
from qa.reader import ReaderOutput

SPANS_PER_PASSAGE = (1, 3, 5)


def keep_per_passage(reading: ReaderOutput, n: int) -> ReaderOutput:
    """The ``n`` best spans of each passage (spans are sorted best first)."""
    count: dict[int, int] = {}
    kept = []
    for span in reading.spans:
        if count.get(span.passage, 0) < n:
            count[span.passage] = count.get(span.passage, 0) + 1
            kept.append(span)
    return replace(reading, spans=kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader", default=None, help="default: $QA_READER, else the packaged reader")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    squad = load_question_set("open-squad", data=DATA)
    examples = sample_examples(squad.examples, args.questions, args.seed)
    pipe = Pipeline(Index(prepare_index(squad, show_progress=True)), reader=args.reader)
    scores: dict[tuple[str, int], list[tuple[float, float]]] = {(a, n): [] for a in AGGREGATIONS for n in SPANS_PER_PASSAGE}
    for first in range(0, len(examples), pipe.question_batch):
        group = examples[first : first + pipe.question_batch]
        predictions = pipe.ask_batch([e.question for e in group], args.top_k, answers=max(SPANS_PER_PASSAGE))
        for example, prediction in zip(group, predictions):
            for aggregate, n in scores:
                answers = rank_answers(
                    prediction.hits, keep_per_passage(prediction.reading, n), 1,
                    bm25_weight=pipe.bm25_weight, dense_weight=pipe.dense_weight, aggregate=aggregate,
                )
                scores[aggregate, n].append(squad_scores(answers[0].text if answers else "", example.answers))
        print(f"{first + len(group)}/{len(examples)} questions", file=sys.stderr)
    rows = [
        {"aggregate": a, "spans_per_passage": n, "exact_match": round(100 * statistics.fmean(s[0] for s in v), 2),
         "f1": round(100 * statistics.fmean(s[1] for s in v), 2)}
        for (a, n), v in scores.items()
    ]
    print("| aggregation | spans per passage | EM | F1 |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['aggregate']} | {row['spans_per_passage']} | {row['exact_match']:.2f} | {row['f1']:.2f} |")
    out = args.out or Path(__file__).parent / "results" / f"answer_aggregation_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"questions": len(examples), "seed": args.seed, "top_k": args.top_k, "reader": pipe.reader.name,
                               "cpu": cpu_info().name, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
