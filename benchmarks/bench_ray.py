"""The Ray build against the single-process build on one machine: what Ray costs, and the memory
of the driver and of the workers (issue 20).

    python benchmarks/bench_ray.py --documents 3000 --files 12 --out benchmarks/results/ray_build.json
    python benchmarks/bench_ray.py --documents 3000 --files 12 --workers 2 --shard-passages 1000 --write-documents 0 \
        --out benchmarks/results/ray_shards.json
    python benchmarks/bench_ray.py --documents 3000 20000 --workers 2 --shard-passages 5000 --write-documents 0 \
        --embedding-model tiny-random --driver-alone --out benchmarks/results/ray_driver.json
    python benchmarks/bench_ray.py --documents 20000 --workers 2 --shard-passages 5000 --open-shards 1 2 --write-documents 0 \
        --embedding-model tiny-random --driver-alone --out benchmarks/results/ray_open_shards.json

A synthetic corpus (``--documents`` SQuAD-like documents of at most 150 words, one passage each at
qa's default window: the generator of benchmarks/bench_query_memory.py) is written as ``--files``
JSON Lines files, then indexed by ``qa index`` in a fresh process, once per configuration:
single-process, and ``--ray local`` with each ``--ray-workers`` count. While a build runs, the
resident memory of every process is sampled every 0.2 s: the ``qa index`` process (the Ray driver),
the embedding actors (``ray::MapWorker``), Ray's other workers (reading tasks, its own actors),
and Ray's system processes (raylet, GCS). The builds' indexes are compared (passages, BM25
matrix, vectors) so that a faster wrong build cannot pass.

The driver's CPU time is sampled too. With two or more ``--documents`` sizes, its slope per
passage between the smallest and the largest corpus is printed (the start taken out). With
``--driver-alone``, the Ray builds run in this process instead, with the embedded rows computed
before the driver takes them, and the driver's CPU is counted from then on: its cost per passage
to filter the rows and write them or hand them to shard writers; with ``--open-shards``, the
wall time from then on shows what filling several shards at once (writers adding in parallel)
gives. ``--join K`` makes each document
the text of K synthetic ones (long documents, as full texts are).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_query_memory import synthetic_documents  # noqa: E402

from qa.device import cpu_info  # noqa: E402


def write_corpus(folder: Path, documents: int, files: int, join: int = 1) -> None:
    """``documents`` documents in ``files`` JSON Lines files; each the text of ``join`` synthetic
    documents of at most 150 words (about ``join`` passages)."""
    folder.mkdir(parents=True, exist_ok=True)
    outs = [open(folder / f"part-{i:03d}.jsonl", "w") for i in range(files)]
    synthetic = synthetic_documents(documents * join, seed=0)
    for i in range(documents):
        parts = [next(synthetic) for _ in range(join)]
        text = "\n\n".join(doc.text for doc in parts)
        outs[i % files].write(json.dumps({"id": parts[0].id, "title": parts[0].title, "text": text}) + "\n")
    for out in outs:
        out.close()


def role(proc: psutil.Process, driver: int) -> str | None:
    if proc.pid == driver:
        return "driver"
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "ray::MapWorker" in cmdline:
        return "embedding actors"
    if "_ShardWriter" in cmdline:
        return "shard writers"
    if cmdline.startswith("ray::"):
        return "other Ray workers"
    if "/ray/" in cmdline and ("raylet" in cmdline or "gcs_server" in cmdline or "ray/dashboard" in cmdline or "log_monitor" in cmdline or "monitor.py" in cmdline):
        return "Ray system"
    return None


def run_build(corpus: Path, index: Path, workers: int | None, shard_passages: int | None = None, model: str | None = None) -> dict:
    command = [sys.executable, "-m", "qa", "index", str(corpus), "--index", str(index), "--json"]
    if workers:
        command += ["--ray", "local", "--ray-workers", str(workers)]
    if shard_passages:
        command += ["--shard-passages", str(shard_passages)]
    if model:
        command += ["--embedding-model", model]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[str, float] = {}
    largest: dict[str, float] = {}
    driver_cpu = [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                times = psutil.Process(proc.pid).cpu_times()
                driver_cpu[0] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
            totals: dict[str, float] = {}
            for p in psutil.process_iter():
                r = role(p, proc.pid)
                if r is None:
                    continue
                try:
                    rss = p.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                totals[r] = totals.get(r, 0) + rss
                largest[r] = max(largest.get(r, 0), rss)
            for r, mb in totals.items():
                peaks[r] = max(peaks.get(r, 0), mb)
            done.wait(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"build failed ({' '.join(command)}):\n{err[-3000:]}")
    manifest = json.loads(out.strip().splitlines()[-1])
    passages = manifest["counts"]["passages"]
    build = "single process" if not workers else f"ray local, {workers} actor(s)"
    return {
        "build": build + (f", shards of {shard_passages} (written by writer actors)" if workers and shard_passages else
                          f", shards of {shard_passages}" if shard_passages else ""),
        "seconds": round(seconds, 1),
        "driver_cpu_seconds": round(driver_cpu[0], 1),
        "passages": passages,
        "passages_per_s": round(passages / seconds, 1),
        "peak_mb": {r: round(mb) for r, mb in sorted(peaks.items())},
        "largest_process_mb": {r: round(mb) for r, mb in sorted(largest.items())},
    }


def write_stage(corpus: Path, index: Path) -> dict:
    """The build without its embedding (random unit vectors instead, in this process): reading,
    the store, BM25 and the final writes, i.e. the serial part a Ray build leaves on its driver
    (plus the reading, which Ray moves to workers). Its rate caps what any number of workers gives."""
    import qa.indexer.build as build_module
    from bench_query_memory import random_vectors

    build_module.EmbeddingQueue.encode = lambda queue, texts: random_vectors(texts)
    started = time.perf_counter()
    result = build_module.build_index(corpus, index)
    seconds = time.perf_counter() - started
    passages = result.manifest["counts"]["passages"]
    return {"build": "write stage alone (random vectors, no embedding)", "documents": result.report.documents, "seconds": round(seconds, 1), "passages": passages,
            "passages_per_s": round(passages / seconds, 1), "peak_mb": {}, "largest_process_mb": {}}


def driver_alone(corpus: Path, index: Path, workers: int, shard_passages: int | None, model: str | None, open_shards: int = 1) -> dict:
    """A Ray build in this process whose rows are embedded first (the dataset materialized in Ray's
    object store) and only then streamed: the driver's CPU and time from then on are what it costs
    to take rows in and hand them to shard writers (or write them itself), with no wait for the
    embedding. (A real build's driver also polls while it waits, which costs CPU by the second.)"""
    import qa.indexer.ray_build as ray_build
    from qa.indexer import EmbeddingOptions, LayoutOptions, RayOptions, build_index

    marks: dict[str, float] = {}
    pipeline = ray_build._pipeline

    def materialized(*args, **kwargs):
        dataset = pipeline(*args, **kwargs).materialize()
        marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()
        return dataset

    ray_build._pipeline = materialized
    try:
        result = build_index(corpus, index, embedding=EmbeddingOptions(model), ray=RayOptions(address="local", workers=workers),
                             layout_options=LayoutOptions(shard_passages=shard_passages, open_shards=open_shards))
    finally:
        ray_build._pipeline = pipeline
    cpu, seconds = time.process_time() - marks["cpu"], time.perf_counter() - marks["wall"]
    passages = result.manifest["counts"]["passages"]
    writes = (f"shard writer actors, {open_shards} shards filled at once" if open_shards > 1 else "shard writer actors") if shard_passages else "the driver writing"
    return {"build": f"ray driver alone, rows ready, {writes}", "seconds": round(seconds, 1), "driver_cpu_seconds": round(cpu, 1),
            "passages": passages, "passages_per_s": round(passages / seconds, 1),
            "driver_ms_per_passage": round(1000 * cpu / passages, 3), "driver_ms_per_document": round(1000 * cpu / result.report.documents, 3),
            "peak_mb": {}, "largest_process_mb": {}}


def same_index(a: Path, b: Path) -> dict:
    from qa.index import Index

    x, y = Index(a), Index(b)
    ids = list(range(len(x)))
    passages = [(p.doc_id, p.start, p.end) for p in x.store.get(ids)] == [(p.doc_id, p.start, p.end) for p in y.store.get(ids)] if len(x) == len(y) else False
    bm25 = all(np.array_equal(x.bm25.scores[k], y.bm25.scores[k]) for k in ("data", "indices", "indptr"))
    diff = float(np.abs(np.asarray(x.vectors, np.float32) - np.asarray(y.vectors, np.float32)).max()) if len(x) == len(y) else None
    return {"same_passages": passages, "same_bm25": bm25, "max_vector_difference": diff}


def same_search(a: Path, b: Path, questions: int = 50, by_passage: bool = False) -> dict:
    """A sharded index against the unsharded one: the same passages, and the same BM25 and dense
    top 10 for questions made of the corpus's words. ``by_passage``: passages are compared by
    document and span, not number (shards filled at once number them in another order)."""
    from qa.index import Index
    from qa.retriever import make_retriever

    x, y = Index(a), Index(b)
    ids = list(range(len(x)))

    def keys(index, numbers):
        return [(p.doc_id, p.start, p.end) if by_passage else p.idx for p in index.store.get(numbers)]

    passages = len(x) == len(y) and (sorted if by_passage else list)(keys(x, ids)) == (sorted if by_passage else list)(keys(y, ids))
    texts = [p.text for p in x.store.get(ids[:: max(1, len(ids) // questions)][:questions])]
    same = {}
    for name in ("bm25", "dense"):
        ours, theirs = make_retriever(x, name), make_retriever(y, name)
        found = [(ours.search(t[:80], 10, evidence=False), theirs.search(t[:80], 10, evidence=False)) for t in texts]
        same[f"same_{name}_top10_percent"] = round(100 * sum(
            keys(x, [h.passage.idx for h in a]) == keys(y, [h.passage.idx for h in b]) for a, b in found) / len(texts), 1)
        if by_passage:  # passages of equal score may come in another order when numbered otherwise
            same[f"same_{name}_top10_scores_percent"] = round(100 * sum(
                np.allclose([h.score for h in a], [h.score for h in b], rtol=1e-5) for a, b in found) / len(texts), 1)
    return {"same_passages": passages, **same}


TINY = "tiny-random"


def tiny_encoder(folder: Path) -> str:
    """A random 2-layer BERT of width 32 with all-MiniLM-L6-v2's tokenizer: the same passages as
    the real model (the windows are counted in its tokens) at a small fraction of its embedding
    cost, so that the build's other stages show (``--embedding-model tiny-random``)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from qa.hub import resolve_model
    from qa.embedding import DEFAULT_EMBEDDING_MODEL

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_EMBEDDING_MODEL))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def builds_of(folder: Path, documents: int, args) -> list[dict]:
    """The single-process and Ray builds of one synthetic corpus of ``documents`` documents."""
    rows = []
    corpus = folder / "corpus"
    write_corpus(corpus, documents, args.files, args.join)
    if args.driver_alone:
        runs = [(None, 1)] + [(args.shard_passages, k) for k in args.open_shards] if args.shard_passages else [(None, 1)]
        for shards, k in runs:
            index = folder / f"index-alone-{shards or 0}-{k}"
            row = {**driver_alone(corpus, index, args.workers[-1], shards, args.embedding_model, k), "documents": documents}
            if shards and k > 1:
                row["compared_with_one_open_shard"] = same_search(folder / f"index-alone-{shards}-1", index, by_passage=True)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        return rows
    for sharded in (False, True) if args.shard_passages else (False,):
        for workers in [None, *args.workers]:
            if sharded:
                index = folder / f"index-{workers or 0}-sharded"
                row = run_build(corpus, index, workers, args.shard_passages, args.embedding_model)
                row["compared_with_single_process"] = same_search(folder / "index-0", index)
            else:
                index = folder / f"index-{workers or 0}"
                row = run_build(corpus, index, workers, None, args.embedding_model)
                if workers:
                    row["compared_with_single_process"] = same_index(folder / "index-0", index)
            row["documents"] = documents
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def driver_slopes(rows: list[dict]) -> dict[str, float]:
    """Per build kind, the driver's CPU milliseconds per passage between the smallest and the
    largest corpus: what each more passage costs, without the start (imports, Ray, the model)."""
    slopes = {}
    for build in dict.fromkeys(r["build"] for r in rows if "driver_cpu_seconds" in r):
        runs = sorted((r for r in rows if r["build"] == build), key=lambda r: r["passages"])
        if len(runs) >= 2 and runs[-1]["passages"] > runs[0]["passages"]:
            cpu = runs[-1]["driver_cpu_seconds"] - runs[0]["driver_cpu_seconds"]
            slopes[build] = round(1000 * cpu / (runs[-1]["passages"] - runs[0]["passages"]), 3)
    return slopes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[3000],
                        help="corpus sizes; with two or more, the driver's CPU per passage is also given as the slope between the extremes")
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--ray-workers counts to run")
    parser.add_argument("--write-documents", type=int, default=50_000, help="documents of the write-stage-alone build (0: none)")
    parser.add_argument("--shard-passages", type=int, default=None,
                        help="also build with --shard-passages N, single-process and with each --ray-workers count")
    parser.add_argument("--open-shards", type=int, nargs="+", default=[1],
                        help="with --driver-alone and --shard-passages: build with each of these --open-shards counts")
    parser.add_argument("--join", type=int, default=1, help="each document the text of this many synthetic ones (long documents)")
    parser.add_argument("--driver-alone", action="store_true",
                        help="instead: Ray builds in this process (the last --ray-workers count) whose rows are embedded before the driver takes them (its own CPU cost)")
    parser.add_argument("--embedding-model", default=None, help=f"passed to qa index (default: qa's default model); {TINY!r}: a random tiny encoder with its tokenizer")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_build.json")
    args = parser.parse_args()
    model_name = args.embedding_model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.embedding_model == TINY:
            args.embedding_model = tiny_encoder(Path(tmp) / TINY)
        for documents in args.documents:
            rows += builds_of(Path(tmp) / str(documents), documents, args)
        if args.write_documents:
            write_stage_corpus = Path(tmp) / "corpus-write"
            write_corpus(write_stage_corpus, args.write_documents, args.files)
            rows.append(write_stage(write_stage_corpus, Path(tmp) / "index-write"))
    print("| documents | build | seconds | passages/s | × single's rate | driver CPU s | driver peak MB | embedding actors peak MB | shard writers | other Ray workers | Ray system |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, single = r["peak_mb"], next(b for b in rows if b["documents"] == r["documents"])
        print(f"| {r['documents']} | {r['build']} | {r['seconds']} | {r['passages_per_s']} | "
              f"{r['passages_per_s'] / single['passages_per_s']:.2f} | {r.get('driver_cpu_seconds', '-')} | {m.get('driver', '-')} | "
              f"{m.get('embedding actors', '-')} | {m.get('shard writers', '-')} | {m.get('other Ray workers', '-')} | {m.get('Ray system', '-')} |")
    slopes = driver_slopes(rows)
    for build, ms in slopes.items():
        print(f"driver CPU per passage, marginal between {min(args.documents)} and {max(args.documents)} documents: {ms} ms ({build})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "cores": os.cpu_count(), "documents": args.documents,
                                    "files": args.files, "join": args.join, "embedding_model": model_name, "builds": rows,
                                    "driver_ms_per_passage_marginal": slopes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
