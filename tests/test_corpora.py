import json

import pytest

from qa.corpora import ReadReport, read_corpus
from qa.errors import QAError


def test_reads_each_format_with_ids_titles_and_sources(write_files):
    root = write_files(
        {
            "a.txt": "Plain text.",
            "sub/b.md": "Intro line\n# The Title #\nBody.",
            "c.json": json.dumps({"id": 7, "title": "Seven", "text": "Json text.", "year": 2020}),
            "d.json": json.dumps([{"text": "First."}, {"text": "Second.", "title": "Two"}]),
            "e.jsonl": '{"id": "x", "text": "Line one."}\n\n{"id": "y", "body": "B", "text": "Line two."}\n',
        }
    )
    docs = {d.id: d for d in read_corpus(root)}
    assert set(docs) == {"a.txt", "sub/b.md", "7", "d.json#0", "d.json#1", "x", "y"}
    assert docs["a.txt"].title == "a" and docs["a.txt"].text == "Plain text."
    assert docs["sub/b.md"].title == "The Title"
    assert docs["7"].title == "Seven" and docs["7"].metadata == {"year": 2020}
    assert docs["7"].source == "c.json"
    assert docs["d.json#1"].title == "Two"
    assert docs["y"].metadata == {"body": "B"} and docs["y"].source == "e.jsonl"


def test_configurable_json_fields(write_files):
    root = write_files({"r.jsonl": '{"doc_id": "k1", "heading": "H", "body": "Some body."}\n'})
    [doc] = read_corpus(root, id_field="doc_id", title_field="heading", text_field="body")
    assert (doc.id, doc.title, doc.text) == ("k1", "H", "Some body.")


def test_bad_files_are_skipped_with_reasons_never_raised(write_files):
    root = write_files(
        {
            "good.txt": "Fine.",
            "latin1.txt": "caf\xe9".encode("latin-1"),
            "binary.txt": b"\x00\x01\x02 binary",
            "empty.md": "",
            "broken.json": "{not json",
            "no-text.json": json.dumps({"title": "no text"}),
            "lines.jsonl": '{"text": "ok line"}\nnot json\n{"text": 3}\n',
            "image.png": b"\x89PNG",
            "surrogate.json": '{"text": "bad \\ud800 char"}',
            "dup1.jsonl": '{"id": "same", "text": "one"}\n{"id": "same", "text": "two"}\n',
        }
    )
    report = ReadReport()
    docs = list(read_corpus(root, report))
    assert sorted(d.id for d in docs) == ["good.txt", "lines.jsonl:1", "same"]
    assert report.documents == 3
    assert report.skipped == {
        "invalid UTF-8": 1,
        "binary file": 1,
        "empty text": 1,
        "invalid JSON (line 1)": 1,
        "no 'text' string field": 2,
        "invalid JSON line": 1,
        "unsupported file type": 1,
        "invalid Unicode (lone surrogate)": 1,
        "duplicate id": 1,
    }
    assert len(report.warnings) == sum(report.skipped.values())


def test_hidden_files_are_ignored_and_single_files_read(write_files):
    root = write_files({".hidden/x.txt": "secret", ".y.txt": "secret", "z.txt": "shown"})
    assert [d.id for d in read_corpus(root)] == ["z.txt"]
    assert [d.id for d in read_corpus(root / "z.txt")] == ["z.txt"]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(QAError, match="does not exist"):
        list(read_corpus(tmp_path / "nope"))
