"""Question answering over an index: retrieve passages, then read answer spans from them."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from qa.citation import citation, link
from qa.errors import QAError
from qa.index import Index, Passage
from qa.index.where import Condition, parse_where, searchable_fields
from qa.reader import Abstention, AnswerSpan, Reader, ReaderOutput, resolve_reader
from qa.retriever import DEFAULT_RETRIEVER, Hit, make_retriever

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
"""Passages read per question."""
DEFAULT_ANSWERS = 3
"""Distinct answers returned per question."""
AGGREGATIONS = ("none", "sum")
"""How spans of the same text combine in :func:`rank_answers`."""
QUESTION_BATCH = 16
"""Questions whose passages :meth:`Pipeline.ask_batch` reads in one reader call (fewer, fuller
forward passes; memory bounded by this many questions' passages)."""

# Answer score = reader span score + BM25_WEIGHT * BM25 score + DENSE_WEIGHT * embedding cosine
# of the answer's passage (BERTserini-style evidence fusion). Chosen by
# benchmarks/tune_answer_fusion.py on 700 open-squad dev questions with the packaged reader and
# all-MiniLM-L6-v2, checked on 300 others; see docs/RESULTS.md.
BM25_WEIGHT = 1.5
DENSE_WEIGHT = 20.0

#: Below this best cosine between the question and the passages read, a pipeline that abstains
#: says the collection does not answer, whatever the reader finds: the question is about something
#: else. Per embedding model, where measured (benchmarks/retrieval_evidence.py, docs/READER.md,
#: "Off-collection questions"): all-MiniLM-L6-v2's is the 1st percentile of COVID-QA training
#: questions asked of their own articles, the lower of that and SQuAD's (0.381).
MIN_COSINE = {"sentence-transformers/all-MiniLM-L6-v2": 0.28}


@dataclass(frozen=True)
class Answer:
    """An answer span: ``text == passage.text[start:end]`` and, in the source document,
    ``document.text[passage.start + start : passage.start + end]``.

    ``score`` ranks answers: the reader's span score (``reader_score``) plus the weighted
    retrieval evidence for its passage.
    """

    text: str
    score: float
    reader_score: float
    passage: Passage
    start: int
    end: int
    retriever_rank: int
    metadata: dict[str, Any] = field(default_factory=dict)
    """The document's metadata as the corpus reader kept it (for CORD-19: authors, journal,
    publish_time, doi, pmcid, ...; see :mod:`qa.citation`)."""

    @property
    def document_start(self) -> int:
        return self.passage.start + self.start

    @property
    def document_end(self) -> int:
        return self.passage.start + self.end

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "score": self.score,
            "reader_score": self.reader_score,
            "document": self.passage.doc_id,
            "title": self.passage.title,
            "source": self.passage.source,
            "passage": self.passage.idx,
            "retriever_rank": self.retriever_rank,
            "start": self.start,
            "end": self.end,
            "document_start": self.document_start,
            "document_end": self.document_end,
            "context": self.passage.text,
            "metadata": self.metadata,
            "citation": citation(self.metadata),
            "link": link(self.metadata),
        }


