"""Split documents into overlapping windows that keep exact character offsets: windows of
whole words counted in words, or counted in the embedding model's tokens with sentence-aware
boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_WORDS = 160
DEFAULT_OVERLAP_WORDS = 40
DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 40

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Window:
    """A passage's place in its document: ``document.text[start:end]`` is the passage text."""

    start: int
    end: int


def split_passages(
    text: str, max_words: int = DEFAULT_MAX_WORDS, overlap_words: int = DEFAULT_OVERLAP_WORDS
) -> Iterator[Window]:
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
        yield Window(words[first][0], words[last][1])
        if last == len(words) - 1:
            return


_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


def split_token_windows(
    text: str,
    count_tokens: Callable[[str, list[tuple[int, int]]], Sequence[int]],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    sentence_aware: bool = True,
    min_fill: float = 0.6,
    block_words: int = 8192,
) -> Iterator[Window]:
    """Yield windows of whole words holding at most ``max_tokens`` model tokens (a single longer
    word makes a window of its own), consecutive windows sharing about ``overlap_tokens``.

    ``count_tokens(text, words)`` gives the number of tokens of each word span (see
    :func:`tokenizer_counter`). With ``sentence_aware``, a window that would end inside a sentence
    ends instead after the last sentence it completes, when that keeps it at least ``min_fill``
    full, and the next window starts at a sentence start inside the overlap when there is one.

    Words are found and counted ``block_words`` at a time as the windows advance, so memory does
    not grow with the length of ``text`` (the windows are the same as for one block).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")
    words = _Words(text, count_tokens, block_words)
    if not words.has(0):
        return
    first = 0
    while True:
        words.forget_before(first)
        total, last = 0, first
        while words.has(last) and (last == first or total + words.count(last) <= max_tokens):
            total += words.count(last)
            last += 1
        if words.has(last) and sentence_aware:
            filled = 0
            cut = None
            for k in range(first, last - 1):
                filled += words.count(k)
                if words.ends_sentence(k) and filled >= min_fill * max_tokens:
                    cut = k + 1
            last = cut or last
        yield Window(words.start(first), words.end(last - 1))
        if not words.has(last):
            return
        back, shared = last, 0
        while back > first + 1 and shared + words.count(back - 1) <= overlap_tokens:
            shared += words.count(back - 1)
            back -= 1
        if sentence_aware:
            back = next((j for j in range(back, last) if words.ends_sentence(j - 1)), back)
        first = max(back, first + 1)


class _Words:
    """The words of a text (character spans, token counts, sentence ends), found and counted a
    block at a time on demand; word ``i`` is addressed by its number in the whole text."""

    def __init__(self, text: str, count_tokens, block: int):
        self._text = text
        self._found = _WORD.finditer(text)
        self._count_tokens = count_tokens
        self._block = block
        self._base = 0  # number of the first word held
        self._spans: list[tuple[int, int]] = []
        self._counts: list[int] = []
        self._ends: list[bool] = []
        self._done = False

    def has(self, i: int) -> bool:
        while i >= self._base + len(self._spans) and not self._done:
            self._read_block()
        return i < self._base + len(self._spans)

    def _read_block(self) -> None:
        spans = [(m.start(), m.end()) for _, m in zip(range(self._block), self._found)]
        if len(spans) < self._block:
            self._done = True
        if spans:
            text = self._text
            self._spans += spans
            self._counts += list(self._count_tokens(text, spans))
            self._ends += [bool(_SENTENCE_END.search(text[s:e])) for s, e in spans]

    def forget_before(self, i: int) -> None:
        drop = i - self._base
        if drop >= self._block:
            del self._spans[:drop], self._counts[:drop], self._ends[:drop]
            self._base = i

    def start(self, i: int) -> int:
        return self._spans[i - self._base][0]

    def end(self, i: int) -> int:
        return self._spans[i - self._base][1]

    def count(self, i: int) -> int:
        return self._counts[i - self._base]

    def ends_sentence(self, i: int) -> bool:
        return self._ends[i - self._base]


def tokenizer_counter(tokenizer) -> Callable[[str, list[tuple[int, int]]], list[int]]:
    """``count_tokens`` for :func:`split_token_windows` from a ``tokenizers.Tokenizer`` without
    truncation (:attr:`qa.embedding.Embedder.tokenizer`; a transformers fast tokenizer's
    ``backend_tokenizer`` is one): each word's tokens are those whose first character lies inside
    it (no special tokens). Only the stretch of text from the first word to the last is tokenised,
    by ``encode_batch``, which lets go of the GIL (``encode`` holds it): threads split in parallel."""

    def count(text: str, words: list[tuple[int, int]]) -> list[int]:
        lo, hi = words[0][0], words[-1][1]
        offsets = tokenizer.encode_batch([text[lo:hi]], add_special_tokens=False)[0].offsets
        starts = np.fromiter((lo + s for s, e in offsets if e > s), dtype=np.int64)
        word_starts = np.asarray([s for s, _ in words], dtype=np.int64)
        word_ends = np.asarray([e for _, e in words], dtype=np.int64)
        return (np.searchsorted(starts, word_ends, "left") - np.searchsorted(starts, word_starts, "left")).tolist()

    return count
