"""Where GPU embedding time goes: tokenising, the forward pass alone, and Embedder.encode whole,
on bench_index's 10,000 open-squad passages (one process per TOKENIZERS_PARALLELISM setting)."""
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from qa.embedding import Embedder  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402
from qa.indexer.passages import split_passages  # noqa: E402

benchmark = load_question_set("open-squad", data=os.environ["QA_DATA_DIR"])
texts = [f"{d.title}\n{d.text[s.start:s.end]}" for d in benchmark.corpus for s in split_passages(d.text, 160, 40)]
texts = [texts[i] for i in np.random.default_rng(0).choice(len(texts), size=min(10000, len(texts)), replace=False)]
embedder = Embedder()
if not embedder.device.startswith("cuda"):
    texts = texts[:300]  # a dry run on a CPU: the same steps, few passages
    torch.cuda.synchronize = lambda: None
    torch.autocast = lambda device, dtype: torch.amp.autocast("cpu", dtype=torch.bfloat16)
model, tok = embedder._model, embedder._model.tokenizer
out = {"parallelism": os.environ.get("TOKENIZERS_PARALLELISM"), "passages": len(texts), "device": embedder.device}
B = 512
order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
batches = [[texts[i] for i in order[f:f + B]] for f in range(0, len(order), B)]
embedder.encode(texts[:1024])
t = time.perf_counter(); feats = [tok(b, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt") for b in batches]
out["tokenize_s"] = time.perf_counter() - t
t = time.perf_counter(); moved = [{k: v.to(embedder.device) for k, v in f.items()} for f in feats]; torch.cuda.synchronize()
out["to_device_s"] = time.perf_counter() - t
for name, ctx in (("autocast_fp16", lambda: torch.autocast("cuda", dtype=torch.float16)),):
    with torch.inference_mode(), ctx():
        model(moved[0]); torch.cuda.synchronize()
        t = time.perf_counter()
        for f in moved:
            model(f)["sentence_embedding"]
        torch.cuda.synchronize(); out[f"forward_{name}_s"] = time.perf_counter() - t
half = model.half()
with torch.inference_mode():
    half(moved[0]); torch.cuda.synchronize(); t = time.perf_counter()
    for f in moved:
        half(f)["sentence_embedding"]
    torch.cuda.synchronize(); out["forward_half_weights_s"] = time.perf_counter() - t
model.float()
embedder.batch_size = B
t = time.perf_counter(); embedder.encode(texts); torch.cuda.synchronize(); out["encode_whole_s"] = time.perf_counter() - t
for k in list(out):
    if k.endswith("_s"):
        out[k.replace("_s", "_passages_per_s")] = round(len(texts) / out[k], 1)
print(json.dumps(out))