@dataclass
class Prediction:
    """The result of one question: ranked answers (empty without a reader) and the passages read."""

    question: str
    answers: list[Answer]
    hits: list[Hit]
    reader: str | None
    retriever: str
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reading: ReaderOutput | None = field(default=None, repr=False)
    """The reader's spans over the passages read (``hits[:top_k]``), so that answers can be
    ranked again over fewer of them (:meth:`Pipeline.rank_answers`); None without a reader."""
    abstained: bool = False
    """True when the pipeline judged that the passages do not answer (``answers`` empty): by the
    reader's rule, or because none of them is close to the question (``off_topic``)."""
    off_topic: bool = False
    """True when no passage read came within the pipeline's ``min_cosine`` of the question."""
    where: list[str] = field(default_factory=list)
    """The conditions the documents searched met (``FIELD OP VALUE``; none: the whole index)."""
    searched: int | None = None
    """How many passages were searched: those of the documents that meet ``where`` (None: all)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "where": self.where,
            "searched_passages": self.searched,
            "warnings": self.warnings,
            "reader": self.reader,
            "retriever": self.retriever,
            "answers": [a.as_dict() for a in self.answers],
            "abstained": self.abstained,
            "off_topic": self.off_topic,
            "passages": [
                {"rank": h.rank, "score": h.score, "bm25": h.bm25, "cosine": h.cosine, **h.passage.as_dict()} for h in self.hits
            ],
            "seconds": self.seconds,
        }


class Pipeline:
    """Retriever + reader over one index.

    ``reader`` is a :class:`Reader`, a model path or hub id, or None for the default
    (``$QA_READER``, then the packaged reader); when none is available, :meth:`ask` returns
    the retrieved passages and no answers. ``bm25_weight`` and ``dense_weight`` weigh the
    passage's BM25 score and embedding cosine into each answer's score. ``abstention`` is when
    the pipeline says the passages do not answer (no answers): ``"reader"`` (the default), the
    reader's own rule if its folder has one (``abstention.json``); an :class:`Abstention`; or
    None, always answer (see :mod:`qa.reader.abstention`). ``min_cosine``: a pipeline that abstains
    also does when no passage read has a cosine with the question of at least this; ``"index"``
    (the default), :data:`MIN_COSINE` for the index's embedding model (none for a model not
    measured), and only when ``abstention`` is not None; a number, always; None, never.
    ``precision`` is the reader's and the question encoder's, ``backend`` the reader's (see :class:`Reader`).
    ``question_batch`` bounds how many questions' passages :meth:`ask_batch` reads at once;
    ``aggregate`` is how spans of the same text combine (see :func:`rank_answers`). With
    ``reopen_replaced`` (the default), questions are answered from the index as it is on disk:
    one that ``qa index`` has replaced is opened again first (``qa serve`` turns this off and swaps
    a replaced index in itself, loaded off the question path). Threads may share one pipeline:
    each call's answers are those it would get alone.
    """

    def __init__(
        self,
        index: Index | str | Path | None = None,
        *,
        reader: Reader | str | os.PathLike | None = None,
        retriever: str = DEFAULT_RETRIEVER,
        device: str | None = None,
        bm25_weight: float = BM25_WEIGHT,
        dense_weight: float = DENSE_WEIGHT,
        abstention: Abstention | str | None = "reader",
        precision: str = "auto",
        backend: str = "auto",
        question_batch: int = QUESTION_BATCH,
        aggregate: str = "none",
        reopen_replaced: bool = True,
        min_cosine: float | str | None = "index",
    ):
        if question_batch < 1:
            raise QAError(f"question batch must be at least 1, got {question_batch}")
        self.bm25_weight = bm25_weight
        self.dense_weight = dense_weight
        self.question_batch = question_batch
        self.aggregate = aggregate
        self.reopen_replaced = reopen_replaced
        self._reopening = threading.Lock()
        self.index = index if isinstance(index, Index) else Index(index, device=device, precision=precision)
        self.retriever = make_retriever(self.index, retriever)
        if isinstance(reader, Reader):
            self.reader: Reader | None = reader
        else:
            resolved = resolve_reader(reader)
            self.reader = Reader(resolved, device=device, precision=precision, backend=backend) if resolved else None
        if abstention == "reader":
            abstention = self.reader.abstention if self.reader else None
        elif abstention is not None and not isinstance(abstention, Abstention):
            raise QAError(f"abstention is 'reader', an Abstention or None, got {abstention!r}")
        self.abstention: Abstention | None = abstention
        if min_cosine != "index" and min_cosine is not None and not isinstance(min_cosine, (int, float)):
            raise QAError(f"min_cosine is 'index', a number or None, got {min_cosine!r}")
        self._min_cosine = min_cosine
        if self.reader is not None or self.retriever.uses_vectors:
            _ = self.index.question_encoder  # load the question encoder now, not in the first question

    def ask(
        self, question: str, top_k: int = DEFAULT_TOP_K, answers: int = DEFAULT_ANSWERS, *, where: Sequence[str] = ()
    ) -> Prediction:
        """Answer ``question`` from the ``top_k`` best passages; at most ``answers`` distinct
        answers, best first. With ``where`` (conditions ``FIELD OP VALUE`` such as
        ``"publish_time>=2021"``, :mod:`qa.index.where`), only the documents that meet them all are
        searched."""
        return self.ask_batch([question], top_k, answers, where=where)[0]

    def ask_batch(
        self,
        questions: Sequence[str],
        top_k: int = DEFAULT_TOP_K,
        answers: int = DEFAULT_ANSWERS,
        *,
        depth: int | None = None,
        where: Sequence[str] = (),
    ) -> list[Prediction]:
        """Answer each question as :meth:`ask` does, :attr:`question_batch` at a time: their
        vectors are computed in one encoder call and all their passages read in one reader call.
        Each prediction's ``hits`` are the ``depth`` (default ``top_k``) best passages, of which
        the first ``top_k`` are read. Its ``seconds`` are its share of its batch's time."""
        conditions = parse_where(where)
        questions = [q.strip() for q in questions]
        if any(not q for q in questions):
            raise QAError("the question is empty: ask something, e.g. qa ask \"Who wrote Hamlet?\"")
        if top_k < 1:
            raise QAError(f"top-k must be at least 1, got {top_k}")
        depth = max(depth or top_k, top_k)
        if self.reopen_replaced:
            self.reopen_if_replaced()
        predictions: list[Prediction] = []
        for first in range(0, len(questions), self.question_batch):
            predictions += self._ask_group(questions[first : first + self.question_batch], top_k, answers, depth, conditions)
        return predictions

    def _ask_group(
        self, questions: list[str], top_k: int, answers: int, depth: int, conditions: tuple[Condition, ...]
    ) -> list[Prediction]:
        t0 = time.perf_counter()
        retriever = self.retriever  # one index for the whole group, even if another thread reopens it meanwhile
        within = _passages_where(retriever.index.store, conditions) if conditions else None
        if within is not None and not len(within):
            raise QAError(_nothing_meets(retriever.index.store, conditions))
        hit_lists = retriever.search_batch(questions, depth, evidence=self.reader is not None, within=within)
        t1 = time.perf_counter()
        warnings: list[list[str]] = [[] for _ in questions]
        readings: list[ReaderOutput | None] = [None] * len(questions)
        found: list[list[Answer]] = [[] for _ in questions]
        abstained = [False] * len(questions)
        off_topic = [False] * len(questions)
        if self.reader is not None:
            read_as = self.reader.fit_questions(questions)
            for i, (question, fitted) in enumerate(zip(questions, read_as)):
                if fitted != question:
                    warnings[i].append(
                        f"the question is longer than the reader takes: it read only its first "
                        f"{self.reader.max_question_tokens} tokens, up to {fitted[-40:]!r}"
                    )
            read = [hits[:top_k] for hits in hit_lists]
            floor = self._floor(retriever.index)
            output = self.reader.read_batch(
                [q for q, hits in zip(read_as, read) for _ in hits], [h.passage.text for hits in read for h in hits], n_best=answers
            )
            lo = 0
            for i, hits in enumerate(read):
                readings[i] = output.part(lo, lo + len(hits))
                lo += len(hits)
                found[i] = self.rank_answers(hits, readings[i], answers) if hits else []
                off_topic[i] = off_collection(hits, floor)
                abstained[i] = bool(hits) and not found[i] and (off_topic[i] or readings[i].abstains(self.abstention, len(hits)))
        if any(found):  # the answers' documents' metadata, in one look-up for the group
            metadata = retriever.index.store.metadata(a.passage.doc_id for answers in found for a in answers)
            found = [[replace(a, metadata=metadata.get(a.passage.doc_id, {})) for a in answers] for answers in found]
        t2 = time.perf_counter()
        n = len(questions)
        seconds = {"retrieve": (t1 - t0) / n, "read": (t2 - t1) / n, "total": (t2 - t0) / n}
        reader_name = self.reader.name if self.reader else None
        return [
            Prediction(q, a, hits, reader_name, retriever.name, dict(seconds), w, r, x, o, [str(c) for c in conditions],
                       None if within is None else len(within))
            for q, a, hits, w, r, x, o in zip(questions, found, hit_lists, warnings, readings, abstained, off_topic)
        ]

    @property
    def min_cosine(self) -> float | None:
        """The cosine floor in force (see ``min_cosine`` above), for the index as it is now: one
        that ``qa index`` replaced with another embedding model's gets that model's."""
        return self._floor(self.index)

    def _floor(self, index: Index) -> float | None:
        if self._min_cosine != "index":
            return self._min_cosine
        return _min_cosine(index.manifest["dense"]["model"]) if self.abstention is not None else None

    def reopen_if_replaced(self) -> bool:
        """Open the index again when ``qa index`` has replaced it since it was opened (so that
        passages are never read from one build and scored with another); True when it did."""
        with self._reopening:  # threads sharing the pipeline open it once
            if self.index.is_current():
                return False
            old = self.index
            self.index = old.reopen()
            self.retriever = make_retriever(self.index, self.retriever.name)
        logger.warning(
            "the index at %s was replaced (generation %s -> %s): reopened it", old.path, old.generation, self.index.generation
        )
        return True

    def rank_answers(self, hits: Sequence[Hit], reading: ReaderOutput, answers: int = DEFAULT_ANSWERS) -> list[Answer]:
        """:func:`rank_answers` with this pipeline's evidence weights and abstention rule."""
        return rank_answers(
            hits, reading, answers,
            bm25_weight=self.bm25_weight, dense_weight=self.dense_weight, abstention=self.abstention,
            aggregate=self.aggregate, min_cosine=self.min_cosine,
        )


