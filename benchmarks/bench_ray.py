"""The Ray build against the single-process build on one machine: what Ray costs, and the memory
of the driver and of the workers (issue 20).

    python benchmarks/bench_ray.py --documents 3000 --files 12 --out benchmarks/results/ray_build.json
    python benchmarks/bench_ray.py --documents 3000 --files 12 --workers 2 --shard-passages 1000 --write-documents 0 \
        --out benchmarks/results/ray_shards.json

A synthetic corpus (``--documents`` SQuAD-like documents of at most 150 words, one passage each at
qa's default window: the generator of benchmarks/bench_query_memory.py) is written as ``--files``
JSON Lines files, then indexed by ``qa index`` in a fresh process, once per configuration:
single-process, and ``--ray local`` with each ``--ray-workers`` count. While a build runs, the
resident memory of every process is sampled every 0.2 s: the ``qa index`` process (the Ray driver),
the embedding actors (``ray::MapWorker``), Ray's other workers (reading tasks, its own actors),
and Ray's system processes (raylet, GCS). The builds' indexes are compared (passages, BM25
matrix, vectors) so that a faster wrong build cannot pass.
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


def write_corpus(folder: Path, documents: int, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    outs = [open(folder / f"part-{i:03d}.jsonl", "w") for i in range(files)]
    for i, doc in enumerate(synthetic_documents(documents, seed=0)):
        outs[i % files].write(json.dumps({"id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
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


def run_build(corpus: Path, index: Path, workers: int | None, shard_passages: int | None = None) -> dict:
    command = [sys.executable, "-m", "qa", "index", str(corpus), "--index", str(index), "--json"]
    if workers:
        command += ["--ray", "local", "--ray-workers", str(workers)]
    if shard_passages:
        command += ["--shard-passages", str(shard_passages)]
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
    return {"build": "write stage alone (random vectors, no embedding)", "seconds": round(seconds, 1), "passages": passages,
            "passages_per_s": round(passages / seconds, 1), "peak_mb": {}, "largest_process_mb": {}}


def same_index(a: Path, b: Path) -> dict:
    from qa.index import Index

    x, y = Index(a), Index(b)
    ids = list(range(len(x)))
    passages = [(p.doc_id, p.start, p.end) for p in x.store.get(ids)] == [(p.doc_id, p.start, p.end) for p in y.store.get(ids)] if len(x) == len(y) else False
    bm25 = all(np.array_equal(x.bm25.scores[k], y.bm25.scores[k]) for k in ("data", "indices", "indptr"))
    diff = float(np.abs(np.asarray(x.vectors, np.float32) - np.asarray(y.vectors, np.float32)).max()) if len(x) == len(y) else None
    return {"same_passages": passages, "same_bm25": bm25, "max_vector_difference": diff}


def same_search(a: Path, b: Path, questions: int = 50) -> dict:
    """A sharded index against the unsharded one: the same passages, and the same BM25 and dense
    top 10 for questions made of the corpus's words."""
    from qa.index import Index
    from qa.retriever import make_retriever

    x, y = Index(a), Index(b)
    ids = list(range(len(x)))
    passages = len(x) == len(y) and [(p.doc_id, p.start, p.end) for p in x.store.get(ids)] == [(p.doc_id, p.start, p.end) for p in y.store.get(ids)]
    texts = [p.text for p in x.store.get(ids[:: max(1, len(ids) // questions)][:questions])]
    same = {}
    for name in ("bm25", "dense"):
        ours, theirs = make_retriever(x, name), make_retriever(y, name)
        same[f"same_{name}_top10_percent"] = round(100 * sum(
            [h.passage.idx for h in ours.search(t[:80], 10, evidence=False)] == [h.passage.idx for h in theirs.search(t[:80], 10, evidence=False)]
            for t in texts) / len(texts), 1)
    return {"same_passages": passages, **same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--ray-workers counts to run")
    parser.add_argument("--write-documents", type=int, default=50_000, help="documents of the write-stage-alone build (0: none)")
    parser.add_argument("--shard-passages", type=int, default=None,
                        help="also build with --shard-passages N, single-process and with each --ray-workers count")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_build.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        write_corpus(corpus, args.documents, args.files)
        for workers in [None, *args.workers]:
            index = Path(tmp) / f"index-{workers or 0}"
            row = run_build(corpus, index, workers)
            if workers:
                row["compared_with_single_process"] = same_index(Path(tmp) / "index-0", index)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        for workers in [None, *args.workers] if args.shard_passages else []:
            index = Path(tmp) / f"index-{workers or 0}-sharded"
            row = run_build(corpus, index, workers, args.shard_passages)
            row["compared_with_single_process"] = same_search(Path(tmp) / "index-0", index)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        if args.write_documents:
            write_stage_corpus = Path(tmp) / "corpus-write"
            write_corpus(write_stage_corpus, args.write_documents, args.files)
            rows.append(write_stage(write_stage_corpus, Path(tmp) / "index-write"))
    print("| build | seconds | passages/s | × single's rate | driver CPU s | driver peak MB | embedding actors peak MB | shard writers | other Ray workers | Ray system |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["peak_mb"]
        print(f"| {r['build']} | {r['seconds']} | {r['passages_per_s']} | {rows[0]['seconds'] / r['seconds'] * r['passages'] / rows[0]['passages']:.2f} | "
              f"{r.get('driver_cpu_seconds', '-')} | {m.get('driver', '-')} | "
              f"{m.get('embedding actors', '-')} | {m.get('shard writers', '-')} | {m.get('other Ray workers', '-')} | {m.get('Ray system', '-')} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_info().name, "cores": os.cpu_count(), "documents": args.documents,
                                    "files": args.files, "builds": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
