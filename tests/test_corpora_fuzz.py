"""Fuzzing the corpus readers (issue 15): no file content, nesting or encoding can abort a read.
Every file either gives documents or is skipped with a counted reason."""

import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.corpora import ReadReport, read_corpus

SUFFIXES = [".txt", ".md", ".html", ".pdf", ".json", ".json.gz", ".jsonl", ".jsonl.gz"]
ENCODINGS = ["utf-8", "utf-16", "latin-1", "cp1252", "shift_jis", "utf-32"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["id", "title", "text", "data", "paragraphs", "context", "x"]), children, max_size=4),
    max_leaves=30,
)


def _read(tmp_path, name: str, content: bytes) -> ReadReport:
    root = tmp_path / "corpus"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        old.unlink()
    (root / name).write_bytes(content)
    report = ReadReport()
    docs = list(read_corpus(root, report))
    assert report.documents == len(docs)
    assert len(docs) > 0 or report.skipped or report.files_read == 1  # read (maybe empty) or skipped with a reason
    return report


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), content=st.binary(max_size=2000))
def test_random_bytes_in_every_format(tmp_path, suffix, content):
    _read(tmp_path, "file" + suffix, content)


@FUZZ
@given(suffix=st.sampled_from([".txt", ".md", ".html", ".json", ".jsonl"]), text=st.text(max_size=300), encoding=st.sampled_from(ENCODINGS))
def test_random_text_in_random_encodings(tmp_path, suffix, text, encoding):
    try:
        content = text.encode(encoding)
    except UnicodeEncodeError:
        content = text.encode(encoding, errors="replace")
    _read(tmp_path, "file" + suffix, content)


@FUZZ
@given(value=json_values, gz=st.booleans(), lines=st.booleans())
def test_random_json_structures(tmp_path, value, gz, lines):
    raw = (json.dumps(value) + "\n") * 2 if lines else json.dumps(value)
    content = gzip.compress(raw.encode()) if gz else raw.encode()
    _read(tmp_path, "file" + (".jsonl" if lines else ".json") + (".gz" if gz else ""), content)


@FUZZ
@given(depth=st.integers(min_value=1, max_value=200_000), kind=st.sampled_from(["[", '{"a":', '{"text": "t", "x":']))
def test_deep_nesting(tmp_path, depth, kind):
    close = {"[": "]", '{"a":': "}", '{"text": "t", "x":': "}"}[kind]
    body = kind * depth + "1" + close * depth
    report = _read(tmp_path, "deep.json", body.encode())
    _read(tmp_path, "deep.jsonl", (body + "\n").encode())
    assert report.documents <= 1


def test_a_deeply_nested_file_is_a_counted_skip_and_the_rest_is_read(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "deep.jsonl").write_text('{"text": "ok"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    (root / "good.txt").write_text("Fine.")
    report = ReadReport()
    docs = [d.id for d in read_corpus(root, report)]
    assert docs == ["deep.jsonl:1", "good.txt"]
    assert report.skipped == {"JSON nested too deeply": 2}
