"""File-system helpers for writing directories that are never seen half-written, and never
with permissions narrower than the user's umask allows."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """qa's cache folder: ``$XDG_CACHE_HOME/qa`` (default ``~/.cache/qa``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qa"


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and normalised (``.`` and ``..`` removed) without following links,
    so that a target like ``.`` has a name and a parent."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_like_mkdir(path: Path) -> None:
    """Give a directory made by :func:`tempfile.mkdtemp` (always 0700) the mode ``mkdir`` would
    have given it, so that an index or model can be shared as the umask allows."""
    os.chmod(path, 0o777 & ~umask())


def share_like_create(folder: Path, written_since: float = 0.0) -> None:
    """Give the files directly in ``folder`` written at or after ``written_since`` (a
    ``time.time()``) the mode a plain ``open`` would have given them (libraries that write
    through temporary files leave 0600). Older files, which may be the user's, keep theirs."""
    mode = 0o666 & ~umask()
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= written_since:
            os.chmod(path, mode)


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``target`` to build in; removed afterwards if still there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    share_like_mkdir(staging)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` directory to ``target``; an old ``target`` is moved aside
    first and deleted only after the new one is in place. The caller must have checked that an
    existing ``target`` is one it may replace."""
    if not target.exists() and not target.is_symlink():
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
    """Hold an exclusive lock on ``target`` (a sibling ``.NAME.lock`` file that exists only while
    the lock is held) while it is rewritten; a second writer fails at once with a message, it
    never waits or interleaves.

    The lock file is removed by its holder before unlocking; a process that locked a file which
    was removed meanwhile notices (the path no longer names the file it holds) and tries again.
    A writer killed with ``kill -9`` leaves an unlocked file behind, which the next writer uses.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.lock")
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            from qa.errors import QAError

            raise QAError(f"another process is writing the {what} at {str(target)!r}; wait for it to finish") from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the file was removed by the holder we waited behind: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        handle.close()


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
