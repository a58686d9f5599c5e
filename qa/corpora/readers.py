"""Read a file or a folder of files into documents.

Formats, by file name:

- ``.txt``; ``.md`` (YAML front matter as metadata, title from it or the first ``#`` heading, see
  :mod:`qa.corpora.markdown`); ``.html``/``.htm`` (main text, see
  :mod:`qa.corpora.html`); ``.pdf`` (see :mod:`qa.corpora.pdf`);
- ``.json`` and ``.json.gz``: SQuAD-layout files (SQuAD v1.1/v2.0, COVID-QA) give one document
  per paragraph with its article's title (COVID-QA's ``document_id`` as id); any other JSON is one
  record or a list of records; ``.jsonl`` and ``.jsonl.gz``: one record per line. A record is a
  JSON object with a text field; its id and title fields are optional (field names configurable);
- a folder holding a CORD-19 release (``metadata.csv`` with ``cord_uid``, and
  ``document_parses/``) is read as CORD-19 (:mod:`qa.corpora.cord19`).

Folders are walked recursively in name order; hidden files and folders are ignored;
``include``/``exclude`` globs select files (a glob without ``/`` matches file names, one with
``/`` matches paths relative to the corpus root). A file that cannot be read is skipped with a
reason in the :class:`ReadReport`, as is a file larger than ``max_file_mb`` (JSON Lines files
are streamed and have no limit): one bad file never stops a read.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.corpora.cord19 import is_cord19, read_cord19
from qa.corpora.documents import CHUNK_CHARS, Document, ReadReport
from qa.corpora.html import html_text
from qa.corpora.markdown import markdown_document
from qa.corpora.pdf import PDFError, pdf_text
from qa.corpora.squad import is_squad, squad_documents
from qa.errors import QAError, first_line

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".json", ".json.gz", ".jsonl", ".jsonl.gz")
DEFAULT_MAX_FILE_MB = 256.0



class _Skip(Exception):
    """A file (or record) that is skipped, and why."""


def file_format(path: str | Path) -> str | None:
    """The supported suffix ``path`` ends with (``.json.gz`` before ``.gz``), or None."""
    name = Path(path).name.lower()
    return next((s for s in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def read_corpus(
    path: str | Path,
    report: ReadReport | None = None,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    id_field: str = "id",
    title_field: str = "title",
    text_field: str = "text",
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
) -> Iterator[Document]:
    """Yield the documents of ``path`` (a file, or a folder walked recursively in name order).

    With ``include`` globs, only matching files are read; files matching an ``exclude`` glob are
    not. Documents whose id was already seen are skipped ("duplicate id").

    The three stages — :func:`corpus_parts` lists, :func:`read_part` reads one part,
    :class:`DocumentFilter` keeps what can be indexed — are also what a parallel build runs
    (``qa index --ray`` reads parts on several workers and filters in order on the driver).
    """
    report = report if report is not None else ReadReport()
    parts = corpus_parts(path, report, include=include, exclude=exclude)
    keep = DocumentFilter(report)
    fields = (id_field, title_field, text_field)
    for done, part in enumerate(parts, start=1):
        for doc in read_part(part, report, fields, max_file_mb):
            if keep(doc):
                yield doc
        _progress(report, done, len(parts))


@dataclass(frozen=True)
class CorpusPart:
    """What one reader reads: a file (``kind="file"``) or a whole CORD-19 release (``kind="cord19"``,
    read from its metadata.csv); ``base`` is the folder sources are named relative to."""

    kind: str
    path: Path
    base: Path


def corpus_parts(
    path: str | Path, report: ReadReport, *, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[CorpusPart]:
    """The parts of ``path`` to read, in reading order: its files (selected by ``include`` and
    ``exclude``, counted in ``report.files_selected``) and CORD-19 releases. Names only: nothing is read."""
    root = Path(path).expanduser()
    if not root.exists():
        raise QAError(f"corpus path {str(path)!r} does not exist")
    if root.is_file():
        report.files_selected += 1
        return [CorpusPart("file", root, root.parent)]
    if is_cord19(root):
        return [CorpusPart("cord19", root, root)]
    files = _walk(root, report)
    cord19_roots = [f.parent for f in files if f.name == "metadata.csv" and is_cord19(f.parent)]
    parts = []
    for file in files:
        release = next((r for r in cord19_roots if file.is_relative_to(r)), None)
        if release is not None:  # a CORD-19 release is read from its metadata.csv, parses and all
            if file == release / "metadata.csv":
                parts.append(CorpusPart("cord19", release, root))
        elif _selected(file.relative_to(root).as_posix(), list(include), list(exclude)):
            report.files_selected += 1
            parts.append(CorpusPart("file", file, root))
    return parts


def read_part(part: CorpusPart, report: ReadReport, fields=("id", "title", "text"), max_file_mb: float = DEFAULT_MAX_FILE_MB) -> Iterator[Document]:
    """The documents of one part, as read (not yet filtered by :class:`DocumentFilter`); what
    cannot be read is skipped in ``report`` with a reason."""
    if part.kind == "cord19":
        yield from _read_cord19(part.path, part.base, report)
    else:
        yield from _read_file(part.path, part.base, report, fields, max_file_mb)


class DocumentFilter:
    """Called on each document in reading order: True for a document to index; False (with
    the reason in the report) for an empty one, one that UTF-8 cannot store, or a second
    document with an id already seen. Counts kept documents in ``report.documents``."""

    def __init__(self, report: ReadReport):
        self.report = report
        self.seen: set[str] = set()

    def __call__(self, doc: Document) -> bool:
        where = f"{doc.source} ({doc.id})"
        if not doc.text or doc.text.isspace():
            self.report.skip(where, "empty text")
        elif not _encodable(doc):
            self.report.skip(where, "invalid Unicode (lone surrogate)")
        elif doc.id in self.seen:
            self.report.skip(where, "duplicate id")
        else:
            self.seen.add(doc.id)
            self.report.documents += 1
            return True
        return False


def _progress(report: ReadReport, done: int, total: int) -> None:
    if report.on_file is not None:
        report.on_file(done, total)


def _read_cord19(release: Path, base: Path, report: ReadReport) -> Iterator[Document]:
    source = (release / "metadata.csv").relative_to(base).as_posix()
    try:
        yield from read_cord19(release, base, report)
    except Exception as err:  # noqa: BLE001 - one bad file never stops a build
        report.skip(source, _failure(err))


def _selected(source: str, include: list[str], exclude: list[str]) -> bool:
    def matches(pattern: str) -> bool:
        target = source if "/" in pattern else source.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(target, pattern)

    if include and not any(matches(p) for p in include):
        return False
    return not any(matches(p) for p in exclude)


def _walk(root: Path, report: ReadReport) -> list[Path]:
    """The files under ``root`` in name order, hidden ones left out. Symbolic links to folders
    are followed (and counted), each folder at most once, so a link loop ends; a folder that
    cannot be listed, or a file reached a second time through a link, is skipped with a reason."""
    seen_folders: set[tuple[int, int]] = set()
    files: list[Path] = []

    def unreadable(err: OSError) -> None:
        report.skip(_relative(Path(err.filename), root), f"unreadable folder ({err.strerror or err})")

    for folder, subfolders, names in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(folder)
        try:
            st = here.stat()
        except OSError as err:
            report.skip(_relative(here, root), f"unreadable folder ({err.strerror or err})")
            subfolders[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_folders:
            report.skip(_relative(here, root), "folder already read (reached again through a symbolic link)")
            subfolders[:] = []
            continue
        seen_folders.add((st.st_dev, st.st_ino))
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        report.linked_folders += sum((here / d).is_symlink() for d in subfolders)
        files += [here / n for n in names if not n.startswith(".") and (here / n).is_file()]
    files.sort()
    seen_files: dict[tuple[int, int], Path] = {}
    unique = []
    for file in files:
        st = file.stat()
        first = seen_files.setdefault((st.st_dev, st.st_ino), file)
        if first is file:
            unique.append(file)
        else:
            report.skip(_relative(file, root), f"same file as {_relative(first, root)} (reached through a link)")
    return unique


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def _read_file(file: Path, base: Path, report: ReadReport, fields, max_file_mb: float) -> Iterator[Document]:
    source = file.relative_to(base).as_posix()
    kind = file_format(file)
    if kind is None:
        report.skip(source, "unsupported file type")
        return
    try:
        if kind in (".jsonl", ".jsonl.gz"):  # streamed: a bad line skips that line only
            yield from _jsonl(file, source, fields, report, gz=kind.endswith(".gz"))
            return
        size_mb = file.stat().st_size / 2**20
        if size_mb > max_file_mb:
            raise _Skip(f"larger than {max_file_mb:g} MB ({size_mb:.0f} MB): split it, or use JSON Lines (streamed)")
        docs = list(_parse(file, kind, source, fields, report))
    except _Skip as skip:
        report.skip(source, str(skip))
        return
    except OSError as err:
        report.skip(source, f"unreadable ({err.strerror or err})")
        return
    except Exception as err:  # noqa: BLE001 - one bad file never stops a build
        report.skip(source, _failure(err))
        return
    report.files_read += 1
    yield from docs


def _parse(file: Path, kind: str, source: str, fields, report: ReadReport) -> Iterable[Document]:
    stem = Path(source).name[: -len(kind)]
    if kind == ".pdf":
        try:
            title, text = pdf_text(file)
        except PDFError:
            raise _Skip("broken PDF") from None
        return [Document(id=source, text=text, title=title or stem, source=source)]
    raw = file.read_bytes()
    if kind.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            raise _Skip("broken gzip") from None
    content = _decode(raw)
    if kind == ".txt":
        return [Document(id=source, text=content, title=stem, source=source)]
    if kind == ".md":
        title, text, metadata = markdown_document(content)
        return [Document(id=source, text=text, title=title or stem, source=source, metadata=metadata)]
    if kind in (".html", ".htm"):
        title, text = html_text(content)
        return [Document(id=source, text=text, title=title or stem, source=source)]
    # .json, .json.gz
    try:
        data = json.loads(content)
    except json.JSONDecodeError as err:
        raise _Skip(f"invalid JSON (line {err.lineno})") from None
    except RecursionError:
        raise _Skip("JSON nested too deeply") from None
    if is_squad(data):
        return squad_documents(data, source)
    return _records(data if isinstance(data, list) else [data], source, fields, report)


def _decode(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise _Skip("binary file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Skip("invalid UTF-8") from None


def _records(records: list, source: str, fields, report: ReadReport) -> list[Document]:
    docs = []
    for i, record in enumerate(records):
        doc = _record(record, f"{source}#{i}", source, fields)
        if doc is None:
            report.skip(f"{source}#{i}", f"no {fields[2]!r} string field")
        else:
            docs.append(doc)
    return docs


def _jsonl(file: Path, source: str, fields, report: ReadReport, gz: bool) -> Iterator[Document]:
    opened = gzip.open(file, "rb") if gz else open(file, "rb")
    with opened as binary:
        lines = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict")
        lineno = 0
        while True:
            try:
                line = next(lines, None)
            except UnicodeDecodeError:
                report.skip(f"{source}:{lineno + 1}", "invalid UTF-8")
                return  # the decoder cannot resynchronise: the rest of the file is skipped
            except (OSError, EOFError, zlib.error):
                report.skip(source, "broken gzip")
                return
            if line is None:
                if lineno == 0:
                    report.files_read += 1  # an empty file was read
                return
            lineno += 1
            if "\x00" in line:
                report.skip(f"{source}:{lineno}" if lineno > 1 else source, "binary file")
                return
            if lineno == 1:
                report.files_read += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                report.skip(f"{source}:{lineno}", "invalid JSON line")
                continue
            except RecursionError:
                report.skip(f"{source}:{lineno}", "JSON nested too deeply")
                continue
            doc = _record(record, f"{source}:{lineno}", source, fields)
            if doc is None:
                report.skip(f"{source}:{lineno}", f"no {fields[2]!r} string field")
            else:
                yield doc


def _record(record: Any, fallback_id: str, source: str, fields: tuple[str, str, str]) -> Document | None:
    id_field, title_field, text_field = fields
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        return None
    doc_id = record.get(id_field)
    title = record.get(title_field)
    metadata = {k: v for k, v in record.items() if k not in fields}
    return Document(
        id=str(doc_id) if doc_id is not None else fallback_id,
        text=record[text_field],
        title=str(title) if title is not None else "",
        source=source,
        metadata=metadata,
    )


def _failure(err: BaseException) -> str:
    """A skip reason for an unexpected error while reading a file."""
    name, detail = type(err).__name__, first_line(err)
    return f"unreadable ({name})" if detail == name else f"unreadable ({name}: {detail})"


def _encodable(doc: Document) -> bool:
    """False when the document holds a lone surrogate, which UTF-8 cannot store. Checked a
    megabyte of text at a time, so that a long document is not copied whole."""
    try:
        for part in (doc.id, doc.title):
            part.encode("utf-8")
        for first in range(0, len(doc.text), CHUNK_CHARS):
            doc.text[first : first + CHUNK_CHARS].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