def rank_answers(
    hits: Sequence[Hit],
    reading: ReaderOutput,
    answers: int = DEFAULT_ANSWERS,
    *,
    bm25_weight: float = BM25_WEIGHT,
    dense_weight: float = DENSE_WEIGHT,
    abstention: Abstention | None = None,
    aggregate: str = "none",
    min_cosine: float | None = None,
) -> list[Answer]:
    """At most ``answers`` answers from the spans read in ``hits``, best first.

    A span scores its reader score plus ``bm25_weight`` times its passage's BM25 score plus
    ``dense_weight`` times its passage's cosine (both carried by the hit). A span whose text
    (lower-cased, spaces collapsed) repeats a better answer's, or that overlaps a better answer
    in the same document (the same passage, or an overlapping window of it), is dropped. With
    ``abstention``, there are no answers when the reader's best span does not beat the no-answer
    score by its threshold (:meth:`ReaderOutput.abstains`); with ``min_cosine``, none when no hit's
    cosine reaches it (:func:`off_collection`).
    Spans of passages beyond ``len(hits)`` are ignored, so one reading of the top passages serves
    every smaller top-k.

    With ``aggregate="sum"``, spans with the same text are evidence for each other: an answer
    scores the log of the sum of ``exp(score)`` over its spans (in any passage; a place in a
    document read twice, in two overlapping windows, counts once), and is shown where its best span
    is. One span alone scores as without aggregation.
    """
    if aggregate not in AGGREGATIONS:
        raise QAError(f"unknown answer aggregation {aggregate!r}: choose from {', '.join(AGGREGATIONS)}")
    if any(h.bm25 is None or h.cosine is None for h in hits):
        raise QAError("ranking answers needs hits searched with evidence (their BM25 score and cosine)")
    bm25 = np.array([h.bm25 for h in hits], dtype=np.float32)
    dense = np.array([h.cosine for h in hits], dtype=np.float32)
    evidence = bm25_weight * bm25 + dense_weight * dense
    spans = [s for s in reading.spans if s.passage < len(hits)]
    ranked = sorted(spans, key=lambda s: -(s.score + evidence[s.passage]))
    totals: dict[str, float] = {}
    if aggregate == "sum":
        places: set[tuple[str, int, int]] = set()
        for span in ranked:  # best first, so a place read in two overlapping windows counts once, at its best
            place = _place(span, hits[span.passage])
            if place in places:
                continue
            places.add(place)
            key = _answer_key(span.text)
            totals[key] = float(np.logaddexp(totals.get(key, -np.inf), span.score + evidence[span.passage]))
        ranked.sort(key=lambda s: -totals[_answer_key(s.text)])  # stable: a text's best span stays first
    if reading.abstains(abstention, len(hits)) or off_collection(hits, min_cosine):
        return []
    found: list[Answer] = []
    seen: set[str] = set()
    for span in ranked:
        key = _answer_key(span.text)
        hit = hits[span.passage]
        if not key or key in seen or any(_overlap(span, hit, a) for a in found):
            continue
        seen.add(key)
        score = totals[key] if aggregate == "sum" else float(span.score + evidence[span.passage])
        found.append(Answer(span.text, score, span.score, hit.passage, span.start, span.end, hit.rank))
        if len(found) == answers:
            break
    return found


