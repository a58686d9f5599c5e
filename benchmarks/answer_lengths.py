"""How long gold answers are, in reader tokens, and how many the reader's answer-length limit cuts
(issue 18: COVID-QA answers are much longer than SQuAD's).

For every question of each file, the first gold answer is tokenised in its context (the tokens
that overlap its characters, as the reader would have to select them) with the packaged reader's
tokenizer. Reports percentiles and the share of answers longer than each limit; the reader reads
spans of at most 30 tokens (``Reader(max_answer_tokens=30)``).

    python benchmarks/answer_lengths.py [--limits 30,50,64,100]

Prints a table and writes benchmarks/results/answer_lengths.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import bert  # noqa: E402
from qa.corpora.squad import load_squad  # noqa: E402
from qa.reader import default_reader_path  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)

FILES = ("squad/dev-v1.1.json", "covid-qa/covid-qa-train.json", "covid-qa/covid-qa-dev.json")


def answer_tokens(tokenizer, context: str, start: int, text: str) -> int:
    """Tokens of ``context`` that overlap the answer's characters."""
    end = start + len(text)
    offsets = tokenizer.encode(context, add_special_tokens=False).offsets
    return sum(1 for a, b in offsets if a < end and b > start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", default="30,50,64,100")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "answer_lengths.json"))
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    tokenizer = bert.load_tokenizer(default_reader_path())
    rows = []
    for name in FILES:
        data = load_squad(DATA / name)
        texts = {d.id: d.text for d in data.documents}
        lengths, words, chars = [], [], []
        for e in data.examples:
            if not e.answers or e.answer_starts[0] < 0:
                continue
            context = texts[e.doc_id]
            if context[e.answer_starts[0] : e.answer_starts[0] + len(e.answers[0])] != e.answers[0]:
                continue  # an offset that does not point at its text: not counted
            # tokenise a window around the answer: the same tokens as in the whole context, far cheaper
            lo = max(0, context.rfind(" ", 0, max(0, e.answer_starts[0] - 200)))
            start = e.answer_starts[0] - lo
            lengths.append(answer_tokens(tokenizer, context[lo : e.answer_starts[0] + len(e.answers[0]) + 200], start, e.answers[0]))
            words.append(len(e.answers[0].split()))
            chars.append(len(e.answers[0]))
        t = np.array(lengths)
        row = {
            "file": name,
            "answers": len(t),
            "tokens_mean": round(float(t.mean()), 1),
            "tokens_p50": int(np.percentile(t, 50)),
            "tokens_p90": int(np.percentile(t, 90)),
            "tokens_p99": int(np.percentile(t, 99)),
            "tokens_max": int(t.max()),
            "words_mean": round(float(np.mean(words)), 1),
            "over_limit_pct": {str(limit): round(100 * float((t > limit).mean()), 1) for limit in limits},
        }
        rows.append(row)
    print(f"{'file':32} {'answers':>7} {'mean':>6} {'p50':>4} {'p90':>4} {'p99':>4} {'max':>5}  " + "  ".join(f">{x:<4}" for x in limits))
    for r in rows:
        print(f"{r['file']:32} {r['answers']:>7} {r['tokens_mean']:>6} {r['tokens_p50']:>4} {r['tokens_p90']:>4} {r['tokens_p99']:>4} "
              f"{r['tokens_max']:>5}  " + "  ".join(f"{r['over_limit_pct'][str(x)]:>4}%" for x in limits))
    Path(args.out).write_text(json.dumps({"tokenizer": "qa/reader/default", "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
