"""Same answers whichever way the index is built (issue 20): the open-squad corpus indexed by
``qa index --ray local``, by ``qa index --shard-passages N`` and with the OpenVINO passage encoder
(``--backend openvino``), each compared with the single-process torch index that ``qa evaluate
open-squad`` builds: the same passages, the same top 10 for the first ``--questions`` SQuAD dev
questions (BM25, dense and hybrid), recall@10 of an answer string on both, and the time a
question's search takes on each. ``served``: the shards of the ``shards`` build, each served by
its own ``qa serve-shard`` process (loopback ports standing in for other machines) and joined
with ``qa index --join``, compared with the same shards searched on this machine, and end to end:
the default pipeline's answers to the same questions (``Pipeline.ask_batch``, the packaged reader)
and its time per question over each.

    python benchmarks/compare_builds.py --questions 200 --out benchmarks/results/compare_builds.json
    python benchmarks/compare_builds.py --builds shards,served --out benchmarks/results/compare_served.json
    python benchmarks/compare_builds.py --builds shards,served --work /tmp/builds   # keeps the builds; a second run reuses them

The corpus is written as one JSON Lines file (id, title, text of each document, in the order the
evaluation indexes them) and indexed by ``qa index`` in a fresh process per build, with the
reference index's embedding backend (``--backend``; the cached open-squad index of 2026-12-01 was
embedded with torch). ``--documents N`` takes the first N documents only and builds the
single-process reference too (a quick run of the script itself).
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from qa.device import cpu_info
from qa.eval.question_sets import load_question_set
from qa.eval.retrieval import contains_answer
from qa.eval.runner import prepare_index
from qa.index import Index
from qa.pipeline import Pipeline
from qa.retriever import make_retriever

RETRIEVERS = ("bm25", "dense", "hybrid")
BATCH = 16
"""Questions per batch when searching as the pipeline does (its default batch)."""


def write_corpus(documents, path: Path) -> None:
    """The corpus as JSON Lines; a file already there with the same content is left as it is (its
    builds stay valid)."""
    new = path.with_suffix(".new")
    with open(new, "w", encoding="utf-8") as f:
        for doc in documents:
            f.write(json.dumps({"id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    if path.is_file() and filecmp.cmp(path, new, shallow=False):
        new.unlink()
    else:
        new.replace(path)


def build_record(path: Path, options: list[str], corpus: Path) -> tuple[Path, dict]:
    """Where a build's options and corpus are recorded (beside it), and what is recorded."""
    return path.with_name(path.name + ".options.json"), {"options": options, "corpus_mtime_ns": corpus.stat().st_mtime_ns}


def kept_build(path: Path, options: list[str], corpus: Path) -> dict | None:
    """The manifest of a build an earlier run left in ``path`` (``--work``) with these options from
    this corpus file, else None."""
    record, content = build_record(path, options, corpus)
    if not (path / "manifest.json").is_file() or not record.is_file() or json.loads(record.read_text()) != content:
        return None
    return json.loads((path / "manifest.json").read_text())


def record_build(path: Path, options: list[str], corpus: Path) -> None:
    record, content = build_record(path, options, corpus)
    record.write_text(json.dumps(content) + "\n")


def build(corpus: Path, index: Path, options: list[str]) -> dict:
    command = [sys.executable, "-m", "qa", "index", str(corpus), "--index", str(index), "--json", *options]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"build failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    manifest = json.loads(done.stdout.strip().splitlines()[-1])
    return {"options": " ".join(options) or "(single process)", "seconds": round(time.perf_counter() - started, 1),
            "passages": manifest["counts"]["passages"], "shards": len(manifest.get("shards") or [])}


