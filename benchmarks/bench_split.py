"""Splitting a corpus into passages, the build's host stage before BM25 and embedding: the
splitter `qa index` uses by default (windows of 200 embedding-model tokens sharing 40), over the
documents of a question set's corpus, timed alone, for this checkout and for every --compare DIR
(an older checkout, e.g. `git worktree add /tmp/before <commit>`, run in its own process with its
sources first on PYTHONPATH), rounds interleaved so that all see the same host. With --threads N,
this checkout also splits as `qa index` does on N cores (``split_ahead``: documents split ahead
on N threads). The windows of every run are hashed: the same hash, the same passages.

    python benchmarks/bench_split.py --set open-squad --set covid-qa [--compare /tmp/before] [--threads 2]

Prints a table and writes benchmarks/results/split.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def split_once(question_set: str, data: str, threads: int) -> dict:
    """In this process (whatever ``qa`` the path gives): split the set's corpus, timed."""
    from qa.embedding import DEFAULT_EMBEDDING_MODEL, Embedder
    from qa.eval.question_sets import load_question_set
    from qa.indexer.options import PassageOptions
    from qa.indexer.stages import splitter

    docs = load_question_set(question_set, data=data).corpus
    split = splitter(PassageOptions().settings(DEFAULT_EMBEDDING_MODEL), Embedder(DEFAULT_EMBEDDING_MODEL))
    started = time.perf_counter()
    if threads > 1:
        from qa.indexer.stages import split_ahead

        windows = [list(spans) for _, spans in split_ahead(docs, split, threads)]
    else:
        windows = [[(w.start, w.end) for w in split(doc.text)] for doc in docs]
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(json.dumps(windows).encode()).hexdigest()
    return {"documents": len(docs), "characters": sum(len(doc.text) for doc in docs), "passages": sum(map(len, windows)),
            "seconds": seconds, "windows_sha256": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", dest="sets", help="question sets whose corpus is split (default open-squad)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", action="append", default=[], help="another checkout's folder, measured alike")
    parser.add_argument("--threads", type=int, action="append", default=[], help="also split ahead on this many threads")
    parser.add_argument("--one", nargs=3, metavar=("SET", "DATA", "THREADS"), help=argparse.SUPPRESS)  # a child's run
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "split.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(split_once(args.one[0], args.one[1], int(args.one[2]))))
        return
    sys.path.insert(0, str(ROOT))
    from data import DATA
    from qa.device import cpu_name

    checkouts = {"this checkout": (ROOT, 1), **{f"this checkout, {n} threads": (ROOT, n) for n in args.threads if n > 1},
                 **{folder: (Path(folder).resolve(), 1) for folder in args.compare}}
    runs: dict[str, dict[str, list[dict]]] = {s: {c: [] for c in checkouts} for s in args.sets or ["open-squad"]}
    for round_ in range(args.rounds):
        for question_set, by_checkout in runs.items():
            for name, (source, threads) in checkouts.items():
                env = {**os.environ, "PYTHONPATH": str(source)}
                out = subprocess.run([sys.executable, __file__, "--one", question_set, str(DATA), str(threads)], env=env, cwd=source,
                                     check=True, capture_output=True, text=True).stdout
                by_checkout[name].append(json.loads(out.strip().splitlines()[-1]))
                print(f"round {round_ + 1}: {question_set}, {name}: {by_checkout[name][-1]['seconds']:.2f} s", flush=True)
    rows = []
    for question_set, by_checkout in runs.items():
        for name, results in by_checkout.items():
            seconds = statistics.median(r["seconds"] for r in results)
            first = results[0]
            rows.append({"set": question_set, "checkout": name, "documents": first["documents"], "passages": first["passages"],
                         "median_s": round(seconds, 2), "min_s": round(min(r["seconds"] for r in results), 2),
                         "max_s": round(max(r["seconds"] for r in results), 2),
                         "passages_per_s": round(first["passages"] / seconds), "windows_sha256": first["windows_sha256"][:16],
                         "same_windows_every_round": len({r["windows_sha256"] for r in results}) == 1})
    print(f"\n{'set':<12} {'checkout':<28} {'passages':>9} {'median s':>9} {'min':>6} {'max':>6} {'passages/s':>11}  windows")
    for row in rows:
        print(f"{row['set']:<12} {row['checkout']:<28} {row['passages']:>9} {row['median_s']:>9.2f} {row['min_s']:>6.2f} "
              f"{row['max_s']:>6.2f} {row['passages_per_s']:>11}  {row['windows_sha256']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "rounds": args.rounds, "rows": rows,
                                          "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
