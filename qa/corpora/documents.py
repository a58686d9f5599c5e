"""The document record every corpus reader produces, and the report of a read."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


CHUNK_CHARS = 1 << 20  # long texts are encoded this many characters at a time, never copied whole


@dataclass(frozen=True)
class Document:
    """One document of a collection.

    ``id`` is unique within the collection (a relative path, or the record's own id);
    ``source`` is the file it came from, relative to the corpus root.
    """

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """SHA-256 of ``title + "\\n" + text`` in UTF-8, hashed a megabyte of text at a time."""
        digest = hashlib.sha256(f"{self.title}\n".encode())
        for first in range(0, len(self.text), CHUNK_CHARS):
            digest.update(self.text[first : first + CHUNK_CHARS].encode())
        return digest.hexdigest()


@dataclass
class ReadReport:
    """What a corpus read did: files read, documents made, files skipped by reason, symbolic
    links to folders followed. ``on_file(done, total)``, when set, is called after each file."""

    files_read: int = 0
    documents: int = 0
    skipped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    files_selected: int = 0
    linked_folders: int = 0
    on_file: Callable[[int, int], None] | None = field(default=None, repr=False, compare=False)

    def skip(self, source: str, reason: str) -> None:
        self.skipped[reason] += 1
        self.warnings.append(f"skipped {source}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_read": self.files_read,
            "documents": self.documents,
            "skipped": dict(self.skipped),
            "linked_folders": self.linked_folders,
        }