@contextlib.contextmanager
def served(index: Path):
    """Each shard of ``index`` served by a ``qa serve-shard`` process; yields their URLs."""
    manifest = json.loads((index / "manifest.json").read_text())
    processes, urls = [], []
    try:
        for entry in manifest["shards"]:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            command = [sys.executable, "-m", "qa", "serve-shard", "--index", str(index / entry["path"]), "--port", str(port)]
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes):
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(url + "/health", timeout=5).read()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"qa serve-shard did not start at {url}") from None
                    time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def join(urls: list[str], index: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "qa", "index", *[a for url in urls for a in ("--join", url)], "--index", str(index), "--json"],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"qa index --join failed:\n{done.stderr[-3000:]}")


def compare(reference: Index, other: Index, examples, k: int) -> dict:
    """Passages and top ``k`` of ``other`` against ``reference``; search times of both, interleaved."""
    n = len(reference)
    same_passages = len(other) == n and all(
        (a.doc_id, a.start, a.end, a.text) == (b.doc_id, b.start, b.end, b.text)
        for first in range(0, n, 5000)
        for a, b in zip(reference.store.get(list(range(first, min(first + 5000, n)))), other.store.get(list(range(first, min(first + 5000, n)))))
    )
    row = {"same_passages": same_passages, "passages": len(other)}
    for name in RETRIEVERS:
        ours, theirs = make_retriever(reference, name), make_retriever(other, name)
        identical = overlap = 0
        found = {"reference": 0, "other": 0}
        times = {"reference": [], "other": []}
        for example in examples:
            started = time.perf_counter()
            a = ours.search(example.question, k, evidence=False)
            times["reference"].append(time.perf_counter() - started)
            started = time.perf_counter()
            b = theirs.search(example.question, k, evidence=False)
            times["other"].append(time.perf_counter() - started)
            found["reference"] += any(contains_answer(h.passage.text, example.answers) for h in a)
            found["other"] += any(contains_answer(h.passage.text, example.answers) for h in b)
            a, b = [h.passage.idx for h in a], [h.passage.idx for h in b]
            identical += a == b
            overlap += len(set(a) & set(b)) / max(len(a), 1)
        batched = {"reference": 0.0, "other": 0.0}  # as the pipeline searches: batches, with the evidence
        for first in range(0, len(examples), BATCH):
            questions = [example.question for example in examples[first:first + BATCH]]
            for key, retriever in (("reference", ours), ("other", theirs)):
                started = time.perf_counter()
                retriever.search_batch(questions, k)
                batched[key] += time.perf_counter() - started
        row[name] = {
            "identical_top_k": round(100 * identical / len(examples), 1),
            "mean_overlap_top_k": round(100 * overlap / len(examples), 1),
            "reference_recall_answer": round(100 * found["reference"] / len(examples), 1),
            "recall_answer": round(100 * found["other"] / len(examples), 1),
            "reference_ms_p50": round(1000 * float(np.median(times["reference"])), 2),
            "ms_p50": round(1000 * float(np.median(times["other"])), 2),
            "reference_batch_ms": round(1000 * batched["reference"] / len(examples), 2),
            "batch_ms": round(1000 * batched["other"] / len(examples), 2),
        }
    return row


