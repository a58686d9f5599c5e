"""The passage store: one SQLite file with documents and passages, read lazily by id.

Passages are stored as character offsets into their document, so that a passage's text is
by construction the document text at its offsets.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.corpora import Document
from qa.errors import QAError
from qa.index.where import DOCUMENT_FIELDS, Condition, fields_named, row_test

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


FIELD_SAMPLE = 1000
"""Documents whose metadata keys are listed when a ``--where`` condition names a field none has."""


def retrieval_text(title: str, text: str) -> str:
    """What BM25 and the embedding model see of a passage: its document's title, then its text."""
    return f"{title}\n{text}" if title else text


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

    @property
    def retrieval_text(self) -> str:
        """The text this passage was embedded and BM25-indexed as (:func:`retrieval_text`)."""
        return retrieval_text(self.title, self.text)

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


def _holds(db: sqlite3.Connection, doc: Document) -> str | None:
    """``"same"`` when a document with ``doc``'s id and content is stored, ``"changed"`` when one
    with its id but other content is, else None."""
    row = db.execute("SELECT sha256 FROM documents WHERE id = ?", (doc.id,)).fetchone()
    return None if row is None else "same" if row[0] == doc.sha256 else "changed"


def _holds_content(db: sqlite3.Connection, doc: Document) -> str | None:
    """The id of a stored document with ``doc``'s title and text, if there is one."""
    row = db.execute("SELECT id FROM documents WHERE sha256 = ? LIMIT 1", (doc.sha256,)).fetchone()
    return None if row is None else row[0]


def _values(row: Sequence, metadata: list[int]) -> list:
    """The field values of a row ``(idx, value..., json_type of each metadata value...)``, each
    metadata value as ``json.loads`` of the whole metadata gives it (lists, booleans)."""
    values = list(row[1 : len(row) - len(metadata)])
    for kind, i in zip(row[len(row) - len(metadata) :], metadata):
        if kind == "array":
            values[i] = json.loads(values[i])
        elif kind in ("true", "false"):
            values[i] = kind == "true"
    return values


class PassageWriter:
    """Writes documents and their passage offsets to a new store file, or appends them to an
    existing one (``append=True``), numbering on from what is there. Nothing is held in memory
    but the current document: what is stored is looked up in the file."""

    def __init__(self, path: Path, append: bool = False):
        self._db = sqlite3.connect(path)
        if append:
            self.documents = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            self.passages = self._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
        else:
            self._db.executescript(_SCHEMA)
            self.documents = 0
            self.passages = 0
        self._db.execute("CREATE INDEX IF NOT EXISTS documents_sha256 ON documents(sha256)")

    def holds(self, doc: Document) -> str | None:
        return _holds(self._db, doc)

    def holds_content(self, doc: Document) -> str | None:
        return _holds_content(self._db, doc)

    def add_document(self, doc: Document) -> int:
        """Store ``doc``; its passages follow with :meth:`add_passages`. Returns its number."""
        doc_idx = self.documents
        try:
            metadata = json.dumps(doc.metadata)
        except (TypeError, ValueError, RecursionError) as err:
            raise ValueError(f"metadata that cannot be stored as JSON ({type(err).__name__})") from None
        self._db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc_idx, doc.id, doc.title, doc.source, metadata, doc.sha256, doc.text),
        )
        self.documents += 1
        return doc_idx

    def add_passages(self, doc_idx: int, spans: Sequence[tuple[int, int]]) -> None:
        """Store passages of document ``doc_idx`` (character offsets), numbered on."""
        rows = [(self.passages + i, doc_idx, s, e) for i, (s, e) in enumerate(spans)]
        self._db.executemany("INSERT INTO passages VALUES (?, ?, ?, ?)", rows)
        self.passages += len(rows)

    def close(self) -> None:
        self._db.commit()
        self._db.close()