@functools.lru_cache(maxsize=4)
def _passages_where(store, conditions: tuple[Condition, ...]) -> np.ndarray:
    """The passages whose documents meet ``conditions``, kept for the next questions asked
    with the same ones (a store is read-only while open). Four sets at most: each is 8 bytes a
    passage chosen, 80 MB for 10 million."""
    return store.passages_where(conditions)


def _nothing_meets(store, conditions: tuple[Condition, ...]) -> str:
    """Why a search within ``conditions`` has nothing to search, naming a field no document has."""
    message = f"no document in the index meets {' and '.join(map(str, conditions))}: nothing to search"
    fields = set(searchable_fields(store.metadata_fields()))
    unknown = [c.field for c in conditions if c.field not in fields]
    if unknown:
        message += f"; no document has the field {unknown[0]!r} (the fields: {', '.join(sorted(fields))})"
    return message


def off_collection(hits: Sequence[Hit], min_cosine: float | None) -> bool:
    """True when there are hits and none has a cosine with the question of ``min_cosine`` or more."""
    return min_cosine is not None and bool(hits) and max(h.cosine if h.cosine is not None else -1.0 for h in hits) < min_cosine


def _min_cosine(model: str) -> float | None:
    """:data:`MIN_COSINE` of ``model`` (a hub id, or the folder one resolves to), or None."""
    if model in MIN_COSINE:
        return MIN_COSINE[model]
    folder = _folder(model)
    return next((floor for known, floor in MIN_COSINE.items() if folder is not None and _folder(known) == folder), None)


@functools.cache
def _folder(model: str) -> Path | None:
    """The local folder ``model`` (a hub id or a path) resolves to, or None (looked up once per name)."""
    from qa.hub import resolve_model

    try:
        return Path(resolve_model(model)).expanduser().resolve()
    except (QAError, OSError):
        return None


def _answer_key(text: str) -> str:
    """What makes two answers the same: their text lower-cased, spaces collapsed."""
    return " ".join(text.lower().split())


def _place(span: AnswerSpan, hit: Hit) -> tuple[str, int, int]:
    """Where ``span`` (read from ``hit``) is: its document and its offsets in the document's text."""
    return hit.passage.doc_id, hit.passage.start + span.start, hit.passage.start + span.end


def _overlap(span: AnswerSpan, hit: Hit, answer: Answer) -> bool:
    """True when ``span`` (read from ``hit``) shares characters of the same document with ``answer``:
    in the same passage, or in another window of the document that overlaps it."""
    document, start, end = _place(span, hit)
    return document == answer.passage.doc_id and start < answer.document_end and answer.document_start < end
