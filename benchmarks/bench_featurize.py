"""Time and peak memory of featurising a SQuAD training file, as `qa train reader` does.

Loads the file, tokenises every (question, paragraph) pair into windows with labels, and reports
features, seconds and the process's peak resident memory (which includes Python, torch-free
imports, the parsed JSON and the tokenizer). Each setting runs in its own process, so one peak
does not hide another.

    python benchmarks/bench_featurize.py --train ../shared/data/squad/train-v1.1.json.gz
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
SETTINGS = ((384, 128), (256, 96))


def run_one(train: str, tokenizer_name: str, max_length: int, stride: int) -> dict:
    from transformers import AutoTokenizer

    from qa.corpora.squad import load_squad
    from qa.hub import resolve_model
    from qa.reader.features import featurize

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_name))
    t0 = time.perf_counter()
    data = load_squad(train)
    contexts = {d.id: d.text for d in data.documents}
    t1 = time.perf_counter()
    features = featurize(data.examples, contexts, tokenizer, max_length, stride)
    t2 = time.perf_counter()
    return {
        "max_length": max_length,
        "stride": stride,
        "examples": len(data.examples),
        "features": len(features),
        "load_seconds": round(t1 - t0, 1),
        "featurize_seconds": round(t2 - t1, 1),
        "features_mb": round(sum(a.nbytes for a in (features.ids, features.type_ids, features.offsets, features.starts, features.ends)) / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA / "squad" / "train-v1.1.json.gz"))
    parser.add_argument("--tokenizer", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "featurize.json"))
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # internal: one setting, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.train, args.tokenizer, *args.one)))
        return
    if not Path(args.train).is_file():
        sys.exit(f"no training file at {args.train}: pass --train (SQuAD v1.1 train, see ../shared/data/README.md)")
    rows = []
    for max_length, stride in SETTINGS:
        cmd = [sys.executable, __file__, "--train", args.train, "--tokenizer", args.tokenizer, "--one", str(max_length), str(stride)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"{'max_len':>7} {'stride':>6} {'examples':>8} {'features':>8} {'load s':>6} {'featurize s':>11} {'features MB':>11} {'peak RSS MB':>11}")
    for r in rows:
        print(
            f"{r['max_length']:>7} {r['stride']:>6} {r['examples']:>8} {r['features']:>8} {r['load_seconds']:>6} "
            f"{r['featurize_seconds']:>11} {r['features_mb']:>11} {r['peak_rss_mb']:>11}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"train": args.train, "tokenizer": args.tokenizer, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
