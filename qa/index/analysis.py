"""Text analysis for BM25: lower-case word tokens, English stop words removed, Snowball stems."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import Stemmer

ANALYZER_NAME = "lower+words+stop-en+snowball-en"

_TOKEN = re.compile(r"(?u)\b\w\w+\b|\b\d\b")


@functools.cache
def _stop_words() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN  # imports bm25s and scipy: only when text is analysed

    return frozenset(STOPWORDS_EN)


@functools.cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def analyze(text: str) -> list[str]:
    """The BM25 terms of ``text``: the same function serves indexing and querying."""
    stop = _stop_words()
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    return _stemmer().stemWords(words)


def analyze_corpus(texts: Iterable[str]) -> tuple[list[list[int]], dict[str, int]]:
    """The BM25 terms of every text as ids into one vocabulary, for ``bm25s.BM25.index``.

    Each distinct term is stored once and every occurrence is a reference to one shared int,
    so a million passages take about 8 bytes a term instead of a string object per term.
    """
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(term, len(vocab)) for term in analyze(text)] for text in texts]
    return ids, vocab
