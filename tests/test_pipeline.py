"""`Pipeline.ask_batch`, the one question path: hits at a depth, passages read at top-k, one
encoder and one reader call per batch, warnings per question."""

import pytest

from qa.errors import QAError
from qa.pipeline import Pipeline

from conftest import errors_in_threads

QUESTIONS = ["Who built the tower in Paris?", "What do plants release?", "Where did the cat sit?"]


@pytest.fixture(scope="module")
def pipeline(tiny_index, tiny_models):
    return Pipeline(tiny_index, reader=str(tiny_models["reader"]), precision="fp32", question_batch=2)


def test_hits_go_to_the_depth_and_only_the_top_k_are_read(pipeline):
    predictions = pipeline.ask_batch(QUESTIONS, top_k=2, answers=2, depth=5)
    assert [p.question for p in predictions] == QUESTIONS
    for prediction in predictions:
        assert len(prediction.hits) == 5 and [h.rank for h in prediction.hits] == [1, 2, 3, 4, 5]
        assert all(h.bm25 is not None and h.cosine is not None for h in prediction.hits)
        read = {h.passage.idx for h in prediction.hits[:2]}
        assert 1 <= len(prediction.answers) <= 2 and all(a.passage.idx in read for a in prediction.answers)
        assert all(s.passage < 2 for s in prediction.reading.spans)
        assert set(prediction.seconds) == {"retrieve", "read", "total"}


def test_a_batch_makes_one_encoder_call_and_one_reader_call(pipeline, monkeypatch):
    encoded, read = [], []
    encode, read_batch = pipeline.index.question_encoder.encode, pipeline.reader.read_batch
    monkeypatch.setattr(pipeline.index.question_encoder, "encode", lambda texts: encoded.append(list(texts)) or encode(texts))
    monkeypatch.setattr(pipeline.reader, "read_batch", lambda q, p, n_best: read.append(len(p)) or read_batch(q, p, n_best))
    pipeline.ask_batch(QUESTIONS, top_k=3)  # question_batch=2: two batches
    assert encoded == [QUESTIONS[:2], QUESTIONS[2:]] and read == [6, 3]


def test_ask_is_a_batch_of_one(pipeline):
    one = pipeline.ask(QUESTIONS[1], top_k=3, answers=2)
    batch = pipeline.ask_batch([QUESTIONS[1]], top_k=3, answers=2)[0]
    assert [(a.text, a.score) for a in one.answers] == [(a.text, a.score) for a in batch.answers]
    assert [h.passage.idx for h in one.hits] == [h.passage.idx for h in batch.hits]


def test_only_the_long_question_is_warned_about(pipeline):
    long = "tower " * 300 + "?"
    predictions = pipeline.ask_batch([QUESTIONS[0], long], top_k=2)
    assert predictions[0].warnings == [] and "longer than the reader takes" in predictions[1].warnings[0]


@pytest.mark.parametrize("questions, top_k, message", [([" "], 3, "the question is empty"), (QUESTIONS, 0, "top-k must be at least 1")])
def test_bad_questions_and_top_k_are_errors(pipeline, questions, top_k, message):
    with pytest.raises(QAError, match=message):
        pipeline.ask_batch(questions, top_k=top_k)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_threads_may_share_one_pipeline(tiny_index, tiny_models, backend):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'qa[openvino]')")
    shared = Pipeline(tiny_index, reader=str(tiny_models["reader"]), precision="fp32", backend=backend, question_batch=2)
    alone = [[(a.text, round(a.score, 4)) for a in shared.ask(q, top_k=3).answers] for q in QUESTIONS]
    got = {}

    def ask(thread: int) -> None:
        for round_ in range(5):
            question = (thread + round_) % len(QUESTIONS)
            answers = [(a.text, round(a.score, 4)) for a in shared.ask(QUESTIONS[question], top_k=3).answers]
            got.setdefault(question, []).append(answers)

    assert errors_in_threads(ask, 4) == []
    assert all(answers == alone[question] for question, runs in got.items() for answers in runs)


def test_a_pipeline_that_abstains_does_so_when_no_passage_is_close_to_the_question(tiny_index, tiny_models):
    from qa.pipeline import off_collection
    from qa.reader import Abstention

    never = Abstention(float("-inf"), "question")  # the reader's rule alone never abstains
    assert Pipeline(tiny_index, reader=str(tiny_models["reader"]), abstention=never).min_cosine is None  # a model not measured
    question = "Who built the Eiffel Tower?"
    cosines = [h.cosine for h in Pipeline(tiny_index, reader=str(tiny_models["reader"]), abstention=None).ask(question).hits]
    above = Pipeline(tiny_index, reader=str(tiny_models["reader"]), abstention=never, min_cosine=max(cosines) + 1e-3)
    prediction = above.ask(question)
    assert prediction.answers == [] and prediction.abstained and prediction.off_topic
    assert prediction.as_dict()["off_topic"] is True
    assert above.rank_answers(prediction.hits, prediction.reading) == []  # ranking again agrees
    at = Pipeline(tiny_index, reader=str(tiny_models["reader"]), abstention=never, min_cosine=max(cosines))
    prediction = at.ask(question)
    assert prediction.answers and not prediction.abstained and not prediction.off_topic
    assert not off_collection([], 1.0) and not off_collection(prediction.hits, None)
    with pytest.raises(QAError, match="min_cosine"):
        Pipeline(tiny_index, reader=str(tiny_models["reader"]), min_cosine="high")
