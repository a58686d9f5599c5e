"""File-system helpers for writing directories that are never seen half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``target`` to build in; removed afterwards if still there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` directory to ``target``; an old ``target`` is moved aside
    first and deleted only after the new one is in place."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    """Delete a directory tree, or only the link when ``path`` is a symbolic link (the folder it
    points to is not ours to delete)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def directory_lock(target: Path, what: str = "index") -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a sibling ``.NAME.lock`` file) while it is rewritten;
    a second writer fails at once with a message, it never waits or interleaves."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.lock")
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from qa.errors import QAError

            raise QAError(f"another process is writing the {what} at {str(target)!r}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover_directory(target: Path) -> None:
    """Clean up after a writer that was killed: put back the previous ``target`` if the kill
    came between moving it aside and moving the new one in, and delete half-built staging
    directories. Call it holding :func:`directory_lock`."""
    parent = target.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{target.name}.old-*"), key=lambda p: p.lstat().st_mtime)
    if olds and not target.exists():
        os.rename(olds.pop(), target)
    for leftover in [*olds, *parent.glob(f".{target.name}.building-*")]:
        _remove(leftover)
