"""Choose the default passage windows by measured results: word windows (160 words, 40 shared)
against token windows (200 embedding-model tokens, 40 shared, sentence-aware).

Both indexes hold the benchmark's corpus (``--benchmark``: open-squad, every SQuAD v1.1 paragraph;
covid-qa, every COVID-QA article) as `qa evaluate` indexes it; an index directory given that does
not exist is built (and kept) first, with its build time. Also reported: the passages' mean length
in the embedding model's tokens and the share the model truncates (longer than it reads).
For each retriever (bm25, dense, hybrid), the dev questions (the seeded sample that
``qa evaluate BENCHMARK --limit N --seed S`` draws) are asked: recall@1/5/10/20/100 (a passage
in the top k contains a gold answer) and MRR. Then the whole pipeline (hybrid, top 10, the
default reader unless ``--reader``) answers the first ``--read`` of them: EM and F1.

    python benchmarks/passage_windows.py --word-index ~/.cache/qa/indexes/open-squad-KEY \\
        --token-index /tmp/open-squad-tokens --questions 2000 --read 300
    python benchmarks/passage_windows.py --benchmark covid-qa --word-index /tmp/covid-words \
        --token-index /tmp/covid-tokens --read 0 --out benchmarks/results/passage_windows_covid.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.eval.retrieval import contains_answer, first_relevant, mean_reciprocal_rank, recall_curve  # noqa: E402
from qa.corpora.squad import sample_examples  # noqa: E402
from qa.metrics import squad_scores  # noqa: E402
from qa.embedding import Embedder  # noqa: E402
from qa.indexer import build_index  # noqa: E402
from qa.indexer.build import retrieval_text  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402
from qa.reader import Reader, resolve_reader  # noqa: E402
from qa.retriever import Index, make_retriever  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
KS = (1, 5, 10, 20, 100)
WINDOWS = {"words": {"max_words": 160, "overlap_words": 40}, "tokens": {"max_tokens": 200, "overlap_tokens": 40}}


def open_or_build(path: Path, corpus, windows: str) -> tuple[Index, float | None]:
    seconds = None
    if not (path / "manifest.json").is_file():
        t0 = time.perf_counter()
        build_index(corpus, path, show_progress=True, **WINDOWS[windows])
        seconds = time.perf_counter() - t0
    index = Index(path)
    unit = index.manifest["passages"]["unit"]
    if unit != windows:
        raise SystemExit(f"{path} has {unit} windows, expected {windows}")
    return index, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", choices=["open-squad", "covid-qa"], default="open-squad")
    parser.add_argument("--word-index", type=Path, required=True)
    parser.add_argument("--token-index", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--read", type=int, default=300, help="questions answered end to end (0: none)")
    parser.add_argument("--reader", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "passage_windows.json"))
    args = parser.parse_args()
    benchmark = load_question_set(args.benchmark, data=str(DATA))
    examples = [e for e in sample_examples(benchmark.examples, args.questions, args.seed) if e.answerable]
    reader = Reader(resolve_reader(args.reader)) if args.read else None
    rows = []
    for windows, path in (("words", args.word_index), ("tokens", args.token_index)):
        index, build_seconds = open_or_build(path, benchmark.corpus, windows)
        texts = [retrieval_text(title, text) for title, text in index.store.texts()]  # as embedded
        embedder = Embedder(index.manifest["dense"]["model"])  # the passages' tokenizer and length limit
        lengths = np.array([len(e.ids) for e in embedder.tokenizer.encode_batch(texts)])  # with [CLS] and [SEP]
        row = {"windows": windows, "passages": index.manifest["passages"], "count": len(index),
               "mean_tokens": round(float(lengths.mean()), 1),
               "truncated_pct": round(100 * float((lengths > embedder.max_tokens).mean()), 2),
               "build_seconds": None if build_seconds is None else round(build_seconds, 1)}
        for kind in ("bm25", "dense", "hybrid"):
            retriever = make_retriever(index, kind)
            firsts = []
            for e in examples:
                hits = retriever.search(e.question, 100)
                firsts.append(first_relevant(contains_answer(h.passage.text, e.answers) for h in hits))
            curve = recall_curve(firsts, 100)
            row[kind] = {**{f"recall@{k}": round(100 * float(curve[k - 1]), 2) for k in KS},
                         "mrr": round(mean_reciprocal_rank(firsts), 4)}
        if reader is not None:
            pipe = Pipeline(index, reader=reader, retriever="hybrid")
            ems, f1s, t0 = [], [], time.perf_counter()
            for e in examples[: args.read]:
                prediction = pipe.ask(e.question, top_k=10, answers=1)
                em, f1 = squad_scores(prediction.answers[0].text if prediction.answers else "", e.answers)
                ems.append(em)
                f1s.append(f1)
            row["pipeline"] = {"questions": len(ems), "em": round(100 * float(np.mean(ems)), 2),
                               "f1": round(100 * float(np.mean(f1s)), 2),
                               "seconds_per_question": round((time.perf_counter() - t0) / len(ems), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        index.close()
    print(f"\n{len(examples)} {args.benchmark} dev questions (seed {args.seed}); pipeline: hybrid, top 10, {args.read} questions")
    print(f"{'windows':<8} {'passages':>8} {'tokens':>6} {'cut%':>5}  {'retriever':<7} " + " ".join(f"{'R@' + str(k):>6}" for k in KS) + f" {'MRR':>6}")
    for r in rows:
        for kind in ("bm25", "dense", "hybrid"):
            print(f"{r['windows']:<8} {r['count']:>8} {r['mean_tokens']:>6} {r['truncated_pct']:>5}  {kind:<7} "
                  + " ".join(f"{r[kind][f'recall@{k}']:>6}" for k in KS) + f" {r[kind]['mrr']:>6}")
        if "pipeline" in r:
            p = r["pipeline"]
            print(f"{r['windows']:<8} pipeline EM {p['em']} / F1 {p['f1']} ({p['seconds_per_question']} s/question)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": args.benchmark, "questions": len(examples), "seed": args.seed, "reader": reader.name if reader else None,
                                          "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
