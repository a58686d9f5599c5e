"""Choose BM25's text analysis by retrieval recall on open-squad.

Indexes every SQuAD v1.1 paragraph (train + dev) in 160-word windows (qa's default when this was
measured), once per
analyzer (lower-casing and word tokens always; English stop words and Snowball stemming on or
off), with bm25s (k1 = 1.2, b = 0.75), and asks the dev questions (a seeded sample, as
``qa evaluate open-squad --limit N --seed S`` draws it). Reported per analyzer: recall@1/5/10/20/100
(a passage in the top k contains a gold answer), MRR, and index and query time.

    python benchmarks/bm25_analyzers.py --questions 2000
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from qa.eval.question_sets import load_question_set
from qa.eval.retrieval import contains_answer, first_relevant, mean_reciprocal_rank, recall_curve
from qa.corpora.squad import sample_examples
from qa.indexer.passages import split_passages

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
TOKEN = re.compile(r"(?u)\b\w\w+\b|\b\d\b")
STOP = frozenset(STOPWORDS_EN)
KS = (1, 5, 10, 20, 100)


def analyzer(stop: bool, stem: bool):
    stemmer = Stemmer.Stemmer("english")

    def analyze(text: str) -> list[str]:
        words = TOKEN.findall(text.lower())
        if stop:
            words = [w for w in words if w not in STOP]
        return stemmer.stemWords(words) if stem else words

    return analyze


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bm25_analyzers.json"))
    args = parser.parse_args()
    benchmark = load_question_set("open-squad", data=str(DATA))
    texts = []
    for doc in benchmark.corpus:
        for span in split_passages(doc.text):
            texts.append(f"{doc.title}\n{doc.text[span.start:span.end]}")
    examples = [e for e in sample_examples(benchmark.examples, args.questions, args.seed) if e.answerable]
    rows = []
    for stop in (False, True):
        for stem in (False, True):
            analyze = analyzer(stop, stem)
            name = "lower+words" + ("+stop-en" if stop else "") + ("+snowball-en" if stem else "")
            t0 = time.perf_counter()
            model = bm25s.BM25(k1=1.2, b=0.75)
            model.index([analyze(t) for t in texts], show_progress=False)
            index_seconds = time.perf_counter() - t0
            firsts, t0 = [], time.perf_counter()
            for e in examples:
                ids = model.get_tokens_ids(analyze(e.question))
                scores = model.get_scores_from_ids(ids) if ids else np.zeros(len(texts), np.float32)
                top = np.argpartition(-scores, 100)[:100]
                top = top[np.argsort(-scores[top])]
                firsts.append(first_relevant(contains_answer(texts[i], e.answers) for i in top))
            query_seconds = time.perf_counter() - t0
            curve = recall_curve(firsts, 100)
            row = {"analyzer": name, **{f"recall@{k}": round(100 * float(curve[k - 1]), 2) for k in KS},
                   "mrr": round(mean_reciprocal_rank(firsts), 4), "index_seconds": round(index_seconds, 1),
                   "query_ms": round(1000 * query_seconds / len(examples), 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{len(examples)} open-squad questions, {len(texts)} passages")
    print(f"{'analyzer':<36} " + " ".join(f"{'R@' + str(k):>6}" for k in KS) + f" {'MRR':>6}")
    for r in rows:
        print(f"{r['analyzer']:<36} " + " ".join(f"{r[f'recall@{k}']:>6}" for k in KS) + f" {r['mrr']:>6}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"questions": len(examples), "seed": args.seed, "passages": len(texts), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