def compare_answers(reference: Index, other: Index, examples) -> dict:
    """The default pipeline's best answer over each index for ``examples``, and its time per question."""
    questions = [example.question for example in examples]
    first = Pipeline(reference)
    pipelines = {"reference": first, "other": Pipeline(other, reader=first.reader)}  # one reader, loaded once
    pipelines["reference"].ask_batch(questions[:16])  # warm both (compilation, caches) before timing
    pipelines["other"].ask_batch(questions[:16])
    answers, seconds = {}, {}
    for name, pipeline in pipelines.items():
        started = time.perf_counter()
        predictions = pipeline.ask_batch(questions)
        seconds[name] = time.perf_counter() - started
        answers[name] = [p.answers[0].text if p.answers else "" for p in predictions]
    same = sum(a == b for a, b in zip(answers["reference"], answers["other"]))
    return {"answers_identical": round(100 * same / len(questions), 1),
            "reference_s_per_question": round(seconds["reference"] / len(questions), 4),
            "s_per_question": round(seconds["other"] / len(questions), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--shard-passages", type=int, default=5000)
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--backend", default="torch", help="embedding backend of every build (the reference index's)")
    parser.add_argument("--builds", default="ray,shards,openvino", help="comma-separated: ray, shards, openvino, served (after shards)")
    parser.add_argument("--documents", type=int, default=None, help="first N documents only (builds the reference too)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compare_builds.json")
    parser.add_argument("--work", type=Path, help="keep the builds in this folder (default: a temporary one); a build "
                        "an earlier run left there with the same options and corpus is reused, not rebuilt")
    args = parser.parse_args()

    question_set = load_question_set("open-squad")
    examples = question_set.examples[: args.questions]
    results = {"cpu": cpu_info().name, "cores": os.cpu_count(), "questions": len(examples), "k": args.k, "builds": []}
    with (contextlib.nullcontext(str(args.work)) if args.work else tempfile.TemporaryDirectory()) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        corpus = Path(tmp) / "open-squad.jsonl"
        write_corpus(question_set.corpus[: args.documents], corpus)
        common = ["--backend", args.backend]
        if args.documents is None:
            reference_path = prepare_index(question_set)
            results["reference"] = {"options": f"qa evaluate open-squad's cached index ({reference_path.name})"}
        else:
            reference_path = Path(tmp) / "single"
            results["reference"] = build(corpus, reference_path, common)
            record_build(reference_path, common, corpus)
        reference = Index(reference_path).load()
        options = {"ray": [*common, "--ray", "local", "--ray-workers", str(args.ray_workers)],
                   "shards": [*common, "--shard-passages", str(args.shard_passages)], "openvino": ["--backend", "openvino"]}
        for name in args.builds.split(","):
            path = Path(tmp) / name
            if name == "served":
                with served(Path(tmp) / "shards") as urls:
                    join(urls, path)
                    row = {"options": f"the {len(urls)} shards served by qa serve-shard, joined (against the same shards here)",
                           "seconds": "-", "passages": len(Index(path)), "shards": len(urls)}
                    row.update(compare(Index(Path(tmp) / "shards").load(), Index(path).load(), examples, args.k))
                    row["pipeline"] = compare_answers(Index(Path(tmp) / "shards").load(), Index(path).load(), examples)
            elif manifest := kept_build(path, options[name], corpus):  # same options, same corpus (--work)
                row = {"options": " ".join(options[name]) + " (kept from an earlier run)", "seconds": "-",
                       "passages": manifest["counts"]["passages"], "shards": len(manifest.get("shards") or [])}
                row.update(compare(reference, Index(path).load(), examples, args.k))
            else:
                row = build(corpus, path, options[name])
                record_build(path, options[name], corpus)
                row.update(compare(reference, Index(path).load(), examples, args.k))
            results["builds"].append(row)
            print(json.dumps(row), file=sys.stderr)

    print(f"{len(examples)} open-squad questions, top {args.k}, against the single-process index ({results['cpu']}, {results['cores']} cores)")
    print("| build | seconds | passages | same passages | retriever | identical top 10 | mean overlap | answer recall@10 (reference → this) "
          f"| ms/question alone, p50 (reference → this) | ms/question in batches of {BATCH} with evidence |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in results["builds"]:
        for name in RETRIEVERS:
            r = row[name]
            print(f"| {row['options']} | {row['seconds']} | {row['passages']} | {row['same_passages']} | {name} | {r['identical_top_k']}% | "
                  f"{r['mean_overlap_top_k']}% | {r['reference_recall_answer']} → {r['recall_answer']} | {r['reference_ms_p50']} → {r['ms_p50']} | "
                  f"{r['reference_batch_ms']} → {r['batch_ms']} |")
        if "pipeline" in row:
            p = row["pipeline"]
            print(f"  pipeline: answers identical {p['answers_identical']}%, s/question {p['reference_s_per_question']} → {p['s_per_question']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
