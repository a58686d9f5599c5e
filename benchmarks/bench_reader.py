"""Reader speed and accuracy: qa's batched reader against a naive Hugging Face loop, by batch
size and precision.

- naive: the usual first implementation: one (question, paragraph) pair at a time, tokenised
  alone, one forward pass in float32, spans decoded with a Python double loop over the 20 best
  start and end logits (as in Hugging Face's ``utils_qa.py``); latency is per pair;
- qa: :class:`qa.reader.Reader` reading 64 pairs per call, their features sorted by length and
  run B at a time (the batch size), decoded by the vectorised n-best decoder, in fp32, bf16
  autocast and int8 dynamic quantisation, with torch, and with OpenVINO where it is installed
  (``-ov``: fp32, bf16, and static int8 where NNCF is installed, :mod:`qa.int8`;
  ``--streams 1,2``: also with batches run two at a time on OpenVINO's streams, ``-s2``, in calls
  of at least ``STREAMED_BATCHES`` batches: see ``benchmarks/reader_call_streams.py``); latency is
  per call of 64 pairs (``--call``).

Every configuration runs once per round, in turn, for ``--rounds`` rounds; the table gives medians,
and "x naive" compares each run with the naive loop of the same round. The fp32 ceiling is the
most any fp32 code can read here: the matrix-product FLOPs of the pairs' features at their real
lengths (attention included), at the rate 1024^3 fp32 matrix products reach after each round.

On a GPU (``--device cuda``) the settings are torch fp32 and fp16 autocast (what qa picks there),
the naive loop runs in fp32 on the GPU too, and the ceiling is the fp16 rate of 8192^3 matrix
products on that GPU.

Pairs are SQuAD v1.1 dev questions with their gold paragraph (max length 384, stride 128, max
answer length 30 tokens, same for all); accuracy is EM/F1 on the first ``--accuracy-questions``
of the sample.

    python benchmarks/bench_reader.py --reader qa/reader/default [--device cuda]
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_index import encoder_flops, gemm_peak  # noqa: E402  (benchmarks/ is on the path)
from qa.device import cpu_name, pick_device  # noqa: E402

from qa.corpora.squad import load_squad  # noqa: E402
from qa.device import cpu_has_bf16, nncf_installed, openvino_installed  # noqa: E402
from qa.metrics import squad_scores  # noqa: E402
from qa.reader import Reader, default_reader_path  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)


def load_naive(path, device: str = "cpu") -> tuple:
    """The reader as a transformers user would load it: (tokenizer, model), fp32, eval mode."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32).eval().to(device)
    return AutoTokenizer.from_pretrained(path), model


