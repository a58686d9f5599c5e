import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.errors import QAError
from qa.reader import Reader, resolve_reader


@pytest.fixture(scope="module")
def tiny_reader(tiny_models):
    return Reader(tiny_models["reader"], max_length=64, stride=16, batch_size=3)


PASSAGES = [
    "The Eiffel Tower in Paris was built by the company of the engineer Gustave Eiffel.",
    "Photosynthesis lets plants turn light energy into chemical energy.",
    "the cat sat on the mat " * 30,  # longer than one 64-token window: read with a stride
]


def test_spans_are_passage_text_at_their_offsets_and_sorted(tiny_reader):
    spans = tiny_reader.read("who built the tower?", PASSAGES, n_best=4)
    assert spans
    for span in spans:
        assert span.text == PASSAGES[span.passage][span.start : span.end]
        assert span.text.strip()
    scores = [s.score for s in spans]
    assert scores == sorted(scores, reverse=True)
    for p in range(len(PASSAGES)):
        assert sum(s.passage == p for s in spans) <= 4
    keys = [(s.passage, s.start, s.end) for s in spans]
    assert len(keys) == len(set(keys))


def test_long_passages_yield_spans_beyond_the_first_window(tiny_reader):
    spans = tiny_reader.read("where?", [PASSAGES[2]], n_best=200)
    assert max(s.end for s in spans) > 200  # first 64-token window covers < 150 characters


def test_batching_and_padding_do_not_change_scores(tiny_models, monkeypatch):
    # in float32, so that the only difference between the two runs is batching and padding
    a = Reader(tiny_models["reader"], max_length=64, stride=16, batch_size=1, precision="fp32")
    b = Reader(tiny_models["reader"], max_length=64, stride=16, batch_size=8, precision="fp32")
    q = "who built the tower?"
    sa = {(s.passage, s.start, s.end): s.score for s in a.read(q, PASSAGES, n_best=10_000)}
    sb = {(s.passage, s.start, s.end): s.score for s in b.read(q, PASSAGES, n_best=10_000)}
    assert sa.keys() == sb.keys()
    assert [sa[k] for k in sa] == pytest.approx([sb[k] for k in sa], abs=1e-4)


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc xyz,.é-\n") + ["Ж", "😀", "1"]), min_size=1, max_size=200))
def test_offsets_round_trip_on_random_text(tiny_reader, passage):
    for span in tiny_reader.read("what?", [passage], n_best=5):
        assert span.text == passage[span.start : span.end]


def test_empty_input_and_mismatched_lengths(tiny_reader):
    assert tiny_reader.read("q?", []) == []
    with pytest.raises(ValueError):
        tiny_reader.read_pairs(["q"], [])


