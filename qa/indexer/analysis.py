"""Text analysis for BM25: lower-case word tokens, English stop words removed, Snowball stems."""

from __future__ import annotations

import functools
import re

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

ANALYZER_NAME = "lower+words+stop-en+snowball-en"

_TOKEN = re.compile(r"(?u)\b\w\w+\b|\b\d\b")
_STOP = frozenset(STOPWORDS_EN)


@functools.cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def analyze(text: str) -> list[str]:
    """The BM25 terms of ``text``: the same function serves indexing and querying."""
    words = [w for w in _TOKEN.findall(text.lower()) if w not in _STOP]
    return _stemmer().stemWords(words)