def naive_answers(naive: tuple, reader: Reader, pairs: list[tuple[str, str]], n_best: int = 20, max_answer: int = 30) -> list[str]:
    """One pair at a time through transformers, every start/end pair of the n-best tried in Python."""
    tokenizer, model = naive
    answers = []
    for question, context in pairs:
        enc = tokenizer(
            question, context, truncation="only_second", max_length=reader.max_length, stride=reader.stride,
            return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()
        enc.pop("overflow_to_sample_mapping")
        with torch.inference_mode():
            out = model(**enc.to(model.device))
        best, best_score = "", -float("inf")
        for f in range(len(offsets)):
            start_logits, end_logits = out.start_logits[f].cpu().numpy(), out.end_logits[f].cpu().numpy()
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
    scores = [squad_scores(a, g) for a, g in zip(answers, golds)]
    return 100 * statistics.fmean(s[0] for s in scores), 100 * statistics.fmean(s[1] for s in scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", default=str(default_reader_path() or ""), help="reader folder or hub id")
    parser.add_argument("--dev", default=str(DATA / "squad" / "dev-v1.1.json"))
    parser.add_argument("--speed-questions", type=int, default=256)
    parser.add_argument("--accuracy-questions", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32", help="features per forward pass")
    parser.add_argument("--rounds", type=int, default=3, help="times each configuration is measured, in turn")
    parser.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                        help="measure bf16 autocast: auto = only on CPUs with native bf16 (elsewhere it is emulated, ~5x slower than fp32)")
    parser.add_argument("--naive-accuracy", action="store_true", help="also score the naive loop's answers")
    parser.add_argument("--no-openvino", action="store_true", help="leave out the OpenVINO runs")
    parser.add_argument("--call", type=int, default=64, help="pairs per Reader.read_batch call (10: one question's passages)")
    parser.add_argument("--streams", default="1", help="OpenVINO streams to measure (e.g. 1,2: bf16-ov and bf16-ov-s2)")
    parser.add_argument("--precisions", default="", help="only these of qa's settings (e.g. bf16-ov,bf16-ov-s2); the naive loop always runs")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:N): torch fp32 and fp16 on the GPU")
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
    device = pick_device(args.device)
    gpu = device.startswith("cuda")
    fp32 = Reader(args.reader, precision="fp32", device=device, backend="torch")
    naive = load_naive(fp32.name, device)
    precisions = {"fp32": fp32}
    bf16 = not gpu and (args.bf16 == "yes" or (args.bf16 == "auto" and cpu_has_bf16()))
    if gpu:
        precisions["fp16"] = Reader(args.reader, precision="fp16", device=device, backend="torch")
    elif bf16:
        precisions["bf16"] = Reader(args.reader, precision="bf16", device="cpu", backend="torch")
    else:
        print("bf16: not measured (this CPU has no native bf16; pass --bf16 yes to measure it emulated)")
    if not gpu:
        precisions["int8"] = Reader(args.reader, precision="int8", device="cpu", backend="torch")
    if not gpu and openvino_installed() and not args.no_openvino:  # OpenVINO runs on the CPU only
        for streams in [int(x) for x in args.streams.split(",")]:
            suffix = "" if streams == 1 else f"-s{streams}"
            precisions["fp32-ov" + suffix] = Reader(args.reader, precision="fp32", device="cpu", backend="openvino", streams=streams)
            if nncf_installed():
                precisions["int8-ov" + suffix] = Reader(args.reader, precision="int8", device="cpu", backend="openvino", streams=streams)
            if bf16:
                precisions["bf16-ov" + suffix] = Reader(args.reader, precision="bf16", device="cpu", backend="openvino", streams=streams)
    else:
        print("OpenVINO: not measured (a GPU run, not installed, or --no-openvino)")
    if args.precisions:
        precisions = {name: reader for name, reader in precisions.items() if name in args.precisions.split(",")}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    def naive_seconds() -> list[float]:
        per_pair = []
        for pair in speed_pairs:
            t0 = time.perf_counter()
            naive_answers(naive, fp32, [pair])
            per_pair.append(time.perf_counter() - t0)
        return per_pair

    # Every configuration once per round, in turn, so that a host whose speed drifts (shared
    # cores, clock changes) slows all of them alike; each is compared with the naive loop of its
    # own round, and the medians over rounds are reported.
    configs = [("naive", "fp32", 1, naive_seconds)] + [
        ("qa", precision, batch, lambda reader=reader, batch=batch: qa_answers(reader, speed_pairs, batch, args.call)[1])
        for precision, reader in precisions.items()
        for batch in batch_sizes
    ]
    # The arithmetic's ceiling: matrix-product FLOPs of every feature of the speed pairs at its
    # real length, against the rate of matrix products timed after each round: fp32 1024^3 on a
    # CPU, fp16 8192^3 on a GPU.
    ceiling_precision = "fp16" if gpu else "fp32"
    enc = naive[0]([q for q, _ in speed_pairs], [c for _, c in speed_pairs], truncation="only_second",
                         max_length=fp32.max_length, stride=fp32.stride, return_overflowing_tokens=True)
    flops_per_pair = sum(encoder_flops(naive[1].config, len(ids)) for ids in enc["input_ids"]) / len(speed_pairs)
    peaks = []
    naive_answers(naive, fp32, speed_pairs[:4])  # warm-up
    for reader in precisions.values():
        qa_answers(reader, speed_pairs[:16], 8)
    runs: dict[tuple, list[dict]] = {c[:3]: [] for c in configs}
    for round_ in range(args.rounds):
        for method, precision, batch, measure in configs:
            seconds = measure()
            runs[method, precision, batch].append(
                {"pairs_per_s": len(speed_pairs) / sum(seconds), "latency_p50_ms": 1000 * float(np.median(seconds))}
            )
            print(f"round {round_ + 1}: {method:<6} {precision:<7} batch {batch:>3}: "
                  f"{runs[method, precision, batch][-1]['pairs_per_s']:6.1f} pairs/s", flush=True)
        peaks.append(gemm_peak(ceiling_precision, 2.0, device))
    naive_runs = runs["naive", "fp32", 1]
    rows = []
    for (method, precision, batch), measured in runs.items():
        pps = [m["pairs_per_s"] for m in measured]
        rows.append({
            "method": method, "precision": precision, "batch_size": batch, "pairs": len(speed_pairs),
            "pairs_per_s": round(statistics.median(pps), 1),
            "pairs_per_s_range": [round(min(pps), 1), round(max(pps), 1)],
            "x_naive": round(statistics.median(m / n["pairs_per_s"] for m, n in zip(pps, naive_runs)), 2),
            # per pair for the naive loop, per call of --call pairs for qa
            "latency_p50_ms": round(statistics.median(m["latency_p50_ms"] for m in measured), 1),
        })

    acc_pairs, acc_golds = pairs[: args.accuracy_questions], golds[: args.accuracy_questions]
    accuracy_rows = []
    if args.naive_accuracy:
        em, f1 = accuracy(naive_answers(naive, fp32, acc_pairs), acc_golds)
        accuracy_rows.append({"method": "naive", "precision": "fp32", "exact_match": round(em, 2), "f1": round(f1, 2)})
    for precision, reader in precisions.items():
        answers, _ = qa_answers(reader, acc_pairs, 8)
        em, f1 = accuracy(answers, acc_golds)
        accuracy_rows.append({"method": "qa", "precision": precision, "exact_match": round(em, 2), "f1": round(f1, 2)})

    best = max((r for r in rows if r["method"] == "qa"), key=lambda r: r["x_naive"])
    peak = statistics.median(peaks)
    ceiling = {
        "gflop_per_pair": round(flops_per_pair / 1e9, 2),
        "features_per_pair": round(len(enc["input_ids"]) / len(speed_pairs), 3),
        f"{ceiling_precision}_gemm_gflop_s": [round(p, 1) for p in peaks],
        f"{ceiling_precision}_pairs_per_s": round(peak * 1e9 / flops_per_pair, 1),
        "x_naive": round(statistics.median(p * 1e9 / flops_per_pair / n["pairs_per_s"] for p, n in zip(peaks, naive_runs)), 2),
    }
    print(f"\nmedians over {args.rounds} rounds of {len(speed_pairs)} pairs (x naive: against the naive loop of the same round)")
    print(f"{'method':<6} {'prec':<7} {'batch':>5} {'pairs/s':>8} {'range':>13} {'x naive':>7} {'p50 ms':>8}")
    for r in rows:
        low, high = r["pairs_per_s_range"]
        print(f"{r['method']:<6} {r['precision']:<7} {r['batch_size']:>5} {r['pairs_per_s']:>8} {f'{low}-{high}':>13} {r['x_naive']:>7.2f} {r['latency_p50_ms']:>8}")
    print()
    print(f"accuracy on {len(acc_pairs)} SQuAD v1.1 dev questions, gold paragraph:")
    for r in accuracy_rows:
        print(f"  {r['method']:<6} {r['precision']:<7} EM {r['exact_match']:6.2f}  F1 {r['f1']:6.2f}")
    print(f"\nbest qa setting: {best['precision']} at batch {best['batch_size']}, {best['x_naive']:.2f}x the naive loop")
    size = "8192^3" if gpu else "1024^3"
    print(f"{ceiling_precision} ceiling: {ceiling['gflop_per_pair']} GFLOP per pair at {peak:.1f} GFLOP/s ({size} matrix "
          f"products) = {ceiling[f'{ceiling_precision}_pairs_per_s']} pairs/s, {ceiling['x_naive']:.2f}x the naive loop")
    cpu = cpu_name()
    result = {
        "reader": args.reader, "dev": args.dev, "call": args.call, "seed": args.seed, "cpu": cpu, "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "cpu_native_bf16": cpu_has_bf16(), "torch": torch.__version__, "rounds": args.rounds, "speed": rows,
        "speed_runs": [{"method": k[0], "precision": k[1], "batch_size": k[2], "runs": v} for k, v in runs.items()],
        f"{ceiling_precision}_ceiling": ceiling,
        "accuracy": accuracy_rows, "speedup_best_vs_naive": best["x_naive"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