def test_a_tokenizer_json_that_pads_does_not_cut_a_batchs_short_questions(tiny_models, tmp_path):
    """A reader loaded by transformers (here: a BERT qa.bert does not reproduce) whose tokenizer.json
    sets padding: its questions are still counted one by one, not padded to the batch's longest."""
    import shutil

    folder = tmp_path / "reader"
    shutil.copytree(tiny_models["reader"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    reader = Reader(folder, max_length=256, stride=16)
    assert type(reader.model).__module__ == "qa.reader.reader"  # transformers' model, wrapped
    short, long = "who built the tower?", " ".join(["tower"] * 300)
    fitted = reader.fit_questions([short, long])
    assert fitted[0] == short
    assert len(fitted[1]) < len(long)


def test_a_model_without_a_qa_head_is_refused(tiny_models):
    with pytest.raises(QAError, match="not an extractive question-answering model"):
        Reader(tiny_models["encoder"])


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(QAError, match="does not exist"):
        Reader(tmp_path / "missing" / "model")
    with pytest.raises(QAError, match="cannot load reader 'no-such-org/no-such-model'"):
        Reader("no-such-org/no-such-model")


def test_reader_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("QA_READER", raising=False)
    monkeypatch.setattr("qa.reader.reader.default_reader_path", lambda: None)
    assert resolve_reader(None) is None
    monkeypatch.setenv("QA_READER", "from-env")
    assert resolve_reader(None) == "from-env"
    assert resolve_reader("explicit") == "explicit"
    (tmp_path / "config.json").write_text(json.dumps({}))
    monkeypatch.delenv("QA_READER")
    monkeypatch.setattr("qa.reader.reader.default_reader_path", lambda: tmp_path)
    assert resolve_reader(None) == str(tmp_path)


def test_a_packaged_readers_name_stands_for_its_folder_unless_a_folder_of_that_name_is_here(monkeypatch, tmp_path):
    monkeypatch.delenv("QA_READER", raising=False)
    monkeypatch.chdir(tmp_path)
    packaged = {"default": tmp_path / "pkg" / "default", "biomed": None}
    monkeypatch.setattr("qa.reader.reader.packaged_reader_path", lambda name="default": packaged[name])
    monkeypatch.setattr("qa.reader.reader.default_reader_path", lambda: packaged["default"])
    assert resolve_reader("default") == str(packaged["default"])
    with pytest.raises(QAError, match="no packaged reader 'biomed'"):
        resolve_reader("biomed")
    monkeypatch.setenv("QA_READER", "biomed")
    with pytest.raises(QAError, match="no packaged reader 'biomed'"):
        resolve_reader(None)
    packaged["biomed"] = tmp_path / "pkg" / "biomed"
    assert resolve_reader(None) == resolve_reader("biomed") == str(packaged["biomed"])
    (tmp_path / "biomed").mkdir()  # a folder of that name here is what the user means
    assert resolve_reader("biomed") == "biomed"
    assert resolve_reader("org/biomed") == "org/biomed"  # a hub id is left to the hub


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_each_precision_reads_spans_close_to_fp32(tiny_models, precision):
    # on the CPU, where all three run (int8 is CPU-only; a GPU machine would pick CUDA)
    exact = Reader(tiny_models["reader"], precision="fp32", device="cpu").read("who built the tower?", PASSAGES, n_best=3)
    reader = Reader(tiny_models["reader"], precision=precision, device="cpu")
    assert reader.precision == precision
    spans = reader.read("who built the tower?", PASSAGES, n_best=3)
    assert len(spans) == len(exact)
    assert all(PASSAGES[s.passage][s.start : s.end] == s.text for s in spans)
    assert abs(spans[0].score - exact[0].score) < 0.5  # the tiny model's logits are small


def test_torch_int8_quantises_every_linear_layer_per_output_channel(tiny_models):
    reader = Reader(tiny_models["reader"], precision="int8", device="cpu", backend="torch")  # static int8 on OpenVINO: tests/test_int8.py
    assert reader._compiled is None
    assert not any(isinstance(m, torch.nn.Linear) for m in reader.model.modules())
    quantised = [m for m in reader.model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert quantised
    assert {m.weight().qscheme() for m in quantised} == {torch.per_channel_affine}


def test_converting_for_openvino_reports_nothing_to_openvino_telemetry(tiny_models, monkeypatch):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'qa[openvino]')")
    telemetry = pytest.importorskip("openvino_telemetry", reason="openvino_telemetry is not installed: nothing to report to")
    calls = []

    class Recording:  # what OpenVINO's converter would send, and to which tracker
        def __init__(self, *args, **kwargs):
            calls.append(("init", kwargs.get("tid")))

        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, args))

    monkeypatch.setattr(telemetry, "Telemetry", Recording)
    reader = Reader(tiny_models["reader"], max_length=64, stride=16, precision="fp32", backend="openvino")
    assert reader.backend == "openvino" and reader.read_batch(["who built the tower?"], PASSAGES[:1]).spans
    assert calls == []
    from openvino.tools.ovc import convert_impl

    assert convert_impl.tm is telemetry  # put back after converting


def test_unknown_or_impossible_precisions_are_clear_errors(tiny_models):
    with pytest.raises(QAError, match="unknown precision"):
        Reader(tiny_models["reader"], precision="fp8")
    with pytest.raises(QAError, match="fp16 needs a CUDA device"):
        Reader(tiny_models["reader"], precision="fp16", device="cpu")


def test_openvino_reads_the_same_spans_and_scores_as_torch(tiny_models, monkeypatch):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'qa[openvino]')")
    monkeypatch.setattr("qa.openvino_runtime.PAD_MULTIPLE", 8)  # windows padded to a multiple of 8 tokens
    torch_reader = Reader(tiny_models["reader"], max_length=64, stride=16, precision="fp32", backend="torch")
    questions = ["who built the tower?", "what do plants need?", "where?"]
    expected = torch_reader.read_batch(questions, PASSAGES, n_best=50)
    for streams in (1, 2):  # batches one after another, or two at once on OpenVINO's streams (batch 1: one window each)
        openvino_reader = Reader(tiny_models["reader"], max_length=64, stride=16, precision="fp32", backend="openvino",
                                 batch_size=1, streams=streams)
        assert (torch_reader.backend, openvino_reader.backend, openvino_reader._compiled.streams) == ("torch", "openvino", streams)
        widths, compiled = [], openvino_reader._compiled
        real_map = compiled.map
        compiled.map = lambda batches: real_map([widths.append(b[0].shape[1]) or b for b in batches])
        got = openvino_reader.read_batch(questions, PASSAGES, n_best=50)  # three lengths, the last in several windows
        assert widths and all(w % 8 == 0 or w == 64 for w in widths)  # padded for OpenVINO's kept kernels
        assert (openvino_reader._compiled._queue is not None) == (streams > 1)  # the windows, one a batch, ran on the streams
        assert {(s.passage, s.start, s.end) for s in got.spans} == {(s.passage, s.start, s.end) for s in expected.spans}
        scores = {(s.passage, s.start, s.end): s.score for s in expected.spans}
        assert [s.score for s in got.spans] == pytest.approx([scores[(s.passage, s.start, s.end)] for s in got.spans], abs=1e-4)
        for field in ("null_scores", "null_starts", "null_ends"):
            assert getattr(got, field) == pytest.approx(getattr(expected, field), abs=1e-4)
