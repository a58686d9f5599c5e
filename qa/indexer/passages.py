"""Split documents into overlapping word windows that keep exact character offsets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_MAX_WORDS = 160
DEFAULT_OVERLAP_WORDS = 40

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Span:
    """A passage's place in its document: ``document.text[start:end]`` is the passage text."""

    start: int
    end: int


def split_passages(
    text: str, max_words: int = DEFAULT_MAX_WORDS, overlap_words: int = DEFAULT_OVERLAP_WORDS
) -> Iterator[Span]:
    """Yield windows of at most ``max_words`` whitespace-separated words, consecutive windows
    sharing ``overlap_words`` words. A window starts at a word's first character and ends at a
    word's last one; the last window ends at the last word. Text with no words yields nothing.
    """
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    if not 0 <= overlap_words < max_words:
        raise ValueError("overlap_words must be at least 0 and less than max_words")
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    step = max_words - overlap_words
    for first in range(0, len(words), step):
        last = min(first + max_words, len(words)) - 1
        yield Span(words[first][0], words[last][1])
        if last == len(words) - 1:
            return
