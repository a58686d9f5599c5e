"""`rank_answers` on hand-made hits and spans: evidence fusion order, repeated and overlapping
spans, the number of answers, abstention and the hits it may use."""

import functools

import numpy as np
import pytest

from qa.errors import QAError
from qa.index import Passage
from qa.pipeline import rank_answers
from qa.reader import Abstention, AnswerSpan, ReaderOutput
from qa.retriever import Hit

TEXTS = [
    "Gustave Eiffel built the tower in Paris in 1889.",
    "The tower was designed by Maurice Koechlin, an engineer of Eiffel's company.",
    "Paris is the capital of France.",
]


def hit(i: int, bm25: float, cosine: float) -> Hit:
    passage = Passage(i, TEXTS[i], 0, len(TEXTS[i]), f"doc{i}", f"Doc {i}", f"doc{i}.txt")
    return Hit(passage, score=1.0 / (i + 1), rank=i + 1, bm25=bm25, cosine=cosine)


def span(passage: int, text: str, score: float, occurrence: int = 0) -> AnswerSpan:
    start = -1
    for _ in range(occurrence + 1):
        start = TEXTS[passage].index(text, start + 1)
    return AnswerSpan(passage, start, start + len(text), text, score)


def window_span(passages: list[Passage], passage: int, text: str, score: float) -> AnswerSpan:
    """The first ``text`` in ``passages[passage]``, as the reader would give it."""
    start = passages[passage].text.index(text)
    return AnswerSpan(passage, start, start + len(text), text, score)


def output(*spans: AnswerSpan, null: float = -100.0, starts=(-50.0,) * 3, ends=(-50.0,) * 3) -> ReaderOutput:
    return ReaderOutput(sorted(spans, key=lambda s: -s.score), np.full(len(TEXTS), null, np.float32),
                        np.array(starts, np.float32), np.array(ends, np.float32))


def texts(answers) -> list[str]:
    return [a.text for a in answers]


def test_retrieval_evidence_can_overturn_the_reader_and_the_score_is_the_sum():
    hits = [hit(0, bm25=0.0, cosine=0.0), hit(1, bm25=2.0, cosine=0.5)]
    reading = output(span(0, "Gustave Eiffel", 5.0), span(1, "Maurice Koechlin", 4.0))
    assert texts(rank_answers(hits, reading, 2, bm25_weight=0.0, dense_weight=0.0)) == ["Gustave Eiffel", "Maurice Koechlin"]
    ranked = rank_answers(hits, reading, 2, bm25_weight=1.5, dense_weight=20.0)
    assert texts(ranked) == ["Maurice Koechlin", "Gustave Eiffel"]
    assert ranked[0].score == pytest.approx(4.0 + 1.5 * 2.0 + 20.0 * 0.5) and ranked[0].reader_score == 4.0
    assert ranked[0].passage.doc_id == "doc1" and ranked[0].retriever_rank == 2
    assert TEXTS[1][ranked[0].start : ranked[0].end] == "Maurice Koechlin"


def test_a_repeated_answer_counts_once_and_an_overlapping_span_is_dropped():
    hits = [hit(0, 0.0, 0.0), hit(1, 0.0, 0.0), hit(2, 0.0, 0.0)]
    reading = output(
        span(0, "Paris", 9.0),
        span(2, "Paris", 8.0),  # the same text in another passage: a repeat
        span(0, "Paris in 1889", 7.0),  # overlaps the better "Paris" in passage 0
        span(0, "1889", 6.0),  # overlaps only the dropped span: kept
        span(2, "capital of France", 5.0),
    )
    assert texts(rank_answers(hits, reading, 5)) == ["Paris", "1889", "capital of France"]
    assert texts(rank_answers(hits, reading, 2)) == ["Paris", "1889"]  # at most `answers`


def test_text_that_differs_only_in_case_and_spacing_is_a_repeat():
    hits = [hit(0, 0.0, 0.0), hit(1, 0.0, 0.0)]
    reading = output(span(0, "the tower", 3.0), span(1, "tower", 2.5), AnswerSpan(1, 4, 9, "Tower", 2.0))
    assert texts(rank_answers(hits, reading, 3)) == ["the tower", "tower"]


def test_spans_of_passages_beyond_the_hits_are_ignored():
    reading = output(span(2, "France", 9.0), span(0, "1889", 1.0))
    assert texts(rank_answers([hit(0, 0.0, 0.0), hit(1, 0.0, 0.0)], reading, 3)) == ["1889"]


def test_abstention_compares_the_best_span_with_its_no_answer_score():
    hits = [hit(0, 0.0, 0.0)]
    reading = output(span(0, "1889", 4.0), null=1.0)  # margin 3
    assert texts(rank_answers(hits, reading, 1, abstention=Abstention(2.5))) == ["1889"]
    assert rank_answers(hits, reading, 1, abstention=Abstention(3.5)) == []
    assert texts(rank_answers(hits, reading, 1, abstention=None)) == ["1889"]
    assert rank_answers(hits, output(), 1) == []  # nothing read, nothing answered


