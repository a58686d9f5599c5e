"""Open-domain SQuAD, end to end: index every SQuAD v1.1 paragraph (train + dev, 20,963),
then answer a seeded sample of dev questions with the full pipeline.

Prints a table and writes JSON. The index is cached under --work and reused.

    python benchmarks/bench_open_squad.py --reader ../shared/models/reference-reader-minilm-l6-squad1 \\
        --questions 300 --seed 0 --top-k 10 --retriever hybrid
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qa.eval import exact_match, f1_score, max_over_answers  # noqa: E402
from qa.indexer import build_index  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad"


def load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="folder with train-v1.1.json.gz and dev-v1.1.json")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qa" / "bench-open-squad")
    ap.add_argument("--reader", required=True)
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--retriever", default="hybrid", choices=["hybrid", "bm25", "dense"])
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/open_squad_RETRIEVER_kK.json")
    args = ap.parse_args()
    args.out = args.out or Path(f"benchmarks/results/open_squad_{args.retriever}_k{args.top_k}.json")

    train, dev = args.data / "train-v1.1.json.gz", args.data / "dev-v1.1.json"
    if not (train.is_file() and dev.is_file()):
        print(f"SQuAD v1.1 not found in {args.data}: skipping", file=sys.stderr)
        return 0
    dev_data = load(dev)
    index_dir = args.work / "index"
    if not (index_dir / "manifest.json").is_file():
        args.work.mkdir(parents=True, exist_ok=True)
        corpus = args.work / "squad-paragraphs.jsonl"
        with corpus.open("w") as f:
            for split, data in (("train", load(train)), ("dev", dev_data)):
                for article in data["data"]:
                    for i, p in enumerate(article["paragraphs"]):
                        title = article["title"].replace("_", " ")
                        f.write(json.dumps({"id": f"{split}/{article['title']}/{i}", "title": title, "text": p["context"]}) + "\n")
        result = build_index(corpus, index_dir, show_progress=True)
        print(f"indexed {result.manifest['counts']} in {result.seconds:.0f} s", file=sys.stderr)

    questions = [
        (q["id"], q["question"], [a["text"] for a in q["answers"]])
        for article in dev_data["data"]
        for p in article["paragraphs"]
        for q in p["qas"]
    ]
    random.Random(args.seed).shuffle(questions)
    questions = questions[: args.questions]

    pipe = Pipeline(index_dir, reader=args.reader, retriever=args.retriever)
    em = f1 = 0.0
    latencies, retrieve, read = [], [], []
    started = time.perf_counter()
    for _, question, golds in questions:
        t = time.perf_counter()
        prediction = pipe.ask(question, top_k=args.top_k, answers=1)
        latencies.append(time.perf_counter() - t)
        retrieve.append(prediction.seconds["retrieve"])
        read.append(prediction.seconds["read"])
        text = prediction.answers[0].text if prediction.answers else ""
        em += max_over_answers(exact_match, text, golds)
        f1 += max_over_answers(f1_score, text, golds)
    wall = time.perf_counter() - started
    n = len(questions)
    report = {
        "benchmark": "open-squad",
        "questions": n,
        "seed": args.seed,
        "retriever": args.retriever,
        "top_k": args.top_k,
        "reader": args.reader,
        "passages": pipe.index.manifest["counts"]["passages"],
        "exact_match": round(100 * em / n, 2),
        "f1": round(100 * f1 / n, 2),
        "seconds_per_question": round(wall / n, 3),
        "latency_p50": round(statistics.median(latencies), 3),
        "latency_p95": round(sorted(latencies)[int(0.95 * (n - 1))], 3),
        "retrieve_p50": round(statistics.median(retrieve), 3),
        "read_p50": round(statistics.median(read), 3),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
