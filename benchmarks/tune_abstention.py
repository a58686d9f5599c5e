"""Choose a reader's no-answer threshold on SQuAD *training* questions it was not trained on.

Each question is asked twice over the open-squad index (hybrid retrieval, as ``qa ask`` does):
answerable, with its top ``--top-k`` passages as retrieved; and unanswerable, with the first
``--top-k`` of its top ``--depth`` passages that do not contain any of its answers (what the
pipeline sees when the index does not hold the answer). For every threshold this measures the EM
lost on the answerable questions (correct answers abstained on) and the share of unanswerable
ones abstained on, under both rules of :mod:`qa.reader.abstention` (``passage`` and
``question``). The chosen threshold is the highest whose EM loss stays within ``--budget``
points; ``--write`` stores it in the reader folder's ``abstention.json`` (``qa ask``,
``qa serve`` and ``qa evaluate`` then abstain by it).

    python benchmarks/tune_abstention.py --reader PATH --questions 2000 --train-skip 82599 --write

No dev question is used: the training questions after the first ``--train-skip`` are those a
reader trained on ``qa train open-data --limit N`` (N <= skip) has not seen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
from qa.corpora.squad import load_squad, sample_examples  # noqa: E402
from qa.device import cpu_info  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.eval.retrieval import contains_answer  # noqa: E402
from qa.eval.runner import prepare_index  # noqa: E402
from qa.index import Index  # noqa: E402
from qa.metrics import squad_scores  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402
from qa.reader.abstention import SCOPES, Abstention, save_abstention  # noqa: E402

BUDGETS = (0.1, 0.25, 0.3, 0.5, 1.0, 2.0, 5.0)


def sweep(correct: np.ndarray, answerable: np.ndarray, unanswerable: np.ndarray, budget: float) -> dict:
    """The highest threshold losing at most ``budget`` EM points, and what it does."""
    full = 100 * correct.mean()
    candidates = np.unique(np.concatenate([answerable, unanswerable, [-np.inf]]))
    candidates = candidates[np.isfinite(candidates) | (candidates == -np.inf)]
    best = {"threshold": float("-inf"), "em": full, "em_loss": 0.0, "abstained_answerable": 0.0, "abstained_unanswerable": 0.0}
    for t in candidates:
        em = 100 * (correct & (answerable >= t)).mean()
        if full - em > budget + 1e-9:
            break
        best = {"threshold": float(t), "em": em, "em_loss": full - em, "abstained_answerable": 100 * (answerable < t).mean(),
                "abstained_unanswerable": 100 * (unanswerable < t).mean()}
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="data directory (as qa evaluate --data)")
    ap.add_argument("--reader", required=True, help="a reader folder")
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--train-skip", type=int, default=82599, help="leave out the first N training questions (seen in training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--depth", type=int, default=15, help="passages read, to find --top-k without the answer")
    ap.add_argument("--budget", type=float, default=0.3, help="EM points the threshold may lose on answerable questions")
    ap.add_argument("--scope", choices=SCOPES, default="question", help="the rule --write stores")
    ap.add_argument("--write", action="store_true", help="write the chosen rule to READER/abstention.json")
    ap.add_argument("--precision", default="auto", help="the reader's arithmetic (as qa evaluate --precision)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/abstention.json"))
    args = ap.parse_args()
    if not (args.data / "squad").is_dir():
        print(f"SQuAD not found under {args.data}: skipping", file=sys.stderr)
        return 0
    benchmark = load_question_set("open-squad", data=args.data)
    train = load_squad(args.data / "squad" / "train-v1.1.json.gz")
    examples = sample_examples([e for e in train.examples if e.answerable][args.train_skip :], args.questions, args.seed)
    pipe = Pipeline(Index(prepare_index(benchmark, show_progress=True)), reader=args.reader, abstention=None, precision=args.precision)
    started = time.perf_counter()
    correct, margin_with, margin_without = [], {s: [] for s in SCOPES}, {s: [] for s in SCOPES}
    short = 0
    for first in range(0, len(examples), pipe.question_batch):
        group = examples[first : first + pipe.question_batch]
        for example, prediction in zip(group, pipe.ask_batch([e.question for e in group], args.depth, 1)):
            hits, reading = prediction.hits, prediction.reading
            top = hits[: args.top_k]
            answers = pipe.rank_answers(top, reading, 1)
            correct.append(bool(answers) and squad_scores(answers[0].text, example.answers)[0] == 1.0)
            without = [i for i, h in enumerate(hits) if not contains_answer(h.passage.text, example.answers)][: args.top_k]
            short += len(without) < args.top_k
            for scope in SCOPES:
                margin_with[scope].append(reading.margin(len(top), scope))
                margin_without[scope].append(reading.select(without).margin(scope=scope))
        if (first // pipe.question_batch) % 20 == 0:
            print(f"read {first + len(group)}/{len(examples)} questions", file=sys.stderr)
    seconds = time.perf_counter() - started
    correct = np.array(correct)
    report = {
        "reader": args.reader, "precision": pipe.reader.precision, "backend": pipe.reader.backend, "questions": len(examples), "train_skip": args.train_skip, "seed": args.seed,
        "top_k": args.top_k, "depth": args.depth, "unanswerable_with_fewer_passages": short,
        "em_answering_all": 100 * correct.mean(), "seconds": round(seconds, 1), "cpu": cpu_info().name,
        "bf16": "avx512_bf16" in cpu_info().flags, "scopes": {},
    }
    print(f"{len(examples)} held-out training questions, EM answering all {report['em_answering_all']:.2f} ({seconds:.0f} s)")
    print(f"{'scope':>8} {'budget':>6} {'threshold':>9} {'EM loss':>7} {'abstained: answerable':>21} {'unanswerable':>12}")
    for scope in SCOPES:
        answerable, unanswerable = np.array(margin_with[scope]), np.array(margin_without[scope])
        rows = []
        for budget in BUDGETS:
            row = {"budget": budget, **sweep(correct, answerable, unanswerable, budget)}
            rows.append(row)
            print(f"{scope:>8} {budget:6.2f} {row['threshold']:9.3f} {row['em_loss']:7.2f} "
                  f"{row['abstained_answerable']:20.1f}% {row['abstained_unanswerable']:11.1f}%")
        report["scopes"][scope] = rows
    chosen = {"budget": args.budget, **sweep(correct, np.array(margin_with[args.scope]), np.array(margin_without[args.scope]), args.budget)}
    report["chosen"] = {"scope": args.scope, **chosen}
    print(f"chosen ({args.scope}, budget {args.budget}): threshold {chosen['threshold']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.write:
        provenance = {
            "tuned_on": f"{len(examples)} SQuAD v1.1 training questions after the first {args.train_skip} "
                        f"(seed {args.seed}), over the open-squad index, hybrid top {args.top_k}",
            "budget_em_points": args.budget,
            "em_loss": round(chosen["em_loss"], 3),
            "abstained_unanswerable_percent": round(chosen["abstained_unanswerable"], 2),
            "command": "python benchmarks/tune_abstention.py " + " ".join(sys.argv[1:]),
        }
        path = save_abstention(args.reader, Abstention(chosen["threshold"], args.scope), provenance)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
