"""CORD-19: ``metadata.csv`` and the full-text parses in ``document_parses/``.

One document per ``cord_uid`` (later rows with a ``cord_uid`` already read are skipped, as
CORD-19 repeats papers): the title, then the abstract, then the body paragraphs with their
section headings. The body comes from the PMC parse when the row lists one (``pmc_json_files``),
else from the first readable PDF parse (``pdf_json_files``); a paper with no readable parse
keeps its title and abstract. Metadata keeps the bibliographic columns and which parse was used.
Layout and schema: https://github.com/allenai/cord19 (``metadata.csv`` and the JSON schema of
``document_parses``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from qa.corpora.documents import Document, ReadReport

METADATA = "metadata.csv"
PARSES = "document_parses"
METADATA_COLUMNS = ("doi", "pmcid", "pubmed_id", "license", "publish_time", "authors", "journal", "source_x", "url")


def is_cord19(folder: Path) -> bool:
    """True when ``folder`` holds a CORD-19 ``metadata.csv`` (a header with ``cord_uid``)."""
    path = folder / METADATA
    if not path.is_file():
        return False
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return "cord_uid" in header


def read_cord19(folder: Path, base: Path, report: ReadReport) -> Iterator[Document]:
    """The papers of the CORD-19 release in ``folder``; sources are relative to ``base``."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # abstracts can exceed the 128 kB default
    metadata = folder / METADATA
    source = metadata.relative_to(base).as_posix()
    with open(metadata, newline="", encoding="utf-8-sig", errors="replace") as f:
        report.files_read += 1
        for line, row in enumerate(csv.DictReader(f), start=2):
            uid = (row.get("cord_uid") or "").strip()
            if not uid:
                report.skip(f"{source}:{line}", "no cord_uid")
                continue
            body, parse = _body(folder, base, row, report)
            title = (row.get("title") or "").strip()
            abstract = (row.get("abstract") or "").strip()
            if not abstract and parse is not None:
                abstract = _paragraphs(parse.get("abstract") or [])
            text = "\n\n".join(part for part in (abstract, body) if part)
            info = {key: row[key] for key in METADATA_COLUMNS if row.get(key)}
            info["parse"] = parse.get("_source") if parse is not None else None
            yield Document(id=uid, text=text, title=title, source=source, metadata=info)


def _body(folder: Path, base: Path, row: dict, report: ReadReport) -> tuple[str, dict | None]:
    """The body text of the best readable parse of ``row``, and that parse."""
    for column in ("pmc_json_files", "pdf_json_files"):
        for name in (row.get(column) or "").split(";"):
            name = name.strip()
            if not name:
                continue
            path = folder / name
            try:
                parse = json.loads(path.read_text(encoding="utf-8"))
                paragraphs = parse["body_text"]
                if not isinstance(paragraphs, list):
                    raise TypeError("body_text is not a list")
                body = _paragraphs(paragraphs, sections=True)
            except FileNotFoundError:
                report.skip(_relative(path, base), "missing CORD-19 parse file")
                continue
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                report.skip(_relative(path, base), "invalid CORD-19 parse file")
                continue
            report.files_read += 1
            parse["_source"] = _relative(path, base)
            return body, parse
    return "", None


def _paragraphs(paragraphs: list, sections: bool = False) -> str:
    out: list[str] = []
    section = None
    for paragraph in paragraphs:
        if not isinstance(paragraph, dict) or not isinstance(paragraph.get("text"), str):
            continue
        heading = (paragraph.get("section") or "").strip()
        if sections and heading and heading != section:
            out.append(heading)
        section = heading
        if paragraph["text"].strip():
            out.append(paragraph["text"].strip())
    return "\n\n".join(out)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)
