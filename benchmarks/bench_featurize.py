"""Time and peak memory of featurising a SQuAD training file, as `qa train reader` does.

Loads the file, tokenises every (question, paragraph) pair into windows with labels, and reports
features, seconds and the process's peak resident memory (which includes Python, torch-free
imports, the parsed JSON and the tokenizer). Each setting runs in its own process, so one peak
does not hide another.

    python benchmarks/bench_featurize.py --train ../shared/data/squad/train-v1.1.json.gz
    python benchmarks/bench_featurize.py --train ../shared/data/covid-qa/covid-qa-train.json --settings 256:96 \
        --chunk-chars 0,1000000 --negative-fraction 0.05 --out benchmarks/results/featurize_covid_qa.json

``--chunk-chars`` compares bounds on the context characters tokenised at once (0: none, chunks of
1,000 questions only, as before ``qa.reader.features.CHUNK_CHARS``).
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

from qa.device import cpu_info  # noqa: E402
from qa.reader.features import CHUNK_CHARS  # noqa: E402
SETTINGS = ((384, 128), (256, 96))


def run_one(train: str, tokenizer_name: str, max_length: int, stride: int, chunk_chars: int, negative_fraction: float) -> dict:
    from transformers import AutoTokenizer

    from qa.corpora.squad import load_squad
    from qa.hub import resolve_model
    from qa.reader.features import featurize

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_name))
    t0 = time.perf_counter()
    data = load_squad(train)
    contexts = {d.id: d.text for d in data.documents}
    t1 = time.perf_counter()
    features = featurize(data.examples, contexts, tokenizer, max_length, stride, negative_fraction=negative_fraction,
                         chunk_chars=chunk_chars or 2**62)
    t2 = time.perf_counter()
    return {
        "max_length": max_length,
        "stride": stride,
        "chunk_chars": chunk_chars,
        "negative_fraction": negative_fraction,
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
    parser.add_argument("--settings", default=",".join(f"{m}:{s}" for m, s in SETTINGS), help="max_length:stride pairs")
    parser.add_argument("--chunk-chars", default=str(CHUNK_CHARS), help="comma-separated; 0: no bound (1,000 questions a chunk)")
    parser.add_argument("--negative-fraction", type=float, default=1.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "featurize.json"))
    parser.add_argument("--one", nargs=3, type=int, help=argparse.SUPPRESS)  # internal: one setting, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.train, args.tokenizer, *args.one, args.negative_fraction)))
        return
    if not Path(args.train).is_file():
        sys.exit(f"no training file at {args.train}: pass --train (SQuAD v1.1 train, see ../shared/data/README.md)")
    rows = []
    settings = [tuple(int(x) for x in pair.split(":")) for pair in args.settings.split(",")]
    for max_length, stride in settings:
        for chunk_chars in (int(c) for c in args.chunk_chars.split(",")):
            cmd = [sys.executable, __file__, "--train", args.train, "--tokenizer", args.tokenizer,
                   "--negative-fraction", str(args.negative_fraction), "--one", str(max_length), str(stride), str(chunk_chars)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"{'max_len':>7} {'stride':>6} {'chunk chars':>11} {'examples':>8} {'features':>8} {'load s':>6} {'featurize s':>11} "
          f"{'features MB':>11} {'peak RSS MB':>11}")
    for r in rows:
        print(
            f"{r['max_length']:>7} {r['stride']:>6} {r['chunk_chars']:>11} {r['examples']:>8} {r['features']:>8} {r['load_seconds']:>6} "
            f"{r['featurize_seconds']:>11} {r['features_mb']:>11} {r['peak_rss_mb']:>11}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"train": args.train, "tokenizer": args.tokenizer, "cpu": cpu_info().name, "results": rows},
                                         indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
