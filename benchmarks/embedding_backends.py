"""sentence-transformers' inference backends for the passage encoder, side by side in one run
(issue 20): torch as ``qa index`` runs it, ONNX Runtime (fp32, and int8 by dynamic quantisation),
OpenVINO (its default precision for the CPU: bf16 where the CPU has it), through
sentence-transformers (optimum) and directly (``openvino.convert_model`` of qa's own encoder). Speed in passages/s on
the same passages, each backend once per round in turn; agreement with fp32 torch vectors (cosine)
and the share of the fp32 top 10 each keeps for 200 SQuAD dev questions (the passages of
``benchmarks/embedding_paths.py``).

The backends need optimum, which pins an older transformers than qa's, so this runs in an
environment of its own (not the project's):

    python3 -m venv ../venv-ov && ../venv-ov/bin/pip install torch==2.13.0 -e . "sentence-transformers[onnx,openvino]"
    ../venv-ov/bin/python benchmarks/embedding_backends.py --passages 1000 --rounds 3

OpenVINO's int8 (static quantisation) needs a calibration set from the Hugging Face Hub: not run
offline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_index import encoder_flops  # noqa: E402
from embedding_paths import passages, run_paths  # noqa: E402

from qa.device import cpu_info  # noqa: E402
from qa.embedding import DEFAULT_EMBEDDING_MODEL, Embedder, load_question_encoder  # noqa: E402
from qa.hub import resolve_model  # noqa: E402

BATCH = 16  # as qa index on a CPU


def openvino_direct(texts: list[str], model_dir: Path):
    """qa.bert's encoder (the question path's plain-torch BERT) converted by ``openvino.convert_model``
    itself, without optimum (so without its transformers pin), compiled for the CPU with OpenVINO's
    defaults; returns a function that embeds ``texts`` sorted by length, :data:`BATCH` at a time."""
    import openvino as ov

    from qa.bert import mean_pool

    encoder = load_question_encoder(str(model_dir), precision="fp32")
    example = torch.ones(2, 16, dtype=torch.long)
    compiled = ov.compile_model(ov.convert_model(encoder._model, example_input=(example, example * 0, example)), "CPU")
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

    def run() -> np.ndarray:
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        for first in range(0, len(order), BATCH):
            rows = order[first : first + BATCH]
            encodings = encoder.tokenizer.encode_batch([texts[i].lower() if encoder.lower_case else texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings])
            mask = np.array([e.attention_mask for e in encodings])
            hidden = torch.from_numpy(compiled([ids, np.array([e.type_ids for e in encodings]), mask])[0])
            out[rows] = torch.nn.functional.normalize(mean_pool(hidden.float(), torch.from_numpy(mask)), dim=-1).numpy()
        return out

    return run, str(precision)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "embedding_backends.json")
    args = parser.parse_args()
    try:
        from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model
    except ImportError as err:
        print(f"needs sentence-transformers with its onnx and openvino extras ({err}): see this script's docstring", file=sys.stderr)
        return 1
    texts, questions = passages(args.passages)
    work = Path(tempfile.mkdtemp(prefix="qa-backends-"))
    model_dir = work / "model"  # a copy: the backends export files beside the weights
    shutil.copytree(resolve_model(DEFAULT_EMBEDDING_MODEL), model_dir)
    reference_model = SentenceTransformer(str(model_dir), device="cpu")
    reference = reference_model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
    question_vectors = reference_model.encode(questions, batch_size=BATCH, normalize_embeddings=True)
    lengths = [min(len(ids), reference_model.max_seq_length) for ids in reference_model.tokenizer(texts)["input_ids"]]
    flops = sum(encoder_flops(reference_model[0].auto_model.config, n) for n in lengths)

    qa_embedder = Embedder(str(model_dir), backend="torch")  # what qa index ran before OpenVINO
    qa_openvino = Embedder(str(model_dir), backend="openvino") if qa_embedder.precision == "bf16" else None
    onnx = SentenceTransformer(str(model_dir), device="cpu", backend="onnx")
    onnx.save(str(work / "onnx-model"))
    flavour = "avx512_vnni" if "avx512_vnni" in cpu_info().flags else "avx2"
    export_dynamic_quantized_onnx_model(onnx, flavour, str(work / "onnx-model"))
    onnx_int8 = SentenceTransformer(str(work / "onnx-model"), device="cpu", backend="onnx",
                                    model_kwargs={"file_name": f"onnx/model_qint8_{flavour}.onnx"})
    openvino = SentenceTransformer(str(model_dir), device="cpu", backend="openvino")
    direct, direct_precision = openvino_direct(texts, model_dir)

    def encode(model):
        return lambda: model.encode(texts, batch_size=BATCH, normalize_embeddings=True)

    paths = {
        f"qa's Embedder, torch ({qa_embedder.precision} autocast)": lambda: qa_embedder.encode(texts),
        **({"qa's Embedder, OpenVINO (bf16; qa index's default here)": lambda: qa_openvino.encode(texts)} if qa_openvino else {}),
        "torch fp32": encode(reference_model),
        "onnx fp32": encode(onnx),
        f"onnx int8 ({flavour})": encode(onnx_int8),
        "openvino via sentence-transformers (optimum)": encode(openvino),
        f"openvino direct: convert_model of qa.bert ({direct_precision})": direct,
    }
    for run in paths.values():
        run()  # warm-up
    peak_dtype = "bf16" if qa_embedder.precision == "bf16" else "fp32"
    rows, peak, peaks = run_paths(paths, args.rounds, peak_dtype, reference, question_vectors, flops, "backend")
    import openvino
    import onnxruntime
    import sentence_transformers
    import transformers

    versions = {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
                "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__, "torch": torch.__version__}
    print(f"{len(texts)} passages, {flops / len(texts) / 1e9:.2f} GFLOP each; {peak_dtype} matrix-product peak {peak:.1f} GFLOP/s "
          f"(runs {min(peaks):.0f}-{max(peaks):.0f}); {cpu_info().name}; {versions}")
    print("| backend | passages/s | GFLOP/s | of peak | cosine with fp32 (min / mean) | fp32 top 10 kept |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['passages_per_s']} | {r['gflop_s']} | {r['of_gemm_peak']:.0%} | "
              f"{r['cosine_min']} / {r['cosine_mean']} | {r['top10_kept']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "bf16": "avx512_bf16" in cpu_info().flags, "threads": torch.get_num_threads(),
                                    "versions": versions, "gemm_peak_gflop_s": round(peak, 1),
                                    "gemm_peak_runs": [round(p, 1) for p in peaks],
                                    "gflop_per_passage": round(flops / len(texts) / 1e9, 3), "backends": rows}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
