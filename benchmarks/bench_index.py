"""Indexing speed and memory: embedding throughput against the arithmetic limit of the device it
runs on (the CPU, or the GPU when there is one), and whole `qa index` builds with their peak memory.

1. Embedding: all-MiniLM-L6-v2 embeds ``--passages`` SQuAD passages (160-word windows, title +
   text, at most 256 tokens) after a warm-up, at each of ``BATCH_SIZES`` (``CUDA_BATCH_SIZES`` on
   a GPU), ``--rounds`` times in turn. The work per passage is counted in FLOPs
   (2 x multiply-adds of the encoder's matrix products, attention included, at the passage's real
   length), and compared with the rate square matrix products reach on the same device in the same
   precision (1024^3 on a CPU, 8192^3 on a GPU), timed just before and after each run (the
   practical limit: it includes the clock the cores really run at), and on a CPU with the nominal
   limit at the clock /proc/cpuinfo reports.
2. Builds: ``build_index`` of each corpus asked for, in a fresh process, timed, with its peak RSS:
   ``open-squad`` (every SQuAD v1.1 paragraph, train + dev) and ``covid-qa`` (all COVID-QA articles).

``--precision int8`` embeds in static int8 (OpenVINO + NNCF, ``qa index --precision int8``), in
both parts; its FLOPs are counted as the float model's and compared with the float precision qa
picks on the device (``auto``: bf16 where it pays, else fp32): the peak int8 has to beat.

    python benchmarks/bench_index.py --passages 2000 --rounds 3 --build open-squad,covid-qa [--keep DIR] [--precision int8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qa.device import cpu_info, cpu_name, default_precision

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_query_memory import status_mb  # noqa: E402
from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)


def encoder_flops(config, tokens: int) -> float:
    """FLOPs of one BERT-style encoder pass over ``tokens`` tokens (matrix products only)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * tokens * (4 * d * d + 2 * d * ff) + 2 * 2 * tokens * tokens * d
    return layers * per_layer


def gemm_peak(dtype, seconds: float = 3.0, device: str = "cpu") -> float:
    """GFLOP/s of repeated square matrix products in ``dtype`` (fp32, bf16 or fp16) on ``device``:
    1024 x 1024 on a CPU, 8192 x 8192 on a GPU (smaller ones leave a GPU waiting on launches)."""
    import torch

    size = 8192 if device.startswith("cuda") else 1024
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    if dtype in ("bf16", "fp16"):
        a, b = (a.bfloat16(), b.bfloat16()) if dtype == "bf16" else (a.half(), b.half())

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    for _ in range(3):
        a @ b
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
        if n % 8 == 0:
            sync()
    sync()
    return n * 2 * size**3 / (time.perf_counter() - t0) / 1e9


#: Embedding batch sizes measured, in turn, each round (64 was qa's CPU default before 16).
BATCH_SIZES = [64, 32, 16]
#: On a GPU: qa's CUDA default (256), the default before it (64), and the sizes around them.
CUDA_BATCH_SIZES = [512, 256, 128, 64]


def nominal_peak(precision: str, device: str = "cpu") -> tuple[float | None, str]:
    """GFLOP/s the cores could do at the clock /proc/cpuinfo reports: AVX2 FMA is 32 fp32 FLOP
    per cycle and core (two 256-bit FMA pipes), AVX-512 64, AVX512-BF16 128 in bf16. On a GPU,
    None: its datasheet peak is not readable here, and the measured matrix-product peak is the
    comparison that holds."""
    if device.startswith("cuda"):
        return None, "not computed on a GPU: compare with the matrix-product peak measured on it"
    info = cpu_info()
    mhz, flags = info.mhz or 0.0, info.flags
    if precision == "bf16":
        per_cycle, isa = 128, "AVX512-BF16"
    elif "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512 FMA"
    else:
        per_cycle, isa = 32, "AVX2 FMA"
    cores = os.cpu_count() or 1
    return cores * per_cycle * mhz / 1e3, f"{cores} cores x {per_cycle} FLOP/cycle ({isa}) x {mhz / 1e3:.2f} GHz"


