"""Ways to run the passage encoder on a CPU, side by side in one run: speed against the measured
matrix-product peak, and how far their vectors move from fp32 (issue 20).

    python benchmarks/embedding_paths.py --passages 1000 --rounds 3 --out benchmarks/results/embedding_paths.json

Paths, all on all-MiniLM-L6-v2 and the same passages (open-squad paragraphs in 160-word windows,
title + text, as benchmarks/bench_index.py draws them):

- ``st-autocast``: sentence-transformers under bf16 autocast (fp32 on CPUs without bf16 instructions),
  chunks of 128 sorted by length, batch 16 (what ``qa index`` runs where bf16 pays and OpenVINO is
  not installed); ``st-fp32``, on bf16 CPUs: the same in fp32 (what it runs where bf16 does not pay);
- ``openvino-S``: qa's Embedder on OpenVINO in bf16 (what ``qa index`` runs where bf16 pays and
  ``qa[openvino]`` is installed), the same chunks and batches, S batches at a time on S streams
  (``--streams``); ``openvino-fp32-S``: the same in fp32;
- ``bert-autocast-B``: qa.bert's plain-torch encoder (the question path) under the same autocast,
  passages sorted by length over the whole list, batch B;
- ``bert-bf16-B``: the same with the weights converted to bf16 (no casts between layers).

Each path runs once per round, in turn; 1024³ matrix products in the machine's best precision are
timed between runs. Agreement: the cosine of each path's vectors with fp32 sentence-transformers
vectors (min and mean), and the share of the fp32 top 10 each path keeps for 200 SQuAD dev questions
searched over the passages.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_index import encoder_flops, gemm_peak  # noqa: E402
from data import DATA  # noqa: E402

from qa.device import autocast, cpu_has_bf16, cpu_info  # noqa: E402
from qa.embedding import Embedder, load_question_encoder  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.indexer.passages import split_passages  # noqa: E402


def passages(n: int) -> tuple[list[str], list[str]]:
    benchmark = load_question_set("open-squad", data=str(DATA))
    texts = [f"{doc.title}\n{doc.text[w.start:w.end]}" for doc in benchmark.corpus for w in split_passages(doc.text, 160, 40)]
    rng = np.random.default_rng(0)
    chosen = [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]
    questions = [e.question for e in benchmark.examples[:200]]
    return chosen, questions


def bert_encode(encoder, texts: list[str], batch: int, precision: str | None) -> np.ndarray:
    """qa.bert over ``texts`` sorted by length, ``batch`` at a time; vectors in the input order."""
    from qa.bert import mean_pool

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    tokenizer = encoder.tokenizer
    for first in range(0, len(order), batch):
        rows = order[first : first + batch]
        encodings = tokenizer.encode_batch([texts[i].lower() if encoder.lower_case else texts[i] for i in rows])
        ids = torch.tensor([e.ids for e in encodings])
        types = torch.tensor([e.type_ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        with torch.inference_mode(), autocast("cpu", precision):
            hidden = encoder._model(ids, types, mask)
        out[rows] = torch.nn.functional.normalize(mean_pool(hidden.float(), mask), dim=-1).numpy()
    return out


def agreement(vectors: np.ndarray, reference: np.ndarray, question_vectors: np.ndarray) -> dict:
    """How far ``vectors`` moved from the fp32 ``reference`` vectors of the same passages: cosine
    (min and mean), and the share of the fp32 top 10 kept for ``question_vectors``."""
    cos = np.sum(vectors * reference, axis=1)
    exact_top = np.argsort(-(question_vectors @ reference.T), axis=1)[:, :10]
    top = np.argsort(-(question_vectors @ vectors.T), axis=1)[:, :10]
    kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_top, top)])
    return {"cosine_min": round(float(cos.min()), 5), "cosine_mean": round(float(cos.mean()), 6), "top10_kept": round(float(kept), 4)}


def run_paths(paths: dict, rounds: int, peak_dtype: str, reference: np.ndarray, question_vectors: np.ndarray,
              flops: float, label: str) -> tuple[list[dict], float, list[float]]:
    """Each path of ``paths`` (name -> function embedding the passages) once per round, in turn,
    with ``peak_dtype`` 1024^3 matrix products timed between runs; per path, the median speed
    against the median peak, and its agreement with the fp32 ``reference`` vectors (cosine, and
    the share of the fp32 top 10 kept for ``question_vectors``). Returns (rows, median peak, peaks);
    ``label`` is the rows' key for the path's name."""
    peaks = [gemm_peak(peak_dtype, 2.0)]
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    vectors = {}
    for _ in range(rounds):
        for name, run in paths.items():
            t0 = time.perf_counter()
            vectors[name] = np.asarray(run(), dtype=np.float32)
            seconds[name].append(time.perf_counter() - t0)
            peaks.append(gemm_peak(peak_dtype, 2.0))
    peak = float(np.median(peaks))
    rows = []
    for name in paths:
        s = float(np.median(seconds[name]))
        rows.append({label: name, "passages_per_s": round(len(reference) / s, 1), "gflop_s": round(flops / s / 1e9, 1),
                     "of_gemm_peak": round(flops / s / 1e9 / peak, 3), "seconds": [round(x, 2) for x in seconds[name]],
                     **agreement(vectors[name], reference, question_vectors)})
    return rows, peak, peaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="16,32", help="qa.bert's batch sizes ('' for none)")
    parser.add_argument("--streams", default="1,2", help="OpenVINO streams to compare (bf16 CPUs with OpenVINO installed)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "embedding_paths.json")
    args = parser.parse_args()
    texts, questions = passages(args.passages)
    precision = "bf16" if cpu_has_bf16() else "fp32"  # bf16 wherever the CPU has it, whether qa picks it or not
    st = Embedder(backend="torch", precision=precision)
    reference = Embedder(precision="fp32").encode(texts)
    question_vectors = Embedder(precision="fp32").encode(questions)
    lengths = [min(len(e.ids), st.max_tokens) for e in st.tokenizer.encode_batch(texts)]
    flops = sum(encoder_flops(st._model[0].auto_model.config, n) for n in lengths)

    autocast_encoder = load_question_encoder(precision=precision)
    bf16_encoder = load_question_encoder(precision="fp32")
    bf16_encoder._model = bf16_encoder._model.to(torch.bfloat16)

    paths = {"st-autocast": lambda: st.encode(texts)}
    if precision == "bf16":
        paths["st-fp32"] = lambda e=Embedder(backend="torch", precision="fp32"): e.encode(texts)
    if precision == "bf16" and importlib.util.find_spec("openvino"):
        for streams in [int(x) for x in args.streams.split(",")]:
            paths[f"openvino-{streams}"] = lambda e=Embedder(backend="openvino", precision="bf16", streams=streams): e.encode(texts)
            paths[f"openvino-fp32-{streams}"] = lambda e=Embedder(backend="openvino", precision="fp32", streams=streams): e.encode(texts)
    for b in [int(x) for x in args.batches.split(",") if x]:
        paths[f"bert-autocast-{b}"] = lambda b=b: bert_encode(autocast_encoder, texts, b, precision)
        paths[f"bert-bf16-{b}"] = lambda b=b: bert_encode(bf16_encoder, texts, b, None)
    for run in paths.values():
        run()  # warm-up
    peak_dtype = "bf16" if precision == "bf16" else "fp32"
    rows, peak, peaks = run_paths(paths, args.rounds, peak_dtype, reference, question_vectors, flops, "path")
    print(f"{len(texts)} passages, {flops / len(texts) / 1e9:.2f} GFLOP each; {peak_dtype} matrix-product peak {peak:.1f} GFLOP/s "
          f"(runs {min(peaks):.0f}–{max(peaks):.0f}); precision {precision}; {cpu_info().name}")
    print("| path | passages/s | GFLOP/s | of peak | cosine with fp32 (min / mean) | fp32 top 10 kept |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['passages_per_s']} | {r['gflop_s']} | {r['of_gemm_peak']:.0%} | {r['cosine_min']} / {r['cosine_mean']} | {r['top10_kept']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "threads": torch.get_num_threads(), "precision": precision,
                                    "gemm_peak_gflop_s": round(peak, 1), "gemm_peak_runs": [round(p, 1) for p in peaks],
                                    "gflop_per_passage": round(flops / len(texts) / 1e9, 3), "paths": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
