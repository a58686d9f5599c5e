"""Issue 15, class by class: qa never deletes or overwrites what it did not write, answers bad
input with one-line errors, and keeps no silent surprises. (Faults injected into running
processes and damaged indexes are in test_fault_injection.py.)"""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_CORPUS
from typer.testing import CliRunner

from qa.cli import app
from qa.corpora import ReadReport, read_corpus
from qa.errors import QAError
from qa.indexer import EmbeddingOptions, PassageOptions, build_index
from qa.index import layout
from qa.pipeline import Pipeline
from qa.retriever import Index

runner = CliRunner()


def qa(*args, **env):
    return runner.invoke(app, [str(a) for a in args], env={"HF_HUB_OFFLINE": "1", **env})


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _build(corpus, out, tiny_models, **kw):
    return build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_words=12, overlap_words=4), **kw)


# 1. qa index replaces only folders it wrote ------------------------------------------------

def test_a_project_folder_with_a_manifest_json_is_never_deleted(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    project = tmp_path / "w"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text('{"name": "app"}')
    (project / "src" / "app.js").write_text("code")
    line = one_line_error(qa("index", corpus, "--index", project, "--embedding-model", tiny_models["encoder"]))
    assert str(project) in line and "not a qa index" in line
    assert (project / "src" / "app.js").read_text() == "code"
    assert json.loads((project / "manifest.json").read_text()) == {"name": "app"}
    # even a manifest that claims the format is not enough: the folder holds files qa never writes
    (project / "manifest.json").write_text(json.dumps({"format": "qa-index", "format_version": 1}))
    with pytest.raises(QAError, match="also holds files qa did not write"):
        _build(corpus, project, tiny_models)
    assert (project / "src" / "app.js").read_text() == "code"


def test_an_index_with_a_file_added_by_the_user_is_not_replaced(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    out = tmp_path / "idx"
    _build(corpus, out, tiny_models)
    assert layout.marker_version(out) == layout.FORMAT_VERSION
    (out / "notes.txt").write_text("mine")
    with pytest.raises(QAError, match=r"notes\.txt"):
        _build(corpus, out, tiny_models)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    _build(corpus, out, tiny_models)  # a pure qa index is replaced


def test_an_index_of_qa_0_1_without_the_marker_is_replaced_but_a_newer_format_is_not(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    out = tmp_path / "idx"
    _build(corpus, out, tiny_models)
    (out / layout.MARKER).unlink()  # as qa 0.1.0 wrote it: the manifest names the format
    assert _build(corpus, out, tiny_models).manifest["generation"] == 2
    (out / layout.MARKER).write_text(f"qa-index {layout.NEWEST_VERSION + 1}\n")
    with pytest.raises(QAError, match="newer than this qa"):
        _build(corpus, out, tiny_models)


def test_an_empty_folder_and_a_file_as_index_path(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    (tmp_path / "empty").mkdir()
    _build(corpus, tmp_path / "empty", tiny_models)
    (tmp_path / "file").write_text("x")
    with pytest.raises(QAError, match="is a file"):
        _build(corpus, tmp_path / "file", tiny_models)


def test_index_dot_is_a_one_line_error(tiny_models, write_files, tmp_path, monkeypatch):
    corpus = write_files(SMALL_CORPUS)
    (tmp_path / "keep.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    line = one_line_error(qa("index", corpus, "--index", ".", "--embedding-model", tiny_models["encoder"]))
    assert "would contain the corpus" in line or "not a qa index" in line
    assert (tmp_path / "keep.txt").read_text() == "keep"


# 2. qa train reader --output ------------------------------------------------------------------

def test_train_refuses_a_folder_it_did_not_write_unless_overwrite(tmp_path):
    from qa.reader.saved import CARD_MARK
    from qa.reader.train import check_output

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# My project\n")
    line = one_line_error(qa("train", "reader", "--train", tmp_path / "missing.json", "--base", "x", "--output", repo))
    assert str(repo) in line and "--overwrite" in line
    assert (repo / "README.md").read_text() == "# My project\n"
    check_output(tmp_path / "new")  # new and empty folders are fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty")
    (repo / "README.md").write_text(f"# Extractive QA reader\n\n{CARD_MARK}\n")  # a qa model: may be retrained
    check_output(repo)
    from qa.fsutil import share_like_create

    private = repo / "private.key"
    private.write_text("secret")
    private.chmod(0o600)
    os.utime(private, (0, 0))  # written long before: not the model's
    share_like_create(repo, written_since=1_000_000)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # with --overwrite the check is skipped: the run goes on (here to the missing training file)
    (repo / "README.md").write_text("# My project\n")
    result = qa("train", "reader", "--train", tmp_path / "missing.json", "--base", "x", "--output", repo, "--overwrite")
    assert "--overwrite" not in result.output


# 3. an index replaced under an open Pipeline ---------------------------------------------------

def test_a_pipeline_reopens_an_index_replaced_under_it(tiny_models, write_files, tmp_path):
    out = tmp_path / "idx"
    _build(write_files(SMALL_CORPUS), out, tiny_models)
    pipe = Pipeline(out, reader=None, retriever="bm25")
    assert pipe.ask("Eiffel tower Paris").hits[0].passage.doc_id == "eiffel.md"
    other = tmp_path / "other"
    other.mkdir()
    (other / "nile.txt").write_text("The Nile is the longest river in Africa.")
    _build(other, out, tiny_models)
    prediction = pipe.ask("Nile river Africa")
    assert [h.passage.doc_id for h in prediction.hits] == ["nile.txt"]
    assert pipe.index.generation == 2


def test_the_cosine_floor_follows_an_index_replaced_under_the_pipeline(tiny_models, write_files, tmp_path, monkeypatch):
    import shutil

    from qa.reader import Abstention

    out, other_model = tmp_path / "idx", tmp_path / "another-encoder"
    shutil.copytree(tiny_models["encoder"], other_model)
    monkeypatch.setattr("qa.pipeline.MIN_COSINE", {str(tiny_models["encoder"]): 0.5})
    _build(write_files(SMALL_CORPUS), out, tiny_models)
    pipe = Pipeline(out, reader=str(tiny_models["reader"]), abstention=Abstention(float("-inf"), "question"))
    assert pipe.min_cosine == 0.5
    build_index(write_files(SMALL_CORPUS), out, embedding=EmbeddingOptions(str(other_model)),
                passages=PassageOptions(max_words=12, overlap_words=4))
    pipe.ask("Eiffel tower Paris")  # reopens the index, now another model's: no floor measured for it
    assert pipe.index.generation == 2 and pipe.min_cosine is None


def test_an_index_object_refuses_parts_of_a_replaced_build(tiny_models, write_files, tmp_path):
    out = tmp_path / "idx"
    _build(write_files(SMALL_CORPUS), out, tiny_models)
    index = Index(out)
    assert index.is_current()
    _build(write_files(SMALL_CORPUS), out, tiny_models)
    assert not index.is_current()
    with pytest.raises(QAError, match="replaced after it was opened"):
        index.bm25
    assert Index(out).is_current()


# 5. long questions ---------------------------------------------------------------------------

def test_a_question_longer_than_the_reader_takes_is_cut_with_a_warning(tiny_index, tiny_models):
    pipe = Pipeline(tiny_index, reader=str(tiny_models["reader"]))
    question = "who designed the tower " * 200  # ~1,000 tokens: the tokenizer used to panic
    prediction = pipe.ask(question)
    assert prediction.answers and len(prediction.warnings) == 1 and "first 128 tokens" in prediction.warnings[0]
    spans = pipe.reader.read_pairs([question, "who?"], ["the tower in paris", "the cat sat"])
    assert spans
    result = qa("ask", question, "--index", tiny_index, "--reader", tiny_models["reader"], "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["warnings"]


# 8. options are checked before any work --------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dense-index", "foo"], "unknown dense index 'foo'"),
        (["--device", "banana"], "unknown device 'banana'"),
        (["--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_index_options_fail_before_reading(args, message, write_files, tmp_path, monkeypatch):
    from qa.indexer import options

    monkeypatch.setattr(options, "read_corpus", lambda *a, **k: pytest.fail("read the corpus"))
    line = one_line_error(qa("index", write_files(SMALL_CORPUS), "--index", tmp_path / "idx", *args))
    assert message in line


def test_data_must_be_a_folder(tmp_path):
    (tmp_path / "dev.json").write_text("{}")
    line = one_line_error(qa("evaluate", "squad-gold", "--data", tmp_path / "dev.json"))
    assert "expects the folder" in line


# 9. messages that say what is wrong -------------------------------------------------------------

def test_a_reader_folder_that_is_not_a_model_is_named_as_such(tiny_index, tmp_path):
    (tmp_path / "notes").mkdir()
    line = one_line_error(qa("ask", "who?", "--index", tiny_index, "--reader", tmp_path / "notes"))
    assert "not a usable model" in line and "Hub" not in line


def test_a_relative_embedding_model_is_recorded_absolute(tiny_models, write_files, tmp_path, monkeypatch):
    corpus = write_files(SMALL_CORPUS)
    monkeypatch.chdir(tiny_models["encoder"].parent)
    build_index(corpus, tmp_path / "idx", embedding=EmbeddingOptions("./encoder"), passages=PassageOptions(max_words=12, overlap_words=4))
    monkeypatch.chdir(tmp_path)
    index = Index(tmp_path / "idx")
    assert index.manifest["dense"]["model"] == str(tiny_models["encoder"].resolve())
    assert index.question_encoder.dim == 32  # opens from another directory


def test_include_that_matches_nothing_says_so(tiny_models, write_files, tmp_path):
    line = one_line_error(qa("index", write_files(SMALL_CORPUS), "--index", tmp_path / "i", "--include", "*.pdf",
                             "--embedding-model", tiny_models["encoder"]))
    assert "matches --include *.pdf" in line


def test_an_unexpected_error_is_one_line_with_exit_status_2(tiny_index, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr("qa.pipeline.Pipeline.ask_batch", broken)
    line = one_line_error(qa("ask", "who?", "--index", tiny_index), code=2)
    assert "unexpected RuntimeError: something unforeseen" in line and "QA_DEBUG=1" in line
    assert isinstance(qa("ask", "who?", "--index", tiny_index, QA_DEBUG="1").exception, RuntimeError)


def test_a_broken_pipe_that_is_not_the_output_is_an_unexpected_error(tiny_index, monkeypatch):
    """Only a closed stdout ends quietly (test_fault_injection.py); a broken pipe elsewhere is a bug."""
    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("qa.pipeline.Pipeline.ask_batch", broken)
    assert "unexpected BrokenPipeError" in one_line_error(qa("ask", "who?", "--index", tiny_index), code=2)


# 10. no silent surprises ----------------------------------------------------------------------

def test_symlinked_folders_are_followed_once_and_counted(write_files, tmp_path):
    root = write_files({"a/one.txt": "One.", "b/two.txt": "Two."})
    (root / "link-to-b").symlink_to(root / "b")
    (root / "b" / "loop").symlink_to(root)
    report = ReadReport()
    docs = sorted(d.id for d in read_corpus(root, report))
    assert docs == ["a/one.txt", "b/two.txt"]
    assert report.linked_folders == 2
    assert sum(n for reason, n in report.skipped.items() if "reached again" in reason) == 2


def test_unreadable_folders_are_warned_about(write_files, monkeypatch):
    root = write_files({"a/one.txt": "One.", "secret/two.txt": "Two."})
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "secret":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = ReadReport()
    assert [d.id for d in read_corpus(root, report)] == ["a/one.txt"]
    assert report.skipped == {"unreadable folder (Permission denied)": 1}
    assert report.warnings == ["skipped secret: unreadable folder (Permission denied)"]


def test_add_skips_the_same_files_reached_by_another_path(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    out = tmp_path / "idx"
    _build(corpus, out, tiny_models)
    copy = tmp_path / "copy" / "deeper"
    copy.mkdir(parents=True)
    (copy / "eiffel.md").write_text(SMALL_CORPUS["eiffel.md"])  # other id (path), same content
    result = build_index(tmp_path / "copy", out, add=True)
    assert result.new_passages == 0
    assert result.report.skipped == {"same content already in the index under another id": 1}


def test_answers_with_newlines_stay_on_one_line(monkeypatch):
    from qa.cli import ask, common
    from qa.index.store import Passage
    from qa.pipeline import Answer, Prediction

    passage = Passage(0, "Built by\nGustave\nEiffel in 1889.", 0, 30, "doc\nid", "Title\nTwo", "src")
    answer = Answer("Gustave\nEiffel", 1.0, 1.0, passage, 9, 23, 1)
    printed = []
    monkeypatch.setattr(common.out, "print", lambda *a, **k: printed.extend(str(x) for x in a))
    ask.print_result(Prediction("q", [answer], [], "reader", "bm25").as_dict())
    assert all("\n" not in line for line in printed)
    assert "Gustave Eiffel" in printed[0] and "Title Two" in printed[0]


def test_index_folders_follow_the_umask_and_no_lock_file_stays(tiny_models, write_files, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "idx"
        _build(write_files(SMALL_CORPUS), out, tiny_models)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in out.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "idx"]


def test_bm25_written_in_blocks_equals_bm25s(monkeypatch, tmp_path):
    """The streaming BM25 writer gives bm25s's own arrays, whatever its block size."""
    import bm25s

    from qa.index import bm25 as bm25_module
    from qa.index.analysis import analyze_corpus

    rng = np.random.default_rng(0)
    words = "river city tower paris engineer built light energy plant oxygen cat dog mat the of".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 30))) + f" n{i % 7}" for i in range(500)] + ["the of"]
    reference = bm25s.BM25(k1=1.2, b=0.75)
    reference.index(analyze_corpus(texts), show_progress=False)
    for block in (10**9, 100, 1):
        monkeypatch.setattr(bm25_module, "BLOCK_PAIRS", block)
        writer = bm25_module.BM25Writer(tmp_path / f"scratch{block}", 1.2, 0.75)
        for text in texts:
            writer.add(text)
        writer.write(tmp_path / f"bm25-{block}")
        loaded = bm25s.BM25.load(tmp_path / f"bm25-{block}", mmap=True)
        for key in ("data", "indices", "indptr"):
            assert np.array_equal(np.asarray(loaded.scores[key]), np.asarray(reference.scores[key])), (block, key)
        assert loaded.vocab_dict == reference.vocab_dict and loaded.scores["num_docs"] == len(texts)
        assert sorted(p.name for p in tmp_path.iterdir() if "scratch" in p.name) == []


def test_long_documents_split_block_by_block_as_whole(tiny_models):
    from qa import bert
    from qa.indexer.passages import split_token_windows, tokenizer_counter

    count = tokenizer_counter(bert.load_tokenizer(tiny_models["encoder"]))
    text = "The tower was built in 1889. Plants need light! " * 400 + "the cat sat on the mat " * 300
    whole = list(split_token_windows(text, count, 50, 10, block_words=10**9))
    for block in (1, 3, 64):
        assert list(split_token_windows(text, count, 50, 10, block_words=block)) == whole
