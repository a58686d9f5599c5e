"""The passage store: one SQLite file with documents and passages, read lazily by id.

Passages are stored as character offsets into their document, so that a passage's text is
by construction the document text at its offsets.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.corpora import Document

_SCHEMA = """
CREATE TABLE documents (
    idx INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    metadata TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE passages (
    idx INTEGER PRIMARY KEY,
    doc_idx INTEGER NOT NULL REFERENCES documents(idx),
    start INTEGER NOT NULL,
    end INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Passage:
    """A retrievable unit: ``text`` is ``document.text[start:end]``."""

    idx: int
    text: str
    start: int
    end: int
    doc_id: str
    title: str
    source: str

    def as_dict(self) -> dict:
        return {
            "passage": self.idx,
            "document": self.doc_id,
            "title": self.title,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


class PassageWriter:
    """Writes documents and their passage offsets to a new store file, or appends them to an
    existing one (``append=True``), numbering on from what is there."""

    def __init__(self, path: Path, append: bool = False):
        self._db = sqlite3.connect(path)
        if append:
            self.documents = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            self.passages = self._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
            self._hashes = dict(self._db.execute("SELECT id, sha256 FROM documents"))
        else:
            self._db.executescript(_SCHEMA)
            self.documents = 0
            self.passages = 0
            self._hashes = {}

    def holds(self, doc: Document) -> str | None:
        """``"same"`` when a document with ``doc``'s id and content is stored, ``"changed"``
        when one with its id but other content is, else None."""
        stored = self._hashes.get(doc.id)
        return None if stored is None else "same" if stored == doc.sha256 else "changed"

    def add(self, doc: Document, spans: Iterable[tuple[int, int]]) -> None:
        doc_idx = self.documents
        self._db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc_idx, doc.id, doc.title, doc.source, json.dumps(doc.metadata), doc.sha256, doc.text),
        )
        rows = [(self.passages + i, doc_idx, s, e) for i, (s, e) in enumerate(spans)]
        self._db.executemany("INSERT INTO passages VALUES (?, ?, ?, ?)", rows)
        self.documents += 1
        self.passages += len(rows)
        self._hashes[doc.id] = doc.sha256

    def close(self) -> None:
        self._db.commit()
        self._db.close()


class PassageStore:
    """Read-only access to a store file; passages are fetched by index, never loaded whole."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]

    def get(self, indices: Sequence[int]) -> list[Passage]:
        """The passages at ``indices``, in that order."""
        if not indices:
            return []
        marks = ",".join("?" * len(indices))
        rows = self._db.execute(
            "SELECT p.idx, substr(d.text, p.start + 1, p.end - p.start), p.start, p.end, "
            "d.id, d.title, d.source FROM passages p JOIN documents d ON d.idx = p.doc_idx "
            f"WHERE p.idx IN ({marks})",
            [int(i) for i in indices],
        ).fetchall()
        by_idx = {row[0]: Passage(*row) for row in rows}
        return [by_idx[int(i)] for i in indices]

    def texts(self, batch: int = 10_000) -> Iterable[tuple[str, str]]:
        """(title, text) of every passage in index order, streamed in batches."""
        for first in range(0, len(self), batch):
            yield from self._db.execute(
                "SELECT d.title, substr(d.text, p.start + 1, p.end - p.start) FROM passages p "
                "JOIN documents d ON d.idx = p.doc_idx WHERE p.idx >= ? AND p.idx < ? ORDER BY p.idx",
                (first, first + batch),
            )

    def document(self, doc_id: str) -> Document | None:
        row = self._db.execute(
            "SELECT id, text, title, source, metadata FROM documents WHERE id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            return None
        return Document(id=row[0], text=row[1], title=row[2], source=row[3], metadata=json.loads(row[4]))

    def close(self) -> None:
        self._db.close()
