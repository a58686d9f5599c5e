"""Reader speed and accuracy: qa's batched reader against a naive Hugging Face loop, by batch
size and precision.

- naive: the usual first implementation: one (question, paragraph) pair at a time, tokenised
  alone, one forward pass in float32, spans decoded with a Python double loop over the 20 best
  start and end logits (as in Hugging Face's ``utils_qa.py``); latency is per pair;
- qa: :class:`qa.reader.Reader` reading 64 pairs per call, their features sorted by length and
  run B at a time (the batch size), decoded by the vectorised n-best decoder, in fp32, bf16
  autocast and int8 dynamic quantisation; latency is per call of 64 pairs.

Pairs are SQuAD v1.1 dev questions with their gold paragraph (max length 384, stride 128, max
answer length 30 tokens, same for all); accuracy is EM/F1 on the first ``--accuracy-questions``
of the sample.

    python benchmarks/bench_reader.py --reader qa/reader/default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qa.corpora.squad import load_squad  # noqa: E402
from qa.device import cpu_has_bf16  # noqa: E402
from qa.eval.runner import score  # noqa: E402
from qa.reader import Reader, default_reader_path  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def naive_answers(reader: Reader, pairs: list[tuple[str, str]], n_best: int = 20, max_answer: int = 30) -> list[str]:
    tokenizer, model = reader.tokenizer, reader.model
    answers = []
    for question, context in pairs:
        enc = tokenizer(
            question, context, truncation="only_second", max_length=reader.max_length, stride=reader.stride,
            return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()
        enc.pop("overflow_to_sample_mapping")
        with torch.inference_mode():
            out = model(**enc)
        best, best_score = "", -float("inf")
        for f in range(len(offsets)):
            start_logits, end_logits = out.start_logits[f].numpy(), out.end_logits[f].numpy()
            sequence = enc.sequence_ids(f)
            for s in np.argsort(start_logits)[-1 : -n_best - 1 : -1]:
                for e in np.argsort(end_logits)[-1 : -n_best - 1 : -1]:
                    if sequence[s] != 1 or sequence[e] != 1 or e < s or e - s + 1 > max_answer:
                        continue
                    if start_logits[s] + end_logits[e] > best_score:
                        best_score = start_logits[s] + end_logits[e]
                        best = context[offsets[f][s][0] : offsets[f][e][1]]
        answers.append(best)
    return answers


def qa_answers(reader: Reader, pairs: list[tuple[str, str]], batch_size: int, call: int = 64) -> tuple[list[str], list[float]]:
    """Answers, and the seconds each call took: ``call`` pairs per :meth:`Reader.read_batch` (whose
    features are sorted by length), ``batch_size`` features per forward pass."""
    reader.batch_size = batch_size
    answers, seconds = [], []
    for first in range(0, len(pairs), call):
        group = pairs[first : first + call]
        t0 = time.perf_counter()
        reading = reader.read_batch([q for q, _ in group], [c for _, c in group], n_best=1)
        seconds.append(time.perf_counter() - t0)
        best = {}
        for span in reading.spans:
            best.setdefault(span.passage, span.text)
        answers += [best.get(i, "") for i in range(len(group))]
    return answers, seconds


def accuracy(answers: list[str], golds: list[tuple[str, ...]]) -> tuple[float, float]:
    scores = [score(a, g) for a, g in zip(answers, golds)]
    return 100 * statistics.fmean(s[0] for s in scores), 100 * statistics.fmean(s[1] for s in scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", default=str(default_reader_path() or ""), help="reader folder or hub id")
    parser.add_argument("--dev", default=str(DATA / "squad" / "dev-v1.1.json"))
    parser.add_argument("--speed-questions", type=int, default=256)
    parser.add_argument("--accuracy-questions", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32,64", help="features per forward pass")
    parser.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                        help="measure bf16 autocast: auto = only on CPUs with native bf16 (elsewhere it is emulated, ~5x slower than fp32)")
    parser.add_argument("--naive-accuracy", action="store_true", help="also score the naive loop's answers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reader.json"))
    args = parser.parse_args()
    if not args.reader:
        parser.error("no reader: pass --reader PATH (no packaged default reader in this installation)")
    data = load_squad(args.dev)
    contexts = {d.id: d.text for d in data.documents}
    examples = random.Random(args.seed).sample(data.examples, max(args.speed_questions, args.accuracy_questions))
    pairs = [(e.question, contexts[e.doc_id]) for e in examples]
    golds = [e.answers for e in examples]
    speed_pairs = pairs[: args.speed_questions]
    torch.set_num_threads(torch.get_num_threads())
    rows = []

    def add(method, precision, batch, answers, seconds, n):
        row = {"method": method, "precision": precision, "batch_size": batch, "pairs": n,
               "pairs_per_s": round(n / sum(seconds), 1), "call_latency_p50_ms": round(1000 * float(np.median(seconds)), 1)}
        rows.append(row)
        print(f"{method:<6} {precision:<5} batch {batch:>3}: {row['pairs_per_s']:>7} pairs/s, p50 {row['call_latency_p50_ms']:>8} ms per call", flush=True)

    fp32 = Reader(args.reader, precision="fp32", device="cpu")
    naive_reader = fp32
    for _ in range(2):  # warm-up
        naive_answers(naive_reader, speed_pairs[:4])
    per_pair = []
    for pair in speed_pairs:
        t0 = time.perf_counter()
        naive_answers(naive_reader, [pair])
        per_pair.append(time.perf_counter() - t0)
    add("naive", "fp32", 1, None, per_pair, len(speed_pairs))
    naive_pps = rows[-1]["pairs_per_s"]

    precisions = {"fp32": fp32}
    if args.bf16 == "yes" or (args.bf16 == "auto" and cpu_has_bf16()):
        precisions["bf16"] = Reader(args.reader, precision="bf16", device="cpu")
    else:
        print("bf16: not measured (this CPU has no native bf16; pass --bf16 yes to measure it emulated)")
    precisions["int8"] = Reader(args.reader, precision="int8", device="cpu")
    for precision, reader in precisions.items():
        qa_answers(reader, speed_pairs[:16], 8)  # warm-up
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            _, seconds = qa_answers(reader, speed_pairs, batch)
            add("qa", precision, batch, None, seconds, len(speed_pairs))

    acc_pairs, acc_golds = pairs[: args.accuracy_questions], golds[: args.accuracy_questions]
    accuracy_rows = []
    if args.naive_accuracy:
        em, f1 = accuracy(naive_answers(naive_reader, acc_pairs), acc_golds)
        accuracy_rows.append({"method": "naive", "precision": "fp32", "exact_match": round(em, 2), "f1": round(f1, 2)})
    for precision, reader in precisions.items():
        answers, _ = qa_answers(reader, acc_pairs, 8)
        em, f1 = accuracy(answers, acc_golds)
        accuracy_rows.append({"method": "qa", "precision": precision, "exact_match": round(em, 2), "f1": round(f1, 2)})

    best = max(r["pairs_per_s"] for r in rows if r["method"] == "qa")
    print()
    print(f"{'method':<6} {'prec':<5} {'batch':>5} {'pairs/s':>8} {'x naive':>7} {'p50 ms/call':>12}")
    for r in rows:
        print(f"{r['method']:<6} {r['precision']:<5} {r['batch_size']:>5} {r['pairs_per_s']:>8} {r['pairs_per_s'] / naive_pps:>7.2f} {r['call_latency_p50_ms']:>12}")
    print()
    print(f"accuracy on {len(acc_pairs)} SQuAD v1.1 dev questions, gold paragraph:")
    for r in accuracy_rows:
        print(f"  {r['method']:<6} {r['precision']:<5} EM {r['exact_match']:6.2f}  F1 {r['f1']:6.2f}")
    print(f"\nbest qa throughput: {best} pairs/s = {best / naive_pps:.2f}x the naive loop")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    result = {
        "reader": args.reader, "dev": args.dev, "seed": args.seed, "cpu": cpu, "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_bf16(), "torch": torch.__version__, "speed": rows, "accuracy": accuracy_rows,
        "speedup_best_vs_naive": round(best / naive_pps, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
