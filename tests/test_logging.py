"""Logs under the `qa` logger: quiet by default, `-v`, `--log-level` and `$QA_LOG_LEVEL` to see
them; what they say of devices, precisions, models, the index and builds. And --precision
reaches the question encoder as well as the reader."""

import logging

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.device import default_precision, pick_device
from qa.pipeline import Pipeline

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_qa_logger():
    logger = logging.getLogger("qa")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


def ask(tiny_index, tiny_models, *options, env=None):
    return runner.invoke(
        app, [*options, "ask", "Who built the tower?", "--index", str(tiny_index), "--reader", str(tiny_models["reader"])], env=env
    )


def test_quiet_by_default(tiny_index, tiny_models, monkeypatch):
    monkeypatch.delenv("QA_LOG_LEVEL", raising=False)
    result = ask(tiny_index, tiny_models)
    assert result.exit_code == 0, result.output
    assert " INFO " not in result.stderr


@pytest.mark.parametrize("options, env", [(["-v"], None), (["--log-level", "info"], None), ([], {"QA_LOG_LEVEL": "INFO"})])
def test_verbose_says_what_was_chosen_loaded_and_opened(options, env, tiny_index, tiny_models, monkeypatch):
    monkeypatch.delenv("QA_LOG_LEVEL", raising=False)
    result = ask(tiny_index, tiny_models, *options, env=env)
    assert result.exit_code == 0, result.output
    log = result.stderr
    device = pick_device()  # cuda on a GPU machine
    precision = default_precision(device)
    assert f"the reader runs in {precision} on {device}" in log
    assert f"loaded the reader {tiny_models['reader']} on {device} in {precision}" in log
    assert f"loaded the embedding model {tiny_models['encoder']} on {device} in {precision}" in log
    assert f"opened the index at {tiny_index}" in log and "generation 1" in log and "IndexFlatIP" in log


def test_an_unknown_log_level_is_an_error(tiny_index, tiny_models):
    result = ask(tiny_index, tiny_models, "--log-level", "loud")
    assert result.exit_code == 1 and "unknown log level 'loud'" in result.stderr


def test_build_stages_are_timed(tiny_models, write_files, tmp_path, monkeypatch):
    monkeypatch.delenv("QA_LOG_LEVEL", raising=False)
    corpus = write_files({"a.txt": "The cat sat on the mat.", "b.txt": "Paris is the capital of France."})
    result = runner.invoke(
        app, ["-v", "index", str(corpus), "--index", str(tmp_path / "idx"), "--embedding-model", str(tiny_models["encoder"])]
    )
    assert result.exit_code == 0, result.output
    for stage in ("read, split and embedded 2 documents", "wrote the BM25 index", "built the dense index (IndexFlatIP)", "generation 1"):
        assert stage in result.stderr


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_precision_reaches_the_question_encoder(precision, tiny_index, tiny_models, monkeypatch):
    import qa.embedding

    used = []
    autocast = qa.embedding.autocast
    monkeypatch.setattr(qa.embedding, "autocast", lambda device, p=None: used.append(p) or autocast(device, p))
    pipeline = Pipeline(tiny_index, reader=str(tiny_models["reader"]), precision=precision, device="cpu")  # int8 is CPU-only
    pipeline.ask("Who built the tower?")
    encoder = "auto" if precision == "int8" else precision  # int8 is the reader's alone
    expected = default_precision("cpu") if encoder == "auto" else encoder
    assert pipeline.reader.precision == precision
    assert pipeline.index.question_encoder.precision == expected and used and set(used) == {expected}
