"""Writing an index: a new generation is built in a staging folder beside the old one and swapped
in only when complete, under a lock, so that readers and a failed build never see half an index."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import qa
from qa.errors import QAError
from qa.fsutil import absolute, directory_lock, recover_directory, replace_directory, staging_dir
from qa.index import layout

# Write failures that are the machine's, not a bug: a full or read-only disk, a quota, permissions.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


class IndexWriter:
    """Write the next generation of the index at ``target`` (a context manager).

    On entry it takes the folder's lock, finishes a swap that a killed writer left half done,
    and checks that ``target`` may be replaced (it does not exist, is empty, or is an index
    ``qa index`` wrote with nothing else in it); with ``add=True`` it reads the index there
    instead (:attr:`previous`), to be extended. The parts are written into :attr:`staging`
    under their layout names; :meth:`commit` stamps and writes the manifest and the format
    marker, flushes every file to disk and swaps the folder in. Leaving without a commit
    discards the staging folder: the previous index stays as it was. A full or read-only disk
    is a :class:`QAError` naming the folder.
    """

    def __init__(self, target: str | Path, *, add: bool = False):
        self.target = absolute(target)
        self.add = add
        self.previous: dict[str, Any] | None = None
        self.staging: Path | None = None
        self.manifest: dict[str, Any] | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> IndexWriter:
        try:
            self._stack.enter_context(directory_lock(self.target))
            recover_directory(self.target)
            self.previous = layout.read_manifest(self.target) if self.add else None
            if self.previous is None:
                layout.check_replaceable(self.target)
            self.staging = self._stack.enter_context(staging_dir(self.target))
        except BaseException as err:
            self._stack.close()
            self._translate(err)
            raise
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._stack.__exit__(kind, error, traceback)
        if error is not None:
            self._translate(error)

    def _translate(self, error: BaseException) -> None:
        if isinstance(error, sqlite3.Error) or (isinstance(error, OSError) and error.errno in _WRITE_ERRNOS):
            what = getattr(error, "strerror", None) or str(error)
            raise QAError(
                f"cannot write the index at {str(self.target)!r} ({what}): free space or choose a writable --index; "
                "any previous index there is unchanged"
            ) from None

    def copy_previous(self, name: str) -> Path:
        """Copy the previous index's file ``name`` into the staging folder; returns the copy."""
        shutil.copyfile(self.target / name, self.staging / name)
        return self.staging / name

    def link_previous(self, source: str, destination: str) -> Path:
        """Hard-link the previous index's folder ``source`` (``""``: the whole of an unsharded
        index; else a shard's folder) into the staging folder at ``destination``. Index files are
        never changed once written (an addition writes new ones), so generations can share them;
        where a link cannot be made the file is copied."""
        origin, copy = self.target / source, self.staging / destination
        for path in sorted(origin.rglob("*")):
            relative = path.relative_to(origin)
            if not path.is_file() or relative.parts[0] == layout.SHARDS_DIR or path.name == f"{layout.STORE}-journal":
                continue
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, copy / relative)
            except OSError:
                shutil.copyfile(path, copy / relative)
        return copy

    def commit(self, content: dict[str, Any]) -> dict[str, Any]:
        """Write the manifest (:func:`write_manifest`, one generation on) and the marker, flush
        every file to disk and swap the folder in. Returns the manifest."""
        self.manifest = write_manifest(self.staging, content, self.previous, self._generation() + 1)
        _sync_tree(self.staging)
        replace_directory(self.staging, self.target)
        return self.manifest

    def _generation(self) -> int:
        """The generation of the index being replaced (0 when there is none or it is unreadable)."""
        previous = self.previous
        if previous is None:
            try:
                previous = json.loads((self.target / layout.MANIFEST).read_text())
            except (OSError, ValueError):
                return 0
        generation = previous.get("generation", 1) if isinstance(previous, dict) else 0
        return generation if isinstance(generation, int) else 0


def write_manifest(folder: Path, content: dict[str, Any], previous: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    """Make ``folder`` an index: write its manifest (format, version, dates, generation, build id,
    ``content``, and the size and SHA-256 of every data file) and its format marker (version 2
    when ``content`` lists shards). Returns the manifest."""
    now = utc_now()
    version = layout.SHARDED_VERSION if "shards" in content else layout.FORMAT_VERSION
    manifest = {
        "format": layout.FORMAT_NAME,
        "format_version": version,
        "created": previous["created"] if previous else now,
        **({"updated": now} if previous else {}),
        "generation": generation,
        "build_id": uuid.uuid4().hex,
        "qa_version": qa.__version__,
        **content,
        "files": {name: layout.file_record(folder / name) for name in layout.data_files(folder)},
    }
    (folder / layout.MARKER).write_text(layout.marker_text(version))
    (folder / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _sync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk before it is renamed into place, so that a power
    cut cannot leave a complete-looking index with empty files."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