def embedding_benchmark(passages: int, rounds: int, precision: str = "auto") -> dict:
    import numpy as np
    import torch
    from transformers import AutoConfig

    from qa.eval.question_sets import load_question_set
    from qa.embedding import Embedder
    from qa.hub import resolve_model
    from qa.indexer.passages import split_passages

    benchmark = load_question_set("open-squad", data=str(DATA))
    texts = []
    for doc in benchmark.corpus:
        for span in split_passages(doc.text, 160, 40):
            texts.append(f"{doc.title}\n{doc.text[span.start:span.end]}")
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.choice(len(texts), size=min(passages, len(texts)), replace=False)]
    embedder = Embedder(precision=precision)  # on CUDA when there is a GPU, in the precision qa picks there (fp16)
    config = AutoConfig.from_pretrained(resolve_model(embedder.name))
    lengths = [min(len(e.ids), embedder.max_tokens) for e in embedder.tokenizer.encode_batch(texts)]
    flops = sum(encoder_flops(config, n) for n in lengths)
    # the peak is measured where and as the encoder runs; int8 against the float precision qa would pick
    device, precision = embedder.device, embedder.precision
    peak_precision = default_precision(device) if precision == "int8" else precision

    embedder.encode(texts[:128])  # warm-up

    # The host's speed drifts (other tenants): each run is compared with matrix products timed
    # just before and just after it, and the median over rounds is reported.
    runs = {batch_size: [] for batch_size in (CUDA_BATCH_SIZES if device.startswith("cuda") else BATCH_SIZES)}
    peaks = [gemm_peak(peak_precision, 2.0, device)]
    for _ in range(rounds):
        for batch_size in runs:
            embedder.batch_size = batch_size
            t0 = time.perf_counter()
            embedder.encode(texts)
            seconds = time.perf_counter() - t0
            peaks.append(gemm_peak(peak_precision, 2.0, device))
            runs[batch_size].append((seconds, flops / seconds / 1e9 / ((peaks[-2] + peaks[-1]) / 2)))
    nominal, nominal_how = nominal_peak(peak_precision, device)
    peak = float(np.median(peaks))
    results = []
    for batch_size, measured in runs.items():
        seconds = float(np.median([s for s, _ in measured]))
        results.append({
            "batch_size": batch_size,
            "seconds": [round(s, 1) for s, _ in measured],
            "passages_per_s": round(len(texts) / seconds, 1),
            "achieved_gflop_s": round(flops / seconds / 1e9, 1),
            "fraction_of_gemm_peak": round(float(np.median([f for _, f in measured])), 3),
            "fraction_of_nominal_peak": round(flops / seconds / 1e9 / nominal, 3) if nominal else None,
        })
    return {
        "passages": len(texts),
        "windows": "160 words, 40 shared",
        "mean_tokens": round(float(np.mean(lengths)), 1),
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_name(),
        "precision": precision,
        "backend": embedder.backend,
        "peak_precision": peak_precision,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "gflop_per_passage": round(flops / len(texts) / 1e9, 2),
        "gemm_peak_gflop_s": round(peak, 1),
        "gemm_peak_runs": [round(p, 1) for p in peaks],
        "nominal_peak_gflop_s": round(nominal, 1) if nominal else None,
        "nominal_peak": nominal_how,
        "passages_per_s_at_gemm_peak": round(peak / (flops / len(texts) / 1e9), 1),
        "configs": results,
    }


def build_one(name: str, out: str, precision: str = "auto") -> dict:
    """Build the corpus as `qa evaluate` does (same settings and metadata), so a kept index
    serves `qa evaluate NAME --index OUT`."""
    from qa.eval.question_sets import load_question_set
    from qa.eval.runner import prepare_index
    from qa.index.layout import read_manifest

    benchmark = load_question_set(name, data=str(DATA))
    t0 = time.perf_counter()
    prepare_index(benchmark, out, precision=precision)
    manifest = read_manifest(out)
    return {
        "corpus": name,
        "precision": manifest["dense"].get("precision"),
        "documents": manifest["counts"]["documents"],
        "passages": manifest["counts"]["passages"],
        "seconds": round(time.perf_counter() - t0, 1),
        # VmHWM, not ru_maxrss: Linux carries a parent's peak across fork and exec into the child's
        # ru_maxrss, and this process's parent holds the embedding benchmark's model and passages
        "peak_rss_mb": round(status_mb("VmHWM")),
        "index_mb": round(sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="embedding runs per configuration (the median is reported)")
    parser.add_argument("--build", default="open-squad,covid-qa", help="corpora to build ('' for none)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "index.json"))
    parser.add_argument("--precision", default="auto", help="what the passages are embedded in: auto (qa's default) or int8")
    parser.add_argument("--keep", metavar="DIR", help="keep each built index in DIR/NAME (for `qa evaluate NAME --index DIR/NAME`)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: build one corpus, JSON on stdout
    parser.add_argument("--one-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(build_one(args.one, args.one_out or str(Path(tmp) / "index"), args.precision)))
        return
    embedding, builds = (embedding_benchmark(args.passages, args.rounds, args.precision) if args.passages else None), []

    def save() -> None:  # after each part: a build cut short (a time limit) loses only itself
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"cpu": cpu_name(), "embedding": embedding, "builds": builds}, indent=2) + "\n")

    save()
    if embedding:
        e = embedding
        print(f"embedding on {e['device']}: {e['passages']} passages of {e['mean_tokens']} tokens ({e['gflop_per_passage']} GFLOP each) in "
              f"{e['precision']} ({e['backend']}); {e['peak_precision']} matrix-product peak {e['gemm_peak_gflop_s']} GFLOP/s (median of {e['gemm_peak_runs']}), "
              f"nominal {e['nominal_peak_gflop_s']} ({e['nominal_peak']})")
        print("| batch | passages/s | GFLOP/s | of matrix-product peak | of nominal peak |")
        print("|---|---|---|---|---|")
        for c in e["configs"]:
            nominal = f"{100 * c['fraction_of_nominal_peak']:.0f}%" if c["fraction_of_nominal_peak"] is not None else "n/a"
            print(f"| {c['batch_size']} | {c['passages_per_s']} | {c['achieved_gflop_s']} | "
                  f"{100 * c['fraction_of_gemm_peak']:.0f}% | {nominal} |", flush=True)
    for name in [n for n in args.build.split(",") if n]:
        cmd = [sys.executable, __file__, "--one", name, "--precision", args.precision]
        if args.keep:
            target = Path(args.keep) / name
            if target.exists():
                sys.exit(f"{target} exists: a kept build must start from nothing (remove it)")
            cmd += ["--one-out", str(target)]
        builds.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        b = builds[-1]
        print(f"build {name} ({b['precision']}): {b['documents']} documents, {b['passages']} passages in {b['seconds']} s "
              f"({b['passages'] / b['seconds']:.1f} passages/s), peak RSS {b['peak_rss_mb']} MB, index {b['index_mb']} MB", flush=True)
        save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
