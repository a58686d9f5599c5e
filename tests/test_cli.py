"""The CLI end to end with tiny models: output shapes, and errors as one line with no traceback."""

import io
import json
import re

import pytest
from typer.testing import CliRunner

from qa.cli import app

from conftest import SMALL_CORPUS

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def cli_index(tiny_models, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("cli-corpus")
    for rel, content in SMALL_CORPUS.items():
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(content)
    (corpus / "bad.txt").write_bytes(b"\xff\xfe bad")
    out = tmp_path_factory.mktemp("cli") / "index"
    result = invoke("index", corpus, "--index", out, "--embedding-model", tiny_models["encoder"], "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_index_json_summary(cli_index):
    out, summary = cli_index
    assert summary["index"] == str(out)
    assert summary["counts"]["documents"] == 4
    assert summary["corpus"]["skipped"] == {"invalid UTF-8": 1}


def test_index_text_summary_and_warnings(tiny_models, write_files, tmp_path):
    corpus = write_files({**SMALL_CORPUS, "bad.json": "{"})
    result = invoke("index", corpus, "-i", tmp_path / "i", "--embedding-model", tiny_models["encoder"])
    assert result.exit_code == 0, result.output
    assert "Indexed 4 documents as 4 passages" in result.stdout and "Files read: 3; skipped: 1 invalid JSON (line 1)" in result.stdout
    assert re.search(r"\(passages embedded in\s+(fp32|bf16)\)", result.stdout)  # the manifest's dense.precision
    assert "warning: skipped bad.json: invalid JSON (line 1)" in result.stderr


def test_index_add_include_exclude_and_the_lock_from_the_cli(tiny_models, write_files, tmp_path):
    from qa.fsutil import directory_lock

    corpus = write_files({**SMALL_CORPUS, "drafts/skip.md": "# Draft\n\nNot yet."})
    out = tmp_path / "i"
    result = invoke("index", corpus, "-i", out, "--embedding-model", tiny_models["encoder"], "--exclude", "drafts/*")
    assert result.exit_code == 0 and "Indexed 4 documents" in result.stdout, result.output
    more = write_files({"more/new.txt": "Fresh news.", "more/old.md": SMALL_CORPUS["eiffel.md"]})
    result = invoke("index", more / "more", "-i", out, "--add", "--include", "*.txt")
    assert result.exit_code == 0, result.output
    assert "Added 1 documents as 1 passages" in result.stdout and "now 5 documents" in result.stdout
    with directory_lock(out):
        result = invoke("index", more / "more", "-i", out, "--add")
    assert result.exit_code == 1 and "another process is writing the index" in result.stderr


def test_ask_json_with_a_reader(cli_index, tiny_models):
    out, _ = cli_index
    result = invoke("ask", "Who built the Eiffel Tower?", "-i", out, "--reader", tiny_models["reader"], "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == "Who built the Eiffel Tower?" and data["retriever"] == "hybrid"
    assert len(data["passages"]) == 3 and 1 <= len(data["answers"]) <= 3
    assert all(isinstance(p["bm25"], float) and -1.0 <= p["cosine"] <= 1.0 for p in data["passages"])  # the evidence ranked on
    for answer in data["answers"]:
        assert answer["context"][answer["start"] : answer["end"]] == answer["answer"]
        assert answer["end"] - answer["start"] == answer["document_end"] - answer["document_start"]
    scores = [a["score"] for a in data["answers"]]
    assert scores == sorted(scores, reverse=True)


def test_ask_questions_from_a_file_answers_each_as_asked_alone(cli_index, tiny_models, tmp_path):
    out, _ = cli_index
    questions = ["Who built the Eiffel Tower?", "What do plants release?", "Where does the dog bark?"]
    path = tmp_path / "questions.txt"
    path.write_text(f"# questions\n{questions[0]}\n\n  {questions[1]}  \n# skipped\n{questions[2]}\n")
    common = ["-i", out, "--reader", tiny_models["reader"], "-k", "3", "--json"]
    result = invoke("ask", "--questions", path, *common)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # JSON Lines: one object a question
    assert [line["question"] for line in lines] == questions
    for line, question in zip(lines, questions):  # read in one batch, answered as when asked alone
        alone = json.loads(invoke("ask", question, *common).stdout)
        assert [(a["answer"], a["document"], a["start"]) for a in line["answers"]] == [
            (a["answer"], a["document"], a["start"]) for a in alone["answers"]]
        assert [a["score"] for a in line["answers"]] == pytest.approx([a["score"] for a in alone["answers"]], abs=1e-3)
    piped = runner.invoke(app, [str(a) for a in ["ask", "-f", "-", *common]], input="\n".join(questions))
    assert [json.loads(line)["question"] for line in piped.stdout.splitlines()] == questions
    text = invoke("ask", "-f", path, "-i", out, "--reader", tiny_models["reader"], "-k", "3", "-n", "1").stdout
    assert [line for line in text.splitlines() if line.startswith("Q")] == [f"Q{i}. {q}" for i, q in enumerate(questions, 1)]


@pytest.mark.parametrize(
    "args, says",
    [([], "not neither"), (["Who?", "--questions", "{empty}"], "not both"), (["-f", "{empty}"], "no questions in"),
     (["-f", "{missing}"], "cannot read the questions")],
)
def test_ask_needs_one_question_or_one_file_of_them(cli_index, tmp_path, args, says):
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    names = {"empty": tmp_path / "empty.txt", "missing": tmp_path / "missing.txt"}
    result = invoke("ask", *[a.format(**names) for a in args], "-i", cli_index[0])
    assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_ask_text_output_for_each_retriever(cli_index, tiny_models, retriever):
    out, _ = cli_index
    result = invoke("ask", "engineer Eiffel tower", "-i", out, "--reader", tiny_models["reader"], "--retriever", retriever)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1. ") and "score" in result.stdout


def test_ask_without_a_reader_shows_passages_and_says_how_to_get_one(cli_index, monkeypatch):
    monkeypatch.delenv("QA_READER", raising=False)
    monkeypatch.setattr("qa.reader.reader.default_reader_path", lambda: None)
    out, _ = cli_index
    result = invoke("ask", "Who built the Eiffel Tower?", "-i", out, "--retriever", "bm25")
    assert result.exit_code == 0, result.output
    assert "No reader available: pass --reader" in result.stderr
    assert result.stdout.startswith("1. eiffel.md")


def test_index_path_from_the_environment(cli_index, tiny_models, tmp_path, write_files):
    out, _ = cli_index
    result = invoke("ask", "cat", "--reader", tiny_models["reader"], "--json", env={"QA_INDEX": str(out)})
    assert result.exit_code == 0, result.output
    assert {p["document"] for p in json.loads(result.stdout)["passages"]} <= {"cat-1", "dog-1", "eiffel.md", "plants.txt"}
    other = tmp_path / "other-index"  # a second index: the environment decides which one answers
    corpus = write_files({"nile.txt": "The Nile is the longest river in Africa."})
    assert invoke("index", corpus, "--index", other, "--embedding-model", tiny_models["encoder"]).exit_code == 0
    result = invoke("ask", "Nile river", "--retriever", "bm25", "--json", env={"QA_INDEX": str(other), "QA_READER": str(tiny_models["reader"])})
    assert [p["document"] for p in json.loads(result.stdout)["passages"]] == ["nile.txt"]


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("qa ")


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", "   ", "-i", "{index}"], "the question is empty"),
        (["ask", "cat?", "-i", "{missing}"], "no index at"),
        (["ask", "cat?", "-i", "{index}", "--reader", "{missing}"], "does not exist"),
        (["index", "{missing}", "-i", "{tmp}/x"], "does not exist"),
        (["index", "{empty}", "-i", "{tmp}/x"], "no documents found"),
        (["index", "{empty}", "-i", "{tmp}/x", "--max-words", "5", "--overlap-words", "5"], "--overlap-words must be less"),
        (["index", "{empty}", "-i", "{tmp}/x", "--overlap-tokens", "200"], "--overlap-tokens must be less"),
        (["index", "{empty}", "-i", "{tmp}/x", "--max-words", "50", "--max-tokens", "50"], "give one of them"),
    ],
)
def test_errors_are_one_line_without_traceback(cli_index, tmp_path, args, message):
    out, _ = cli_index
    (tmp_path / "empty").mkdir()
    fill = {"index": out, "missing": tmp_path / "missing", "tmp": tmp_path, "empty": tmp_path / "empty"}
    result = invoke(*[a.format(**fill) for a in args])
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "args",
    [["ask", "q", "--retriever", "fuzzy"], ["ask", "q", "--top-k", "0"], ["frobnicate"]],
)
def test_bad_options_are_usage_errors(args):
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_ask_says_which_no_answer_it_is(capsys):
    """No answer by the cosine floor, by the reader's rule, or because nothing matched: three messages."""
    from qa.cli import ask

    base = {"reader": "r", "answers": [], "passages": [], "warnings": []}
    said = []
    for result in ({**base, "abstained": True, "off_topic": True}, {**base, "abstained": True, "off_topic": False},
                   {**base, "abstained": False}):
        ask.print_result(result)
        said.append(" ".join(capsys.readouterr().out.split()))
    assert said[0].startswith("No answer: none of the passages is close to this question")
    assert said[1].startswith("No answer: the reader judges that none of the passages it read answers")
    assert said[2].startswith("No answer: the index holds no passage that answers")


