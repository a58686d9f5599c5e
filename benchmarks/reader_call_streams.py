"""Which calls OpenVINO's streams pay for: the reader's speed by pairs per call, with one stream,
with every call on two streams, and as qa chooses per call (``qa.openvino_runtime.STREAMED_BATCHES``:
calls of fewer batches run on the one-stream compilation).

One question's passages (10 pairs, ``qa ask``) make two or three batches of 8 features; ``qa serve``
reads what has queued up at once (a micro-batch of 1 to 16 questions), ``qa evaluate`` 16
questions (160 pairs). Pairs are SQuAD v1.1 dev questions with their gold paragraphs, the same for
every configuration; each configuration runs once per round, in turn, and the table gives medians.

    python benchmarks/reader_call_streams.py --calls 10,20,40,80,160 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_reader import qa_answers  # noqa: E402  (benchmarks/ is on the path)
from data import DATA  # noqa: E402

from qa import openvino_runtime  # noqa: E402
from qa.corpora.squad import load_squad  # noqa: E402
from qa.device import cpu_name  # noqa: E402
from qa.reader import Reader, default_reader_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", default=str(default_reader_path() or ""))
    parser.add_argument("--dev", default=str(DATA / "squad" / "dev-v1.1.json"))
    parser.add_argument("--calls", default="10,20,40,80,160", help="pairs per Reader.read_batch call")
    parser.add_argument("--pairs", type=int, default=640, help="pairs read per configuration and call size, each round")
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reader_call_streams.json"))
    args = parser.parse_args()

    data = load_squad(args.dev)
    contexts = {d.id: d.text for d in data.documents}
    pairs = [(e.question, contexts[e.doc_id]) for e in random.Random(args.seed).sample(data.examples, args.pairs)]
    readers = {
        "1 stream": Reader(args.reader, precision=args.precision, device="cpu", backend="openvino", streams=1),
        f"{args.streams} streams, every call": Reader(args.reader, precision=args.precision, device="cpu", backend="openvino", streams=args.streams),
    }
    readers[f"{args.streams} streams, chosen per call"] = readers[f"{args.streams} streams, every call"]
    chosen_threshold = openvino_runtime.STREAMED_BATCHES
    calls = [int(c) for c in args.calls.split(",")]
    rates: dict[tuple[str, int], list[float]] = {}
    answers: dict[tuple[str, int], list[str]] = {}
    for name, reader in readers.items():  # warm-up: the first calls of a compiled model are slower
        qa_answers(reader, pairs[:80], args.batch_size, 40)
    for round_ in range(args.rounds):
        for call in calls:
            for name, reader in readers.items():
                openvino_runtime.STREAMED_BATCHES = 1 if name.endswith("every call") else chosen_threshold
                started = time.perf_counter()
                got, _ = qa_answers(reader, pairs, args.batch_size, call)
                rates.setdefault((name, call), []).append(len(pairs) / (time.perf_counter() - started))
                answers.setdefault((name, call), got)
        print(f"round {round_ + 1}: " + ", ".join(f"{n[:9]}@{c} {r[-1]:.1f}" for (n, c), r in rates.items()), flush=True)
    openvino_runtime.STREAMED_BATCHES = chosen_threshold
    # answers differing from one stream's for the same calls (a call's batches, so its padding, depend on its size)
    differ = {f"{n} {c}": sum(a != b for a, b in zip(got, answers[("1 stream", c)])) for (n, c), got in answers.items()}

    print(f"\n{cpu_name()}; {args.reader}, {args.precision} OpenVINO, batch {args.batch_size}, {len(pairs)} pairs, "
          f"{args.rounds} rounds; STREAMED_BATCHES = {chosen_threshold}; answers unlike one stream's: {sum(differ.values())}")
    print("| pairs per call | batches in the first call | " + " | ".join(f"{n}, pairs/s" for n in readers) + " | every call / 1 stream |")
    print("|---" * (len(readers) + 3) + "|")
    rows = []
    for call in calls:
        medians = {n: statistics.median(rates[(n, call)]) for n in readers}
        batches = _batches(readers["1 stream"], pairs[:call], args.batch_size)
        streamed = list(medians.values())[1] / medians["1 stream"]
        print(f"| {call} | {batches} | " + " | ".join(f"{m:.1f}" for m in medians.values()) + f" | {streamed:.2f} |")
        rows.append({"call": call, "batches": batches, "pairs_per_s": medians, "rounds": {n: rates[(n, call)] for n in readers}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu_name(), "reader": args.reader, "precision": args.precision,
                                          "batch_size": args.batch_size, "pairs": len(pairs), "rounds": args.rounds,
                                          "streams": args.streams, "streamed_batches": chosen_threshold,
                                          "answers_unlike_one_stream": differ, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


def _batches(reader: Reader, pairs: list[tuple[str, str]], batch_size: int) -> int:
    """Batches of ``batch_size`` features the reader makes of ``pairs`` (windows of long paragraphs included)."""
    encodings = reader._pairs.encode_batch([(q, c) for q, c in pairs])
    features = sum(1 + len(e.overflowing) for e in encodings)
    return -(-features // batch_size)


if __name__ == "__main__":
    main()