def test_question_scope_weighs_the_no_answer_of_all_the_passages_read_together():
    hits = [hit(0, 0.0, 0.0), hit(1, 0.0, 0.0), hit(2, 0.0, 0.0)]
    # [CLS] start logits 1, 1, 0 and end logits 0, 0, 1: the question's no-answer score is
    # log(e + e + 1) + log(1 + 1 + e), whatever each passage's own (here very low) null score
    reading = output(span(0, "1889", 4.0), null=-100.0, starts=(1.0, 1.0, 0.0), ends=(0.0, 0.0, 1.0))
    null = np.log(2 * np.e + 1) + np.log(2 + np.e)
    assert reading.margin() == pytest.approx(4.0 - null, rel=1e-6)
    assert texts(rank_answers(hits, reading, 1, abstention=Abstention(4.0 - null - 0.01, "question"))) == ["1889"]
    assert rank_answers(hits, reading, 1, abstention=Abstention(4.0 - null + 0.01, "question")) == []
    assert texts(rank_answers(hits, reading, 1, abstention=Abstention(4.0 - null + 0.01))) == ["1889"]  # per passage: margin 104
    # over the first two passages only (a smaller top-k), the third's [CLS] does not count
    assert reading.margin(2) == pytest.approx(4.0 - np.log(2 * np.e) - np.log(2), rel=1e-6)
    assert reading.select([1, 0]).margin() == pytest.approx(reading.margin(2), rel=1e-6)  # the same pairs, reordered
    assert reading.select([1, 2]).margin() == -np.inf  # no span among them
    assert reading.margin(scope="passage") == pytest.approx(104.0)
    with pytest.raises(QAError, match="unknown no-answer scope"):
        Abstention(1.0, "document")


def test_hits_without_evidence_are_refused():
    reading = output(span(0, "1889", 1.0))
    with pytest.raises(QAError, match="evidence"):
        rank_answers([Hit(hit(0, 0, 0).passage, 1.0, 1)], reading, 1)


def test_summing_lets_an_answer_found_in_several_passages_overtake_a_single_better_span():
    hits = [hit(0, 0.0, 0.0), hit(1, 0.0, 0.0), hit(2, 0.0, 0.0)]
    reading = output(span(2, "France", 5.0), span(0, "Paris", 4.5), span(2, "Paris", 4.2))
    assert texts(rank_answers(hits, reading, 2)) == ["France", "Paris"]
    summed = rank_answers(hits, reading, 2, aggregate="sum")
    assert texts(summed) == ["Paris", "France"]
    assert summed[0].score == pytest.approx(np.logaddexp(4.5, 4.2)) and summed[0].passage.doc_id == "doc0"  # its best span
    assert summed[1].score == pytest.approx(5.0)  # alone: as without aggregation
    with pytest.raises(QAError, match="unknown answer aggregation"):
        rank_answers(hits, reading, 1, aggregate="mean")


def test_a_span_overlapping_a_better_answer_in_another_window_of_the_same_document_is_dropped():
    document = "Among these, IL-6 is the cytokine most associated with respiratory failure. TNF-alpha is another."
    first, second = document[:75], document[13:]  # two windows sharing "IL-6 is the cytokine ..."
    windows = [Passage(0, first, 0, 75, "doc", "Doc", "doc.txt"), Passage(1, second, 13, len(document), "doc", "Doc", "doc.txt")]
    other = Passage(2, second, 13, len(document), "other", "Other", "other.txt")  # the same text in another document
    passages = [*windows, other]
    hits = [Hit(p, score=1.0, rank=i + 1, bm25=0.0, cosine=0.0) for i, p in enumerate(passages)]
    at = functools.partial(window_span, passages)
    reading = ReaderOutput(
        [at(0, "IL-6", 9.0), at(1, "IL-6 is the cytokine", 8.0), at(2, "IL-6 is the cytokine", 7.5), at(1, "TNF-alpha", 7.0)],
        np.full(3, -100.0, np.float32), np.full(3, -50.0, np.float32), np.full(3, -50.0, np.float32),
    )
    ranked = rank_answers(hits, reading, 3)
    # the second window's span covers the first window's answer in the document: dropped; the same
    # text in another document overlaps nothing and repeats no answer shown: kept, as is a span of the
    # second window elsewhere in the document
    assert texts(ranked) == ["IL-6", "IL-6 is the cytokine", "TNF-alpha"]
    assert [a.passage.doc_id for a in ranked] == ["doc", "other", "doc"]
    tnf = document.index("TNF")
    assert [(a.document_start, a.document_end) for a in ranked] == [(13, 17), (13, 33), (tnf, tnf + 9)]


def test_summing_counts_a_place_read_in_two_overlapping_windows_once():
    document = "The tower was built by Gustave Eiffel. Paris hosted the fair. Gustave Eiffel also built bridges."
    first, second = document[:62], document[39:]  # both windows hold "Paris hosted the fair."
    passages = [Passage(0, first, 0, 62, "doc", "Doc", "doc.txt"), Passage(1, second, 39, len(document), "doc", "Doc", "doc.txt")]
    hits = [Hit(p, score=1.0, rank=i + 1, bm25=0.0, cosine=0.0) for i, p in enumerate(passages)]
    at = functools.partial(window_span, passages)
    reading = ReaderOutput(
        sorted([at(0, "Paris", 5.0), at(1, "Paris", 4.9), at(0, "Gustave Eiffel", 4.8), at(1, "Gustave Eiffel", 4.7)], key=lambda s: -s.score),
        np.full(2, -100.0, np.float32), np.full(2, -50.0, np.float32), np.full(2, -50.0, np.float32),
    )
    summed = rank_answers(hits, reading, 2, aggregate="sum")
    # "Paris" is one place read twice: its best score alone; "Gustave Eiffel" is two places: summed
    assert texts(summed) == ["Gustave Eiffel", "Paris"]
    assert summed[0].score == pytest.approx(np.logaddexp(4.8, 4.7)) and summed[1].score == pytest.approx(5.0)
