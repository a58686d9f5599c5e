"""Read a file or a folder of files into documents.

Supported: ``.txt``, ``.md`` (title from the first ``#`` heading), ``.json`` (one record or
a list of records) and ``.jsonl`` (one record per line). A record is a JSON object with a
text field; its id and title fields are optional (field names are configurable).
A file that cannot be read is skipped with a reason in the :class:`ReadReport`: one bad file
never stops a read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qa.corpora.documents import Document, ReadReport
from qa.errors import QAError

SUPPORTED_SUFFIXES = (".txt", ".md", ".json", ".jsonl")

_MD_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def read_corpus(
    path: str | Path,
    report: ReadReport | None = None,
    *,
    id_field: str = "id",
    title_field: str = "title",
    text_field: str = "text",
) -> Iterator[Document]:
    """Yield the documents of ``path`` (a file, or a folder walked recursively in name order).

    Hidden files and folders are ignored. Documents whose id was already seen are skipped.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise QAError(f"corpus path {str(path)!r} does not exist")
    report = report if report is not None else ReadReport()
    files = [root] if root.is_file() else _walk(root)
    base = root.parent if root.is_file() else root
    fields = (id_field, title_field, text_field)
    seen: set[str] = set()
    for file in files:
        source = file.relative_to(base).as_posix()
        if file.suffix.lower() not in SUPPORTED_SUFFIXES:
            report.skip(source, "unsupported file type")
            continue
        try:
            raw = file.read_bytes()
        except OSError as err:
            report.skip(source, f"unreadable ({err.strerror or err})")
            continue
        if b"\x00" in raw[:8192]:
            report.skip(source, "binary file")
            continue
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            report.skip(source, "invalid UTF-8")
            continue
        report.files_read += 1
        for doc in _parse(file.suffix.lower(), content, source, fields, report):
            if not doc.text.strip():
                report.skip(f"{source} ({doc.id})", "empty text")
            elif not _encodable(doc):
                report.skip(f"{source} ({doc.id})", "invalid Unicode (lone surrogate)")
            elif doc.id in seen:
                report.skip(f"{source} ({doc.id})", "duplicate id")
            else:
                seen.add(doc.id)
                report.documents += 1
                yield doc


def _encodable(doc: Document) -> bool:
    try:
        (doc.id + doc.title + doc.text).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _parse(
    suffix: str, content: str, source: str, fields: tuple[str, str, str], report: ReadReport
) -> Iterator[Document]:
    if suffix == ".txt":
        yield Document(id=source, text=content, title=Path(source).stem, source=source)
    elif suffix == ".md":
        heading = _MD_HEADING.search(content)
        title = heading.group(1) if heading else Path(source).stem
        yield Document(id=source, text=content, title=title, source=source)
    elif suffix == ".json":
        try:
            data = json.loads(content)
        except json.JSONDecodeError as err:
            report.skip(source, f"invalid JSON (line {err.lineno})")
            return
        records = data if isinstance(data, list) else [data]
        for i, record in enumerate(records):
            doc = _record(record, f"{source}#{i}", source, fields)
            if doc is None:
                report.skip(f"{source}#{i}", f"no {fields[2]!r} string field")
            else:
                yield doc
    elif suffix == ".jsonl":
        for lineno, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                report.skip(f"{source}:{lineno}", "invalid JSON line")
                continue
            doc = _record(record, f"{source}:{lineno}", source, fields)
            if doc is None:
                report.skip(f"{source}:{lineno}", f"no {fields[2]!r} string field")
            else:
                yield doc


def _record(
    record: Any, fallback_id: str, source: str, fields: tuple[str, str, str]
) -> Document | None:
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
