import gzip
import json

import pytest

from qa.corpora import ReadReport, read_corpus
from qa.errors import QAError
from tests.corpus_fixtures import cord19_files, make_pdf


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


def test_markdown_front_matter_is_metadata_not_text(write_files):
    front = ("---\ntitle: Cytokine notes\ndate: 2021-03-04\ntags: [covid, il-6]\ndoi: 10.1/x\nauthors: Doe, J.; Roe, R.\n"
             "---\n# A heading\n\nIL-6 rises.\n\n---\n\nA thematic break, kept.\n")
    root = write_files({
        "front.md": front,
        "dots.md": "---\nyear: 2020\n...\nBody after dots.",
        "crlf.md": "---\r\nyear: 2019\r\n---\r\n# Windows\r\nBody.",
        "scalar.md": "---\njust a line of text\n---\n# Kept\nBody.",
        "broken.md": "---\ntitle: [unclosed\n---\nBody.",
        "unclosed.md": "---\ntitle: x\nno closing line\n",
        "later.md": "# Title\n\n---\nyear: 2022\n---\n",
    })
    docs = {d.id: d for d in read_corpus(root)}
    note = docs["front.md"]
    assert note.title == "Cytokine notes" and note.text == "# A heading\n\nIL-6 rises.\n\n---\n\nA thematic break, kept.\n"
    assert note.metadata == {"title": "Cytokine notes", "date": "2021-03-04", "tags": ["covid", "il-6"], "doi": "10.1/x",
                             "authors": "Doe, J.; Roe, R."}
    assert (docs["dots.md"].metadata, docs["dots.md"].text, docs["dots.md"].title) == ({"year": 2020}, "Body after dots.", "dots")
    assert (docs["crlf.md"].metadata, docs["crlf.md"].title) == ({"year": 2019}, "Windows")
    for name in ("scalar.md", "broken.md", "unclosed.md", "later.md"):  # not a YAML mapping at the top: the file as it is
        assert docs[name].metadata == {} and docs[name].text.startswith(("---", "# Title")), name
    assert docs["scalar.md"].title == "Kept"


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


def test_html_keeps_the_main_text_and_drops_markup_and_chrome(write_files):
    page = """<!doctype html><html><head><title>Ebola &amp; Marburg</title><style>p {color: red}</style>
    <script>var x = "<p>not text</p>";</script></head><body><nav><a href="/">Home</a> | Menu</nav>
    <main><h1>Filoviruses</h1><p>Ebola virus causes <b>severe</b> haemorrhagic fever.</p>
    <ul><li>first item</li><li>second item</li></ul><p>Caf&eacute; &lt;tag&gt; text.</p></main>
    <footer>Copyright 2020</footer></body></html>"""
    [doc] = read_corpus(write_files({"page.html": page}))
    assert doc.title == "Ebola & Marburg"
    assert doc.text == (
        "Filoviruses\n\nEbola virus causes severe haemorrhagic fever.\n\nfirst item\n\nsecond item\n\nCafé <tag> text."
    )


def test_pdf_text_and_title_and_a_broken_pdf_is_skipped(write_files):
    root = write_files({
        "paper.pdf": make_pdf(["Page one about coronaviruses (SARS).", "Page two."], title="A Paper"),
        "untitled.pdf": make_pdf(["Only page."]),
        "broken.pdf": b"%PDF-1.4\nthis is not really a pdf",
    })
    report = ReadReport()
    docs = {d.id: d for d in read_corpus(root, report)}
    assert docs["paper.pdf"].title == "A Paper"
    assert docs["paper.pdf"].text == "Page one about coronaviruses (SARS).\n\nPage two."
    assert docs["untitled.pdf"].title == "untitled"
    assert report.skipped == {"broken PDF": 1}


