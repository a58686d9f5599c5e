"""Markdown files: the title, and the YAML front matter that note-taking and publishing tools put
at the top of a file (``---`` lines around ``title:``, ``date:``, ``tags:``, ``doi:``…).

The front matter becomes the document's metadata (so ``qa ask --where "date>=2021"`` and the
citation line can use it) and is not indexed as text. Its ``title`` is the document's title, else
the first ``#`` heading is. A block that is not a YAML mapping is left in the text, as a file
without front matter.
"""

from __future__ import annotations

import datetime
import re

import yaml

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def markdown_document(content: str) -> tuple[str | None, str, dict]:
    """``(title or None, text, metadata)`` of a Markdown file's content."""
    metadata: dict = {}
    match = _FRONT_MATTER.match(content)
    if match:
        try:
            found = yaml.safe_load(match.group(1))
        except yaml.YAMLError:
            found = None
        if isinstance(found, dict):
            metadata = {str(key): _plain(value) for key, value in found.items()}
            content = content[match.end() :]
    title = metadata.get("title")
    if not isinstance(title, str) or not title.strip():
        heading = _HEADING.search(content)
        title = heading.group(1) if heading else None
    return title, content, metadata


def _plain(value: object) -> object:
    """A YAML value as JSON can hold it: dates as ISO text, mappings and lists recursively."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
