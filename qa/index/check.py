"""``qa index --check``: verify an index folder, part by part, and say what is wrong."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.errors import QAError, first_line
from qa.index import layout
from qa.index.remote import ShardClient


@dataclass
class CheckReport:
    """What :func:`check_index` verified (``checks``) and what it found wrong (``problems``)."""

    path: Path
    manifest: dict | None = None
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        counts = (self.manifest or {}).get("counts")
        return {"index": str(self.path), "ok": self.ok, "counts": counts, "generation": (self.manifest or {}).get("generation"),
                "checks": self.checks, "problems": self.problems}


def check_index(path: str | Path) -> CheckReport:
    """Check the index at ``path``: its marker and manifest, that every file the build recorded
    is there with its size and SHA-256, that the passage store passes SQLite's integrity check,
    and that the passage store, the BM25 index, the vectors and any FAISS file agree on the
    number of passages. Reads every byte of the index once."""
    path = Path(path)
    report = CheckReport(path)
    try:
        report.manifest = manifest = layout.read_manifest(path)
    except QAError as err:
        report.problems.append(str(err))
        return report
    report.checks.append("manifest")
    if layout.marker_version(path) is None:
        report.checks.append(f"no {layout.MARKER} marker (an index of qa 0.1.0)")
    if layout.is_sharded(manifest):
        _check_shards(report, path, manifest)
        return report
    n = manifest["counts"]["passages"]
    files = manifest.get("files")
    if files is None:
        report.checks.append("no checksums recorded (an index of qa 0.1.0): sizes and contents not verified")
    else:
        for name, record in files.items():
            file = path / name
            if not file.is_file():
                report.problems.append(f"{name} is missing")
                continue
            actual = layout.file_record(file)
            if actual["bytes"] != record.get("bytes"):
                report.problems.append(f"{name} has {actual['bytes']} bytes, the build wrote {record.get('bytes')}")
            elif actual["sha256"] != record.get("sha256"):
                report.problems.append(f"{name} has changed since the build (SHA-256 differs)")
        report.checks.append(f"{len(files)} files: sizes and SHA-256")
    _check(report, "passage store", lambda: _store_passages(path / layout.STORE), n)
    _check(report, "BM25 index", lambda: _bm25_passages(path / layout.BM25_DIR), n)
    _check(report, "vectors", lambda: _vector_rows(path / layout.VECTORS, int(manifest["dense"]["dim"])), n)
    if "faiss_file" in manifest["dense"]:
        _check(report, "FAISS index", lambda: _faiss_vectors(path / layout.FAISS_FILE), n)
    return report


def _check_shards(report: CheckReport, path: Path, manifest: dict) -> None:
    """Each shard checked as an index (a shard served by another machine: by its server), and
    found to be the shard the manifest lists."""
    passages = documents = 0
    for entry in manifest["shards"]:
        name = entry.get("path") or entry["url"]
        shard = check_index(path / entry["path"]) if "path" in entry else _check_served(entry)
        report.problems.extend(f"{name}: {problem}" for problem in shard.problems)
        if shard.manifest is None:
            continue
        if shard.manifest.get("build_id") != entry.get("build_id") or shard.manifest["counts"]["passages"] != entry.get("passages"):
            report.problems.append(f"{name} is not the shard the build wrote (another build id or size)")
        passages += shard.manifest["counts"]["passages"]
        documents += shard.manifest["counts"]["documents"]
    counts = manifest["counts"]
    if not report.problems and (passages, documents) != (counts["passages"], counts["documents"]):
        report.problems.append(f"the shards hold {documents} documents and {passages} passages, the manifest {counts['documents']} and {counts['passages']}")
    served = sum("url" in entry for entry in manifest["shards"])
    report.checks.append(f"{len(manifest['shards'])} shards: each checked as an index" + (f" ({served} by their servers)" if served else ""))


def _check_served(entry: dict) -> CheckReport:
    """The check a shard server makes of the index it serves (``qa serve-shard``)."""
    report = CheckReport(Path(entry["url"]))
    try:
        found = ShardClient(entry["url"], entry.get("build_id")).call("/shard/check", {})
    except QAError as err:
        report.problems.append(str(err))
        return report
    report.manifest = {"build_id": found["build_id"], "counts": found["counts"]}
    report.problems.extend(found["problems"])
    return report


def _check(report: CheckReport, part: str, count, expected: int) -> None:
    try:
        found = count()
    except Exception as err:  # noqa: BLE001 - any failure to read a part is a finding
        report.problems.append(f"{part} is unreadable ({first_line(err)})")
        return
    if found != expected:
        report.problems.append(f"{part} holds {found} passages, the manifest {expected}")
    else:
        report.checks.append(f"{part}: {found} passages")


def _store_passages(file: Path) -> int:
    if not file.is_file():
        raise FileNotFoundError(f"{file.name} is missing")
    db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise ValueError(f"SQLite integrity check: {result}")
        return db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
    finally:
        db.close()


def _bm25_passages(folder: Path) -> int:
    import bm25s

    bm25 = bm25s.BM25.load(folder, mmap=False, show_progress=False)
    data, indices, indptr = (np.asarray(bm25.scores[k]) for k in ("data", "indices", "indptr"))
    n = int(bm25.scores["num_docs"])
    if int(indptr[-1]) != len(data) or len(indices) != len(data) or np.any(np.diff(indptr) < 0):
        raise ValueError("its score matrix is inconsistent")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ValueError("its score matrix names passages that do not exist")
    if len(indptr) - 1 > len(bm25.vocab_dict):
        raise ValueError("its vocabulary is shorter than its score matrix")
    return n


def _vector_rows(file: Path, dim: int) -> int:
    vectors = np.load(file, mmap_mode="r", allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"shape {vectors.shape}, expected (passages, {dim})")
    return len(vectors)


def _faiss_vectors(file: Path) -> int:
    import faiss

    return int(faiss.read_index(str(file)).ntotal)