def test_squad_and_covid_qa_files_give_one_document_per_paragraph(write_files):
    squad = {"version": "1.1", "data": [{"title": "Super_Bowl_50", "paragraphs": [
        {"context": "Denver won.", "qas": [{"id": "q1", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0}]}]},
        {"context": "It was in 2016.", "qas": []},
    ]}]}
    covid = {"data": [{"paragraphs": [{"document_id": 630, "context": "Whole article text.", "qas": []}]}]}
    root = write_files({"train.json.gz": gzip.compress(json.dumps(squad).encode()), "covid.json": json.dumps(covid)})
    docs = {d.id: d for d in read_corpus(root)}
    assert set(docs) == {"Super_Bowl_50/0", "Super_Bowl_50/1", "630"}
    assert docs["Super_Bowl_50/1"].title == "Super Bowl 50" and docs["Super_Bowl_50/1"].text == "It was in 2016."
    assert docs["Super_Bowl_50/0"].source == "train.json.gz" and docs["Super_Bowl_50/0"].metadata == {"questions": 1}
    assert docs["630"].text == "Whole article text."


def test_cord19_release_prefers_pmc_parses_and_keeps_metadata(write_files):
    root = write_files({"cord/" + k: v for k, v in cord19_files().items()} | {"notes.txt": "A note beside the release."})
    report = ReadReport()
    docs = {d.id: d for d in read_corpus(root, report)}
    assert set(docs) == {"ug7v899j", "02tnwd4m", "ejv2xln0", "2b73a28n", "notes.txt"}
    first = docs["ug7v899j"]
    assert first.title.startswith("Clinical features") and first.source == "cord/metadata.csv"
    assert first.text == (
        "Mycoplasma pneumoniae is a common cause of pneumonia.\n\nIntroduction\n\nPMC body: pneumonia in children."
        "\n\nSecond paragraph.\n\nMethods\n\nWe reviewed charts."
    )
    assert first.metadata["parse"] == "cord/document_parses/pmc_json/PMC35282.xml.json"
    assert first.metadata["doi"] == "10.1186/1471-2334-1-6" and first.metadata["journal"] == "BMC Infect Dis"
    assert docs["02tnwd4m"].text == "Inflammation abstract from the parse.\n\nResults\n\nNitric oxide is produced by macrophages."
    assert docs["ejv2xln0"].text.startswith("Surfactant protein-D") and docs["ejv2xln0"].metadata["parse"] is None
    assert docs["2b73a28n"].text == "Endothelin-1 is a peptide."
    assert report.skipped == {"duplicate id": 1, "missing CORD-19 parse file": 1}
    assert report.files_read == 4  # metadata.csv, two parses, notes.txt


def test_include_and_exclude_globs(write_files):
    root = write_files({"a.md": "A", "b.txt": "B", "drafts/c.md": "C", "notes/d.md": "D"})
    ids = lambda **kw: sorted(d.id for d in read_corpus(root, **kw))  # noqa: E731
    assert ids(include=["*.md"]) == ["a.md", "drafts/c.md", "notes/d.md"]
    assert ids(exclude=["drafts/*"]) == ["a.md", "b.txt", "notes/d.md"]
    assert ids(include=["*.md"], exclude=["drafts/*", "d.md"]) == ["a.md"]


def test_a_file_over_the_size_limit_is_skipped_but_jsonl_is_streamed(write_files):
    big = "word " * 300_000  # 1.5 MB
    root = write_files({"small.txt": "Small.", "huge.txt": big, "many.jsonl": "\n".join(json.dumps({"text": big[:1000]}) for _ in range(2000))})
    report = ReadReport()
    docs = [d.id for d in read_corpus(root, report, max_file_mb=1)]
    assert "small.txt" in docs and "huge.txt" not in docs and len(docs) == 2001
    assert report.skipped == {"larger than 1 MB (1 MB): split it, or use JSON Lines (streamed)": 1}


def test_jsonl_gz_is_streamed_and_a_binary_jsonl_is_not_counted_as_read(write_files):
    root = write_files({
        "a.jsonl.gz": gzip.compress(b'{"id": "g1", "text": "From gzip."}\n{"id": "g2", "text": "Two."}\n'),
        "b.jsonl": b"\x00\x01\x02\x03",
        "c.jsonl.gz": b"not gzip at all",
    })
    report = ReadReport()
    assert [d.id for d in read_corpus(root, report)] == ["g1", "g2"]
    assert report.files_read == 1 and report.skipped == {"binary file": 1, "broken gzip": 1}
