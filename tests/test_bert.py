"""qa.bert computes what transformers and sentence-transformers compute, for the models it takes,
and refuses the others (which then load as before)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from qa import bert
from qa.embedding import Embedder, QuestionEncoder, load_question_encoder
from qa.reader import Reader

PAIRS = [
    ("Who built the tower?", "The tower was built by Gustave Eiffel in 1889 for the fair."),
    ("When?", "In 1889."),
    ("What is long?", " ".join(["the river is long and the valley is wide"] * 40)),  # read in windows
    ("Where is the river?", "The river runs from the hills to the sea, past the old mill and the tower."),
]


def _transformers_inputs(folder, pairs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return tokenizer([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True, max_length=128, return_tensors="pt")


def test_qa_logits_equal_transformers(tiny_models):
    from transformers import BertForQuestionAnswering

    folder = tiny_models["reader"]
    config = bert.read_config(folder, "BertForQuestionAnswering")
    assert config is not None and config.hidden_size == 32
    ours = bert.load_qa(folder, config)
    theirs = BertForQuestionAnswering.from_pretrained(folder).eval()
    inputs = _transformers_inputs(folder, PAIRS)  # padded: the mask must hide the padding
    with torch.inference_mode():
        start, end = ours(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"])
        out = theirs(**inputs)
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(start[mask], out.start_logits[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(end[mask], out.end_logits[mask], atol=1e-5, rtol=1e-5)


def test_the_reader_reads_the_same_spans_with_and_without_transformers(tiny_models, monkeypatch):
    import qa.reader.reader as reader_module

    questions, passages = [q for q, _ in PAIRS], [p for _, p in PAIRS]
    ours = Reader(tiny_models["reader"], precision="fp32", max_length=64, stride=16)
    assert isinstance(ours.model, bert.BertForQA)
    monkeypatch.setattr(reader_module, "_load_bert", lambda source: None)
    theirs = Reader(tiny_models["reader"], precision="fp32", max_length=64, stride=16)
    assert not isinstance(theirs.model, bert.BertForQA)
    a, b = ours.read_batch(questions, passages, n_best=5), theirs.read_batch(questions, passages, n_best=5)
    assert [(s.passage, s.start, s.end, s.text) for s in a.spans] == [(s.passage, s.start, s.end, s.text) for s in b.spans]
    np.testing.assert_allclose([s.score for s in a.spans], [s.score for s in b.spans], atol=1e-4)
    np.testing.assert_allclose(a.null_scores, b.null_scores, atol=1e-4)
    assert {s.passage for s in a.spans} == set(range(len(PAIRS)))


def sentence_transformers_vectors(folder, texts) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)


def test_question_vectors_equal_sentence_transformers(tiny_models):
    texts = ["Who built the tower?", "  when was the tower built  ", "the river " * 300]  # truncated like the passages
    encoder = load_question_encoder(str(tiny_models["encoder"]), precision="fp32")
    assert isinstance(encoder, QuestionEncoder)
    expected = sentence_transformers_vectors(tiny_models["encoder"], texts)
    np.testing.assert_allclose(encoder.encode(texts), expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(encoder.encode(texts), axis=1), 1, atol=1e-5)


@pytest.mark.integration
def test_minilm_question_vectors_equal_sentence_transformers(minilm_path):
    questions = ["Which NFL team represented the AFC at Super Bowl 50?", "What cytokines are elevated in severe COVID-19?"]
    encoder = load_question_encoder(str(minilm_path), precision="fp32")
    assert isinstance(encoder, QuestionEncoder)
    expected = sentence_transformers_vectors(minilm_path, questions)
    cosines = (encoder.encode(questions) * expected).sum(1)
    assert cosines.min() > 0.99999


def test_tokenising_on_threads_gives_the_same_vectors_in_order(tiny_models, monkeypatch):
    import threading

    from qa.embedding import _mean_pooled_bert

    monkeypatch.setattr("qa.embedding.TOKENIZE_PIECE", 2)  # a batch of 5: pieces of 2, 2 and 1, padded together
    texts = [f"passage {i}: " + "the river runs past the tower " * (1 + 7 * i % 40) for i in range(23)]  # some truncated
    folder = str(tiny_models["encoder"])
    threaded = QuestionEncoder(folder, folder, *_mean_pooled_bert(folder), precision="fp32", batch_size=5, tokenize_threads=3)
    tokenised_on = set()
    arrays = QuestionEncoder._arrays
    monkeypatch.setattr(QuestionEncoder, "_arrays", lambda self, part: tokenised_on.add(threading.current_thread().name) or arrays(self, part))
    np.testing.assert_allclose(threaded.encode(texts), sentence_transformers_vectors(folder, texts), atol=1e-5)
    assert tokenised_on and all(name.startswith("qa-tokenize") for name in tokenised_on)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_passages_are_tokenised_ahead_and_embedded_by_qa_bert(tiny_models):
    texts = [f"passage {i}: " + "the river runs past the tower " * (1 + 7 * i % 40) for i in range(300)]
    embedder = Embedder(str(tiny_models["encoder"]), device="cuda", batch_size=128)
    assert embedder._bert is not None and embedder._bert._tokenizing is not None
    cosines = (embedder.encode(texts) * sentence_transformers_vectors(tiny_models["encoder"], texts)).sum(1)
    assert cosines.min() > 0.999  # fp16 on the GPU against fp32 on the CPU


def test_unsupported_models_load_the_usual_way(tiny_models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_models["encoder"], folder)
    config = json.loads((folder / "config.json").read_text())
    assert bert.read_config(folder) is not None
    assert bert.read_config(folder, "BertForQuestionAnswering") is None  # an encoder, not a reader
    for change in ({"position_embedding_type": "relative_key"}, {"hidden_act": "relu"}, {"model_type": "roberta"}):
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        assert bert.read_config(folder) is None, change
    (folder / "config.json").write_text(json.dumps(config))
    # a sentence-transformers pipeline with a Dense layer after pooling is not reproduced
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    assert load_question_encoder.__module__ == "qa.embedding"
    from qa.embedding import _mean_pooled_bert

    assert _mean_pooled_bert(str(folder)) is None
    (folder / "modules.json").write_text(json.dumps(json.loads((folder / "modules.json").read_text())[:2]))
    assert _mean_pooled_bert(str(folder)) is not None
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True}))
    assert _mean_pooled_bert(str(folder)) is None
    (folder / "tokenizer.json").unlink()
    assert bert.read_config(folder) is None


def test_damaged_weights_are_a_clear_error(tiny_models, tmp_path):
    from qa.errors import QAError

    folder = tmp_path / "reader"
    shutil.copytree(tiny_models["reader"], folder)
    (folder / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(QAError, match="reader .* not a usable model"):
        Reader(folder)


def test_openvino_embeds_what_sentence_transformers_embeds(tiny_models, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'qa[openvino]')")
    monkeypatch.setattr("qa.openvino_runtime.PAD_MULTIPLE", 8)  # inputs padded to a multiple of 8 tokens
    from qa.errors import QAError

    texts = [f"passage {i}: " + "the river runs past the tower " * (1 + 7 * i % 40) for i in range(21)]  # several lengths, some truncated
    expected = Embedder(str(tiny_models["encoder"]), precision="fp32", backend="torch").encode(texts)
    for streams in (1, 3):  # one batch at a time, or several at once on OpenVINO's streams: the same vectors, in order
        embedder = Embedder(str(tiny_models["encoder"]), precision="fp32", backend="openvino", batch_size=4, streams=streams)
        assert embedder.backend == "openvino" and embedder._bert.streams == streams
        widths, compiled = [], embedder._bert._compiled
        real_map = compiled.map
        compiled.map = lambda batches: real_map([widths.append(b[0].shape[1]) or b for b in batches])
        np.testing.assert_allclose(embedder.encode(texts), expected, atol=1e-5)  # padded for OpenVINO: the same vectors
        assert widths and all(w % 8 == 0 or w == embedder._bert.max_tokens for w in widths)
    one_thread = Embedder(str(tiny_models["encoder"]), precision="fp32", backend="openvino", batch_size=4, streams=2, threads=1)
    assert one_thread._bert.streams == 1  # a Ray actor's one CPU: one stream on one thread
    np.testing.assert_allclose(one_thread.encode(texts), expected, atol=1e-5)
    # CLS pooling is not what qa.bert computes: refused when asked for, sentence-transformers on torch under auto
    folder = tmp_path / "cls"
    shutil.copytree(tiny_models["encoder"], folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True}))
    with pytest.raises(QAError, match="mean-pooled BERT models"):
        Embedder(str(folder), precision="fp32", backend="openvino")
    monkeypatch.setattr("qa.embedding.choose_backend", lambda *args: "openvino")  # what auto picks on a bf16 CPU
    assert Embedder(str(folder), precision="fp32").backend == "torch"


def test_embedding_through_qa_bert_does_without_sentence_transformers(tiny_models, monkeypatch):
    import importlib.util
    import sys

    folder = str(tiny_models["encoder"])
    texts = ["the tower was built in 1889", "plants need light " * 200]
    expected = Embedder(folder, precision="bf16", backend="torch")  # sentence-transformers under bf16 autocast
    assert expected._bert is None
    reference = sentence_transformers_vectors(tiny_models["encoder"], texts)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # importing it now fails
    with pytest.raises(ImportError):
        Embedder(folder, precision="bf16", backend="torch")
    backends = ["torch"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    for backend in backends:  # fp32 on torch, and OpenVINO: qa.bert, the same vectors
        embedder = Embedder(folder, precision="fp32", backend=backend)
        assert (embedder.dim, embedder.max_tokens) == (expected.dim, expected.max_tokens)
        assert embedder.tokenizer.encode(texts[1]).ids == expected.tokenizer.encode(texts[1]).ids
        assert len(embedder.tokenizer.encode(texts[1]).ids) > embedder.max_tokens  # the splitter's copy does not truncate
        np.testing.assert_allclose(embedder.encode(texts), reference, atol=1e-5)
        embedder.batch_size = 1  # what benchmarks sweep: qa.bert's encoder follows
        assert embedder._bert.batch_size == 1
        np.testing.assert_allclose(embedder.encode(texts), reference, atol=1e-5)


def test_a_tokenizers_release_that_drops_the_rest_of_a_long_passage_is_refused(tiny_models, monkeypatch):
    import types

    from qa.errors import QAError

    load_tokenizer = bert.load_tokenizer
    bert.check_windows(load_tokenizer(tiny_models["reader"]))  # the installed release cuts a long pair up to its end

    class FirstWindowOnly:  # what 0.23.1 and 0.23.2 give: the overflowing windows are missing
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def __getattr__(self, name):
            return getattr(self.tokenizer, name)

        @classmethod
        def from_str(cls, text):
            return cls(type(load_tokenizer(tiny_models["reader"])).from_str(text))

        def encode(self, *pair):
            first = self.tokenizer.encode(*pair)
            return types.SimpleNamespace(offsets=first.offsets, sequence_ids=first.sequence_ids, overflowing=[])

    with pytest.raises(QAError, match="drops the windows of long passages"):
        bert.check_windows(FirstWindowOnly(load_tokenizer(tiny_models["reader"])))
    monkeypatch.setattr(bert, "load_tokenizer", lambda folder: FirstWindowOnly(load_tokenizer(folder)))
    with pytest.raises(QAError, match="tokenizers>=0.23.3"):
        Reader(tiny_models["reader"], device="cpu")
