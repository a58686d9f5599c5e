"""Corpora: read a collection of files into :class:`Document` objects."""

from qa.corpora.documents import Document, ReadReport
from qa.corpora.readers import SUPPORTED_SUFFIXES, read_corpus

__all__ = ["Document", "ReadReport", "SUPPORTED_SUFFIXES", "read_corpus"]
