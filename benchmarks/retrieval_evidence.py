"""Does retrieval say when a collection does not hold the answer? The best cosine (and BM25 score)
among a question's top 10 hybrid passages, for questions asked of the collection they were written
for and of another one (issue 17 §5: a no-answer signal besides the reader's).

    python benchmarks/retrieval_evidence.py --questions 2000 --out benchmarks/results/retrieval_evidence.json

Askings (no dev question is used):

- ``squad/open-squad``: SQuAD v1.1 training questions after the first ``--train-skip`` (those the
  reader did not train on) over the open-squad index: answerable (the index holds every SQuAD
  paragraph); ``squad/open-squad without answer``: the same questions' first 10 passages of their
  top 15 that hold none of their answers (``benchmarks/tune_abstention.py``'s unanswerable askings);
- ``covid-qa/covid-qa``: all COVID-QA training questions over the covid-qa index: answerable;
- ``squad/covid-qa`` and ``covid-qa/open-squad``: each set over the other collection, which does not
  answer it;
- the three questions ``tests/test_default_reader.py`` expects no answer to, over both indexes and
  the example corpus's (built in a temporary folder), and the four it answers over the latter.

With ``--read N``, the default reader reads N questions of each off-collection set (its rule on,
top 10), and the share it abstains on is given without and with :data:`qa.pipeline.MIN_COSINE`
(the same hits: the floor only adds abstentions). With ``--dev``, the dev questions of open-squad
and COVID-QA whose top 10 the floor would abstain on are counted (retrieval only; what it costs in
EM/F1 is ``qa evaluate``'s to say).

A cosine threshold separates the two kinds of askings only if the answerable ones' low percentiles
lie above the others' high ones; the table gives the percentiles and, for thresholds at the
answerable askings' 1st and 5th percentiles, how many off-collection askings each would catch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
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
from qa.embedding import DEFAULT_EMBEDDING_MODEL  # noqa: E402
from qa.index import Index  # noqa: E402
from qa.pipeline import MIN_COSINE, Pipeline, off_collection  # noqa: E402
from qa.retriever.retrievers import make_retriever  # noqa: E402

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
UNANSWERED = ("What is the capital of Norway?", "Who won the 1998 FIFA World Cup?", "?!?! ... ---")
ANSWERED = ("Who designed the Eiffel Tower?", "Who created the Python programming language?", "Who invented the World Wide Web?",
            "What city did Pompeii lie near?")  # over the example corpus (tests/test_default_reader.py)
EXAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def best_evidence(index: Index, questions: list[str], answers: list[list[str]] | None, top_k: int, depth: int) -> dict:
    """Per question: the best cosine and BM25 score of its top ``top_k`` hybrid passages and, with
    ``answers``, the best cosine of its first ``top_k`` passages of ``depth`` that hold none."""
    retriever = make_retriever(index, "hybrid")
    found: dict[str, list[float]] = {"cosine": [], "bm25": [], "cosine_without_answer": []}
    for first in range(0, len(questions), 64):
        for i, hits in enumerate(retriever.search_batch(questions[first : first + 64], depth), start=first):
            top = hits[:top_k]
            found["cosine"].append(max(h.cosine for h in top))
            found["bm25"].append(max(h.bm25 for h in top))
            if answers is not None:
                without = [h.cosine for h in hits if not contains_answer(h.passage.text, answers[i])][:top_k]
                found["cosine_without_answer"].append(max(without) if without else float("nan"))
    return {key: np.array(values) for key, values in found.items() if values}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="data directory (as qa evaluate --data)")
    ap.add_argument("--questions", type=int, default=2000, help="SQuAD training questions")
    ap.add_argument("--train-skip", type=int, default=82599)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--depth", type=int, default=15)
    ap.add_argument("--read", type=int, default=0,
                    help="also ask this many questions of each off-collection set with the default reader and its rule, "
                         "and count the askings it abstains on without the cosine floor and with it")
    ap.add_argument("--dev", action="store_true",
                    help="also count the dev questions of open-squad and COVID-QA whose top 10 has no cosine at the floor (retrieval only)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval_evidence.json"))
    args = ap.parse_args()
    if not (args.data / "squad").is_dir() or not (args.data / "covid-qa").is_dir():
        print(f"SQuAD or COVID-QA not found under {args.data}: skipping", file=sys.stderr)
        return 0
    started = time.perf_counter()
    indexes = {name: Index(prepare_index(load_question_set(name, data=args.data), show_progress=True)) for name in ("open-squad", "covid-qa")}
    squad = sample_examples([e for e in load_squad(args.data / "squad" / "train-v1.1.json.gz").examples if e.answerable][args.train_skip :],
                            args.questions, args.seed)
    covid = [e for e in load_squad(args.data / "covid-qa" / "covid-qa-train.json").examples if e.answerable]
    sets = {"squad": squad, "covid-qa": covid}
    askings = {}
    for questions, collection, answerable in (("squad", "open-squad", True), ("covid-qa", "covid-qa", True),
                                              ("squad", "covid-qa", False), ("covid-qa", "open-squad", False)):
        examples = sets[questions]
        found = best_evidence(indexes[collection], [e.question for e in examples],
                              [e.answers for e in examples] if answerable else None, args.top_k, args.depth)
        askings[f"{questions}/{collection}"] = {"answerable": answerable, "questions": len(examples), **found}
    report = {"questions": args.questions, "train_skip": args.train_skip, "seed": args.seed, "top_k": args.top_k,
              "depth": args.depth, "cpu": cpu_info().name, "percentiles": PERCENTILES, "askings": {}}
    print(f"best cosine (and BM25) among the top {args.top_k} hybrid passages; percentiles {PERCENTILES}")
    for name, asking in askings.items():
        row = {"answerable": asking["answerable"], "questions": asking["questions"]}
        for key in ("cosine", "bm25", "cosine_without_answer"):
            if key in asking:
                row[key] = [round(float(np.nanpercentile(asking[key], p)), 3) for p in PERCENTILES]
                label = f"{name}{' without answer' if key == 'cosine_without_answer' else ''} ({key.split('_')[0]})"
                print(f"{label:44s} " + " ".join(f"{v:6.3f}" for v in row[key]))
        report["askings"][name] = row
    for pct in (1, 5):  # a threshold losing pct% of an answerable set: how many off-collection askings it catches
        for own, other in (("squad/open-squad", "covid-qa/open-squad"), ("covid-qa/covid-qa", "squad/covid-qa")):
            threshold = float(np.percentile(askings[own]["cosine"], pct))
            caught = 100 * float((askings[other]["cosine"] < threshold).mean())
            report.setdefault("thresholds", []).append({"answerable": own, "lost_percent": pct, "cosine": round(threshold, 3),
                                                        "off_collection": other, "caught_percent": round(caught, 1)})
            print(f"cosine < {threshold:.3f} abstains on {pct}% of {own}, catches {caught:.1f}% of {other}")
    if args.dev:
        floor = MIN_COSINE[DEFAULT_EMBEDDING_MODEL]
        for name, index in indexes.items():
            examples = load_question_set(name, data=args.data).examples
            best = best_evidence(index, [e.question for e in examples], None, args.top_k, args.top_k)["cosine"]
            report.setdefault("dev_below_floor", {})[name] = {"questions": len(examples), "floor": floor, "below": int((best < floor).sum())}
            print(f"{name} dev: {int((best < floor).sum())} of {len(examples)} questions have no passage at cosine {floor} or more")
    if args.read:
        floor = MIN_COSINE[DEFAULT_EMBEDDING_MODEL]
        for questions, collection in (("squad", "covid-qa"), ("covid-qa", "open-squad")):
            pipe = Pipeline(indexes[collection], min_cosine=None)  # the reader's rule alone; the floor counted from the same hits
            asked = [e.question for e in sets[questions][: args.read]]
            predictions = pipe.ask_batch(asked)
            by_reader = sum(p.abstained for p in predictions)
            with_floor = sum(p.abstained or off_collection(p.hits, floor) for p in predictions)
            report.setdefault("read", {})[f"{questions}/{collection}"] = {
                "questions": len(asked), "floor": floor, "abstained_by_the_rule": round(100 * by_reader / len(asked), 2),
                "abstained_with_the_floor": round(100 * with_floor / len(asked), 2)}
            print(f"{questions}/{collection}: {len(asked)} asked, the reader's rule abstains on {100 * by_reader / len(asked):.1f}%, "
                  f"with the cosine floor {floor} {100 * with_floor / len(asked):.1f}%")
    with tempfile.TemporaryDirectory() as scratch:
        from qa.indexer import build_index

        build_index(EXAMPLE_CORPUS, Path(scratch) / "examples")
        indexes["examples"] = Index(Path(scratch) / "examples")
        for collection, index in indexes.items():
            questions = UNANSWERED + (ANSWERED if collection == "examples" else ())
            for question, hits in zip(questions, make_retriever(index, "hybrid").search_batch(list(questions), args.top_k)):
                best = max(h.cosine for h in hits)
                kind = "answered" if question in ANSWERED else "unanswered"
                report.setdefault(kind, {}).setdefault(collection, {})[question] = round(best, 3)
                print(f"{collection:10s} {kind:10s} {question!r:48s} best cosine {best:.3f}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
