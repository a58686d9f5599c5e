"""Reader: extract answer spans from passages with a fine-tuned extractive QA model."""

from qa.reader.abstention import Abstention
from qa.reader.decode import best_spans
from qa.reader.reader import READER_ENV, Reader, ReaderOutput, AnswerSpan, default_reader_path, resolve_reader

__all__ = ["READER_ENV", "Abstention", "Reader", "ReaderOutput", "AnswerSpan", "best_spans", "default_reader_path", "resolve_reader"]
