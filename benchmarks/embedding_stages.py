"""Where passage-embedding time goes on the device qa picks (the GPU when there is one): tokenising
on the host, moving the batches to the device, the encoder's forward pass, and qa's
``Embedder.encode`` whole (issue 20: on an H200 embedding reached 1% of the GPU's peak).

    python benchmarks/embedding_stages.py --passages 10000 --out benchmarks/results/embedding_stages.json

all-MiniLM-L6-v2 over open-squad passages drawn as benchmarks/bench_index.py draws them, sorted by
length into batches of ``--batch`` (what sentence-transformers does within a chunk), one timed pass
of each stage after a warm-up:

- ``tokenize``: the model's tokenizer (a transformers fast tokenizer) over every batch, padded, as
  torch tensors; with the tokenizers library's own threads only if ``TOKENIZERS_PARALLELISM=true``
  (``qa`` sets it to false; run the script once each way);
- ``to-device``: those tensors moved to the device;
- ``forward``: the encoder and pooling over the moved batches in qa's precision for the device
  (autocast: fp16 on CUDA, bf16 on CPUs that have it);
- ``forward-fp16-weights`` (CUDA only): the same with the weights converted to fp16;
- ``encode``: ``Embedder.encode`` of the same passages at the same batch size, as ``qa index``
  runs it (on CUDA: qa.bert's encoder, batches tokenised ahead on the host's cores; on a CPU with
  ``qa[openvino]``, OpenVINO).

Then whole paths side by side, each timed once after the stages, with their agreement with fp32
sentence-transformers vectors of the same passages (cosine min and mean, and the share of the fp32
top 10 kept for 200 SQuAD dev questions searched over them): ``encode`` (qa's), and where qa embeds
through qa.bert: ``encode-sentence-transformers`` (the path before, the stages above),
``encode-tokenising-on-one-thread`` (qa.bert's encoder without the tokenising threads) and on CUDA
``encode-fp16-weights`` (qa's, the weights converted to fp16).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).parent))
from embedding_paths import agreement, passages  # noqa: E402

from qa.device import autocast, cpu_name  # noqa: E402
from qa.embedding import Embedder  # noqa: E402
from qa.hub import resolve_model  # noqa: E402


def timed(step, sync) -> float:
    started = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "embedding_stages.json"))
    args = parser.parse_args()

    texts, questions = passages(args.passages)
    embedder = Embedder(batch_size=args.batch)
    device = embedder.device
    model = embedder._model or sentence_transformer(embedder)  # the stages of sentence-transformers' path
    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches = [[texts[i] for i in order[first : first + args.batch]] for first in range(0, len(order), args.batch)]
    embedder.encode(texts[: 2 * args.batch])  # warm-up

    def tokenize():
        return [model.tokenize(batch) for batch in batches]

    def forward(features):
        with torch.inference_mode():
            for f in features:
                model(f)["sentence_embedding"]

    seconds = {"tokenize": timed(tokenize, sync)}
    features = tokenize()
    moved = []

    def to_device():
        moved.extend({k: v.to(device) if torch.is_tensor(v) else v for k, v in f.items()} for f in features)

    seconds["to-device"] = timed(to_device, sync)
    with autocast(device, embedder.precision):
        forward(moved[:1])
        seconds["forward"] = timed(lambda: forward(moved), sync)
    if cuda:
        model.half()
        forward(moved[:1])
        seconds["forward-fp16-weights"] = timed(lambda: forward(moved), sync)
        model.float()
    seconds["encode"] = timed(lambda: embedder.encode(texts), sync)
    paths = compare_paths(embedder, texts, questions, sync)

    result = {
        "device": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "host_cpus": os.cpu_count(),
        "precision": embedder.precision,
        "encode_backend": embedder.backend,
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset: the library's default, on)"),
        "passages": len(texts),
        "batch": args.batch,
        "stages": {name: {"seconds": round(s, 3), "passages_per_s": round(len(texts) / s, 1)} for name, s in seconds.items()},
        "tokenize_threads": embedder._bert._tokenizing._max_workers if embedder._bert and embedder._bert._tokenizing else 1,
        "paths": paths,
    }
    print(f"{result['passages']} passages on {result['device']} ({result['host_cpus']} host CPUs), {result['precision']}, "
          f"encode on {embedder.backend}, batch {args.batch}, TOKENIZERS_PARALLELISM {result['tokenizers_parallelism']}")
    print("| stage | seconds | passages/s |\n|---|---|---|")
    for name, stage in result["stages"].items():
        print(f"| {name} | {stage['seconds']} | {stage['passages_per_s']} |")
    print("\n| path | seconds | passages/s | cosine with fp32 (min / mean) | fp32 top 10 kept |\n|---|---|---|---|---|")
    for name, row in paths.items():
        print(f"| {name} | {row['seconds']} | {row['passages_per_s']} | {row['cosine_min']} / {row['cosine_mean']} | {row['top10_kept']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def sentence_transformer(embedder: Embedder):
    """The sentence-transformers model of ``embedder``, on its device (qa does not load it where
    qa.bert embeds)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(embedder.name), device=embedder.device).eval()


def compare_paths(embedder: Embedder, texts: list[str], questions: list[str], sync) -> dict:
    """Each embedding path once (see the module's docstring), timed, against fp32 vectors."""
    model = embedder._model or sentence_transformer(embedder)
    reference = model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    asked = model.encode(questions, normalize_embeddings=True, convert_to_numpy=True)
    bert = embedder._bert
    paths = {"encode": lambda: embedder.encode(texts)}
    if bert is not None:
        def sentence_transformers():
            with mock.patch.multiple(embedder, _bert=None, _model=model):
                return embedder.encode(texts)

        def one_thread():
            with mock.patch.object(bert, "_tokenizing", None):
                return embedder.encode(texts)

        def fp16_weights():
            bert._model.half()
            try:
                return embedder.encode(texts)
            finally:
                bert._model.float()

        paths["encode-sentence-transformers"] = sentence_transformers
        if bert._tokenizing is not None:
            paths["encode-tokenising-on-one-thread"] = one_thread
        if embedder.device.startswith("cuda"):
            paths["encode-fp16-weights"] = fp16_weights
    rows = {}
    for name, run in paths.items():
        started = time.perf_counter()
        vectors = run()
        sync()
        took = time.perf_counter() - started
        rows[name] = {"seconds": round(took, 3), "passages_per_s": round(len(texts) / took, 1), **agreement(vectors, reference, asked)}
    return rows


if __name__ == "__main__":
    main()
