"""qa.int8: static int8 on OpenVINO for the reader and the passage encoder, calibrated once and cached."""

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'qa[openvino]')")
pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'qa[openvino]')")

from qa.reader import Reader  # noqa: E402
from qa import int8  # noqa: E402

PASSAGES = ["the eiffel tower was built in 1889 by the company of gustave eiffel in paris",
            "photosynthesis in plants turns light energy into oxygen with chlorophyll"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, and 32 of the packaged calibration pairs (a tiny model needs no more)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pairs = int8.calibration_pairs()[:32]
    monkeypatch.setattr(int8, "calibration_pairs", lambda: pairs)
    return tmp_path / "qa" / int8.CACHE_FOLDER


def test_the_packaged_calibration_pairs_are_questions_with_paragraphs():
    pairs = int8.calibration_pairs()
    assert len(pairs) == 256
    assert all(isinstance(q, str) and isinstance(p, str) and q.strip() and len(p) > len(q) for q, p in pairs)


def test_an_int8_reader_runs_quantised_on_openvino_close_to_fp32_and_is_cached(tiny_models, cache, capsys):
    fp32 = Reader(tiny_models["reader"], precision="fp32", backend="openvino")
    quantised = Reader(tiny_models["reader"], precision="int8")  # auto: OpenVINO where NNCF is installed
    assert quantised.backend == "openvino" and quantised.precision == "int8"
    assert capsys.readouterr().out == ""  # NNCF prints its progress bars on stdout: never into qa ask --json
    entries = list(cache.iterdir())
    assert len(entries) == 1 and (entries[0] / int8.MODEL_FILE).is_file() and (entries[0] / "info.json").is_file()
    import openvino as ov

    model = ov.Core().read_model(entries[0] / int8.MODEL_FILE)
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())  # activations quantised, not only converted
    for arrays in fp32._feature_arrays([("who built the eiffel tower", p) for p in PASSAGES], 8):
        for expected, got in zip(fp32._compiled(arrays), quantised._compiled(arrays)):
            assert got.shape == expected.shape
            assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.95
    assert quantised.read("who built the eiffel tower", PASSAGES)


def test_a_cached_int8_reader_is_read_not_quantised_again(tiny_models, cache, monkeypatch):
    first = Reader(tiny_models["reader"], precision="int8", backend="openvino")
    with monkeypatch.context() as patched:
        patched.setattr(int8, "quantize", lambda *args: pytest.fail("quantised again"))
        again = Reader(tiny_models["reader"], precision="int8", backend="openvino")
    arrays = first._feature_arrays([("who built it", PASSAGES[0])], 8)[0]
    for a, b in zip(first._compiled(arrays), again._compiled(arrays)):
        np.testing.assert_array_equal(a, b)
    # other windows are another calibration: quantised again, into an entry of their own
    Reader(tiny_models["reader"], precision="int8", backend="openvino", max_length=128, stride=32)
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_cache_entry_is_quantised_again(tiny_models, cache, caplog):
    Reader(tiny_models["reader"], precision="int8", backend="openvino")
    (entry,) = cache.iterdir()
    (entry / int8.MODEL_FILE).write_text("<net broken")
    reader = Reader(tiny_models["reader"], precision="int8", backend="openvino")
    assert "cannot be read" in caplog.text
    assert reader.read("who built the eiffel tower", PASSAGES)
    assert [p.name for p in cache.iterdir()] == [entry.name] and "FakeQuantize" in (entry / int8.MODEL_FILE).read_text()
    (entry / int8.MODEL_FILE).unlink()  # an entry that lost its model: made again too, not left to quantise every load
    Reader(tiny_models["reader"], precision="int8", backend="openvino")
    assert [p.name for p in cache.iterdir()] == [entry.name] and (entry / int8.MODEL_FILE).is_file()



def test_an_int8_passage_encoder_embeds_close_to_fp32_and_questions_stay_in_float(tiny_models, cache):
    from qa.embedding import Embedder, load_question_encoder

    fp32 = Embedder(str(tiny_models["encoder"]), precision="fp32", backend="openvino", batch_size=4)
    quantised = Embedder(str(tiny_models["encoder"]), precision="int8", batch_size=4)  # auto: OpenVINO where NNCF is installed
    assert quantised.backend == "openvino" and quantised.precision == "int8" and quantised._bert.precision == "int8"
    assert len(list(cache.iterdir())) == 1
    cosines = np.sum(fp32.encode(PASSAGES * 3) * quantised.encode(PASSAGES * 3), axis=1)
    assert cosines.min() > 0.95
    assert load_question_encoder(str(tiny_models["encoder"]), precision="int8").precision != "int8"  # one short pass: float


def test_without_nncf_int8_embeds_in_autos_precision_and_says_so(tiny_models, cache, monkeypatch, caplog):
    from qa.embedding import Embedder

    monkeypatch.setattr("qa.device.nncf_installed", lambda: False)
    embedder = Embedder(str(tiny_models["encoder"]), precision="int8", batch_size=4)
    assert embedder.backend == "torch" and embedder.precision in ("fp32", "bf16")
    assert not cache.exists()
    assert f"the passages are embedded in {embedder.precision}, not int8: it needs OpenVINO and NNCF" in caplog.text
    monkeypatch.setattr("qa.device.nncf_installed", lambda: True)  # installed, but torch asked for: the warning says that instead
    caplog.clear()
    embedder = Embedder(str(tiny_models["encoder"]), precision="int8", backend="torch", batch_size=4)
    assert embedder.precision in ("fp32", "bf16")
    assert f"the passages are embedded in {embedder.precision}, not int8: torch has no int8 passage encoder" in caplog.text


def test_qa_index_precision_int8_builds_an_index_that_answers(tiny_models, cache, tmp_path):
    import json

    from typer.testing import CliRunner

    from qa.cli import app

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(PASSAGES):
        (corpus / f"{i}.txt").write_text(text)
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(corpus), "-i", str(tmp_path / "index"), "--embedding-model", str(tiny_models["encoder"]),
                                 "--precision", "int8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dense"]["precision"] == "int8"
    assert len(list(cache.iterdir())) == 1  # the passage encoder, quantised
    asked = runner.invoke(app, ["ask", "who built the eiffel tower", "-i", str(tmp_path / "index"), "--reader", str(tiny_models["reader"]),
                                "--retriever", "dense", "--json"])
    assert asked.exit_code == 0, asked.output
    assert len(json.loads(asked.stdout)["passages"]) == 2


def test_a_model_nncf_cannot_quantise_is_an_error_to_act_on(tiny_models, cache, monkeypatch):
    import nncf

    from qa.errors import QAError

    def fails(*args, **kwargs):
        raise RuntimeError("unsupported graph")

    monkeypatch.setattr(nncf, "quantize", fails)
    with pytest.raises(QAError, match="NNCF could not quantise this model to int8.*--backend torch"):
        Reader(tiny_models["reader"], precision="int8", backend="openvino")
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-cached
