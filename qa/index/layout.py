"""The on-disk index format (see docs/INDEX_FORMAT.md): file names, the format marker, the
manifest and its checks, and which folders ``qa index`` may replace."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.fsutil import directory_lock, recover_directory

FORMAT_NAME = "qa-index"
FORMAT_VERSION = 1  # one folder: a store, a BM25 part and a dense part
SHARDED_VERSION = 2  # shards/NNN/, each an index of version 1, listed by the manifest
NEWEST_VERSION = SHARDED_VERSION

MARKER = "qa-index-format"  # one line, "qa-index VERSION": this folder was written by qa index
MANIFEST = "manifest.json"
STORE = "passages.sqlite"
BM25_DIR = "bm25"
BM25_LENGTHS = "lengths.npy"  # in BM25_DIR: terms per passage (qa's addition to bm25s's files; absent before 2026-12)
VECTORS = "dense/vectors.npy"
FAISS_FILE = "dense/faiss.index"  # only for approximate (IVF, HNSW) dense indexes
SHARDS_DIR = "shards"  # a sharded index's shards: shards/000, shards/001, ...

# Everything qa index writes at the top of an index folder; a folder holding anything else is
# never replaced (it would be deleted with the old index).
ENTRIES = frozenset({MARKER, MANIFEST, STORE, BM25_DIR, "dense", f"{STORE}-journal", SHARDS_DIR})

DEFAULT_INDEX_DIR = ".qa-index"
INDEX_ENV = "QA_INDEX"

# Manifest keys every reader of an index relies on, by section.
REQUIRED = {
    "counts": ("documents", "passages"),
    "passages": ("unit",),
    "bm25": ("k1", "b", "analyzer"),
    "dense": ("model", "dim"),
}


def default_index_dir() -> Path:
    """``$QA_INDEX`` when set, else ``./.qa-index``."""
    return Path(os.environ.get(INDEX_ENV) or DEFAULT_INDEX_DIR)


def marker_text(version: int = FORMAT_VERSION) -> str:
    return f"{FORMAT_NAME} {version}\n"


def shard_dir(number: int) -> str:
    """The folder of shard ``number``, relative to the index."""
    return f"{SHARDS_DIR}/{number:03d}"


def is_sharded(manifest: dict[str, Any]) -> bool:
    return manifest.get("format_version") == SHARDED_VERSION


def is_joined(manifest: dict[str, Any]) -> bool:
    """True for an index some of whose shards are served by other machines (``qa index --join``)."""
    return any("url" in shard for shard in manifest.get("shards") or [])


def marker_version(index_dir: Path) -> int | None:
    """The format version the folder's marker names, or None when it has no qa marker."""
    try:
        first = (index_dir / MARKER).read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].split()
    except OSError:
        return None
    if len(first) == 2 and first[0] == FORMAT_NAME and first[1].isdigit():
        return int(first[1])
    return None


def _legacy_manifest(index_dir: Path) -> bool:
    """True for an index written by qa 0.1.0, before the marker: its manifest names the format."""
    try:
        manifest = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME and manifest.get("format_version") == 1


def check_replaceable(target: Path) -> None:
    """Raise unless ``qa index`` may replace ``target``: it does not exist, is an empty folder,
    or is a qa index (format marker of a version this qa knows, or a qa 0.1.0 manifest) holding
    nothing but what qa writes. Anything else is the user's, and is never deleted."""
    if target.is_file() or (target.is_symlink() and not target.exists()):
        raise QAError(f"index path {str(target)!r} is a file, not a folder: choose another --index")
    if not target.exists():
        return
    try:
        entries = sorted(p.name for p in target.iterdir())
    except OSError as err:
        raise QAError(f"cannot read the folder {str(target)!r} ({err.strerror or err}): choose another --index") from None
    if not entries:
        return
    version = marker_version(target)
    if version is None and not _legacy_manifest(target):
        raise QAError(
            f"{str(target)!r} is not empty and is not a qa index; qa index only replaces folders it wrote: "
            "choose a new or empty folder with --index"
        )
    if version is not None and version > NEWEST_VERSION:
        raise QAError(
            f"{str(target)!r} holds an index of format version {version}, newer than this qa ({NEWEST_VERSION}): "
            "upgrade qa, or choose another --index"
        )
    foreign = [name for name in entries if name not in ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        raise QAError(
            f"the index folder {str(target)!r} also holds files qa did not write ({shown}); move them out "
            "or choose another --index: replacing the index would delete them"
        )


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of the index at ``index_dir``, checked for format, version and the keys
    that readers rely on."""
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if not index_dir.exists() and any(index_dir.parent.glob(f".{index_dir.name}.old-*")):
        with directory_lock(index_dir):  # a writer was killed while swapping the index in
            recover_directory(index_dir)
    if not index_dir.exists():
        raise QAError(f"no index at {str(index_dir)!r}: build one with `qa index PATH --index {index_dir}`")
    if not index_dir.is_dir():
        raise QAError(f"{str(index_dir)!r} is a file, not an index folder: pass the folder `qa index` wrote")
    if not path.is_file():
        raise QAError(f"{str(index_dir)!r} is not a qa index (no {MANIFEST}): build one with `qa index PATH`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise QAError(f"index manifest {str(path)!r} is unreadable ({err}): rebuild the index with `qa index`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise QAError(f"{str(path)!r} is not a qa index manifest: rebuild the index with `qa index`")
    version = manifest.get("format_version")
    if version not in (FORMAT_VERSION, SHARDED_VERSION):
        raise QAError(
            f"index {str(index_dir)!r} has format version {version}, this qa reads versions "
            f"{FORMAT_VERSION} and {SHARDED_VERSION}: rebuild it with `qa index`"
        )
    shards = manifest.get("shards")
    if version == SHARDED_VERSION and not (
        isinstance(shards, list) and shards and all(isinstance(s, dict) and isinstance(s.get("path", s.get("url")), str) for s in shards)
    ):
        raise QAError(f"index manifest {str(path)!r} lists no shards: it is damaged; rebuild the index with `qa index`")
    for section, keys in REQUIRED.items():
        value = manifest.get(section)
        missing = [k for k in keys if not isinstance(value, dict) or k not in value]
        if missing:
            raise QAError(
                f"index manifest {str(path)!r} lacks {', '.join(f'{section}.{k}' for k in missing)}: "
                "it is damaged; rebuild the index with `qa index`"
            )
    counts = manifest["counts"]
    if not all(isinstance(counts[k], int) and counts[k] >= 0 for k in REQUIRED["counts"]):
        raise QAError(f"index manifest {str(path)!r} has invalid counts: rebuild the index with `qa index`")
    return manifest


def manifest_stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """What changes when the manifest is rewritten or the folder replaced (inode, mtime, size);
    None when there is no manifest."""
    try:
        st = os.stat(index_dir / MANIFEST)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def data_files(index_dir: Path) -> list[str]:
    """The index's data files (everything but the manifest and marker), relative, sorted; a
    sharded index's shards are left out (each shard's manifest records its own)."""
    return sorted(
        p.relative_to(index_dir).as_posix()
        for p in index_dir.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, MARKER) and p.relative_to(index_dir).parts[0] != SHARDS_DIR
    )


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of one file, as the manifest's ``files`` section holds them."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def size_problems(index_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Files the manifest records that are missing or of another size (cheap: no reading)."""
    problems = []
    for name, record in (manifest.get("files") or {}).items():
        path = index_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != record.get("bytes"):
            problems.append(f"{name} has {path.stat().st_size} bytes, the build wrote {record.get('bytes')}")
    return problems