def test_ask_says_when_the_reader_abstains_and_always_answer_overrides_it(cli_index, tiny_models, tmp_path):
    import shutil

    from qa.reader.abstention import Abstention, save_abstention

    out, _ = cli_index
    reader = tmp_path / "reader"
    shutil.copytree(tiny_models["reader"], reader)
    save_abstention(reader, Abstention(float("inf"), "question"), {"tuned_on": "a test: abstain on everything"})
    result = invoke("ask", "Who built the Eiffel Tower?", "-i", out, "--reader", reader)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No answer: the reader judges that none of the passages it read answers")
    data = json.loads(invoke("ask", "Who built the Eiffel Tower?", "-i", out, "--reader", reader, "--json").stdout)
    assert data["answers"] == [] and data["abstained"] is True
    data = json.loads(invoke("ask", "Who built the Eiffel Tower?", "-i", out, "--reader", reader, "--json", "--always-answer").stdout)
    assert data["answers"] and data["abstained"] is False
    result = invoke("ask", "Who built the Eiffel Tower?", "--always-answer", "--server", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "--always-answer applies to answering here" in result.stderr
    (reader / "abstention.json").write_text("{\"scope\": \"question\"}")
    result = invoke("ask", "Who built the Eiffel Tower?", "-i", out, "--reader", reader)
    assert result.exit_code == 1 and "is not a valid abstention rule" in result.stderr and "Traceback" not in result.output


def test_ask_marks_the_answer_in_its_passage_with_or_without_styles(monkeypatch):
    """In a terminal the answer is highlighted; where styles do not show (a pipe, a file), it is
    marked **like this**, so that the passage still says where the answer is."""
    from rich.console import Console

    from qa.cli import ask

    context = "The first effective polio vaccine was developed by Jonas Salk at the University of Pittsburgh."
    start = context.index("Jonas Salk")
    answer = {"answer": "Jonas Salk", "score": 1.0, "document": "polio.md", "title": "Polio", "context": context,
              "start": start, "end": start + len("Jonas Salk")}
    result = {"reader": "r", "answers": [answer], "passages": [], "warnings": []}
    plain = Console(file=io.StringIO(), highlight=False, soft_wrap=True)
    monkeypatch.setattr(ask, "out", plain)
    ask.print_result(result)
    assert "developed by **Jonas Salk** at the University" in plain.file.getvalue()
    styled = Console(file=io.StringIO(), highlight=False, soft_wrap=True, force_terminal=True, color_system="standard")
    monkeypatch.setattr(ask, "out", styled)
    ask.print_result(result)
    shown = styled.file.getvalue()
    assert "**" not in shown and "Jonas Salk\x1b[0m at the University" in shown and "\x1b[1;30;43mJonas Salk" in shown