class PassageStore:
    """Read-only access to a store file; passages are fetched by index, never loaded whole.
    A damaged file raises :class:`QAError` (rebuild the index)."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._db  # opened now: a file that cannot be opened fails here, not at the first question

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection. Threads do not share one: reading one connection from several
        threads lost rows (a passage asked for came back missing, seen on a 16-core machine)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            with self._lock:
                self._connections.append(db)
            self._local.db = db
        return db

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        """The number of passages, from the last passage number (no scan of the table)."""
        with self._damage_is_an_error():
            last = self._db.execute("SELECT MAX(idx) FROM passages").fetchone()[0]
        return 0 if last is None else int(last) + 1

    def get(self, indices: Sequence[int]) -> list[Passage]:
        """The passages at ``indices``, in that order."""
        if not indices:
            return []
        marks = ",".join("?" * len(indices))
        with self._damage_is_an_error():
            rows = self._db.execute(
                "SELECT p.idx, substr(d.text, p.start + 1, p.end - p.start), p.start, p.end, "
                "d.id, d.title, d.source FROM passages p JOIN documents d ON d.idx = p.doc_idx "
                f"WHERE p.idx IN ({marks})",
                [int(i) for i in indices],
            ).fetchall()
        by_idx = {row[0]: Passage(*row) for row in rows}
        missing = [int(i) for i in indices if int(i) not in by_idx]
        if missing:
            raise QAError(f"the passage store {str(self.path)!r} lacks passage {missing[0]}: it is damaged; rebuild the index with `qa index`")
        return [by_idx[int(i)] for i in indices]

    @contextlib.contextmanager
    def _damage_is_an_error(self):
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise QAError(f"the passage store {str(self.path)!r} is damaged ({err}): rebuild the index with `qa index`") from None

    def texts(self) -> Iterable[tuple[str, str]]:
        """(title, text) of every passage in index order. Documents are read one at a time and
        their passages cut from them here (SQLite's ``substr`` would read a whole document for
        every passage of it)."""
        documents = self._db.execute("SELECT idx, title, text FROM documents ORDER BY idx")
        doc_idx, title, text = -1, "", ""
        for passage_doc, start, end in self._db.execute("SELECT doc_idx, start, end FROM passages ORDER BY idx"):
            while doc_idx != passage_doc:  # passages are stored document after document
                doc_idx, title, text = next(documents)
            yield title, text[start:end]

    def passages_with_content(self, sha256: str) -> list[Passage]:
        """The passages, in order, of the stored document whose title and text hash to ``sha256``
        (:attr:`Document.sha256`); [] when there is none. Finds a document by what it says, under
        whatever id an index gave it."""
        with self._damage_is_an_error():
            row = self._db.execute("SELECT idx FROM documents WHERE sha256 = ? LIMIT 1", (sha256,)).fetchone()
            if row is None:
                return []
            rows = self._db.execute(
                "SELECT p.idx, substr(d.text, p.start + 1, p.end - p.start), p.start, p.end, d.id, d.title, d.source "
                "FROM passages p JOIN documents d ON d.idx = p.doc_idx WHERE p.doc_idx = ? ORDER BY p.idx",
                (row[0],),
            ).fetchall()
        return [Passage(*r) for r in rows]

    def holds(self, doc: Document) -> str | None:
        with self._damage_is_an_error():
            return _holds(self._db, doc)

    def holds_content(self, doc: Document) -> str | None:
        with self._damage_is_an_error():
            return _holds_content(self._db, doc)

    def document(self, doc_id: str) -> Document | None:
        with self._damage_is_an_error():
            row = self._db.execute(
                "SELECT id, text, title, source, metadata FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            return None
        return Document(id=row[0], text=row[1], title=row[2], source=row[3], metadata=json.loads(row[4]))

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        """The stored metadata of the documents ``doc_ids`` (those that exist), by id."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        with self._damage_is_an_error():
            rows = self._db.execute(
                f"SELECT id, metadata FROM documents WHERE id IN ({', '.join('?' * len(ids))})", ids
            ).fetchall()
        return {doc_id: json.loads(metadata) for doc_id, metadata in rows}

    def passages_where(self, conditions: Sequence[Condition]) -> np.ndarray:
        """The numbers (int64, ascending) of the passages whose documents meet every one of
        ``conditions`` (:mod:`qa.index.where`): one pass over the documents' fields and metadata,
        then one over the passages."""
        fields = fields_named(conditions)  # only these are read, and of the metadata only them (SQLite reads the JSON)
        columns = [f if f in DOCUMENT_FIELDS else "json_extract(metadata, ?)" for f in fields]
        kinds = ["json_type(metadata, ?)" for f in fields if f not in DOCUMENT_FIELDS]
        paths = [f'$."{f}"' for f in fields if f not in DOCUMENT_FIELDS]
        test = row_test(conditions)
        with self._damage_is_an_error():
            rows = self._db.execute(f"SELECT idx, {', '.join(columns + kinds)} FROM documents", paths * 2)
            if kinds:
                metadata = [i for i, f in enumerate(fields) if f not in DOCUMENT_FIELDS]
                meeting = [row[0] for row in rows if test(_values(row, metadata))]
            else:
                meeting = [row[0] for row in rows if test(row[1:])]
            if not meeting:
                return np.zeros(0, dtype=np.int64)
            rows = self._db.execute(
                "SELECT idx FROM passages WHERE doc_idx IN (SELECT value FROM json_each(?)) ORDER BY idx", (json.dumps(meeting),)
            ).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def metadata_fields(self, documents: int = FIELD_SAMPLE) -> set[str]:
        """The metadata keys of the first ``documents`` documents (what ``--where`` can name
        besides id, title and source)."""
        with self._damage_is_an_error():
            rows = self._db.execute(
                "SELECT DISTINCT j.key FROM (SELECT metadata FROM documents ORDER BY idx LIMIT ?) d, json_each(d.metadata) j",
                (documents,),
            ).fetchall()
        return {row[0] for row in rows}

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
