"""Adding to an index, the writer lock, and surviving a writer killed half-way (kill -9)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import SMALL_CORPUS

from qa.errors import QAError
from qa.fsutil import directory_lock
from qa.index.analysis import analyze
from qa.indexer import EmbeddingOptions, PassageOptions, ReadOptions, build_index
from qa.index import layout
from qa.retriever import Index


def _build(corpus, out, tiny_models, **kw):
    return build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])), **kw)


def test_add_embeds_only_new_documents_and_skips_those_already_there(tiny_models, write_files, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    _build(write_files(SMALL_CORPUS), out, tiny_models, passages=PassageOptions(max_words=12, overlap_words=4))
    before = np.load(out / layout.VECTORS)
    n_before = len(before)

    more = tmp_path / "more"
    more.mkdir()
    (more / "rivers.txt").write_text("The Nile is the longest river in Africa.")
    (more / "cats.jsonl").write_text(SMALL_CORPUS["notes/cats.jsonl"].replace("The cat sat on the mat.", "The cat slept."))
    (more / "eiffel.md").write_text(SMALL_CORPUS["eiffel.md"])  # same id (relative path) and content
    embedded = []
    from qa.indexer import build

    real = build.EmbeddingQueue.encode
    monkeypatch.setattr(build.EmbeddingQueue, "encode", lambda self, texts: embedded.extend(texts) or real(self, texts))
    result = build_index(more, out, add=True)  # the index's own model and passage settings

    assert embedded == ["rivers\nThe Nile is the longest river in Africa."]
    assert result.report.documents == 1 and result.new_passages == 1
    assert result.report.skipped == {
        "already in the index": 2,  # eiffel.md, dog-1
        "id already in the index with other content (rebuild to replace it)": 1,  # cat-1
    }
    after = np.load(out / layout.VECTORS)
    assert len(after) == n_before + 1 and np.array_equal(after[:n_before], before)
    index = Index(out)
    assert index.manifest["counts"] == {"documents": 5, "passages": n_before + 1}
    assert index.manifest["passages"]["max_words"] == 12 and len(index.manifest["additions"]) == 1
    assert index.store.document("cat-1").text == "The cat sat on the mat."
    hits = index.store.get([n_before])
    assert hits[0].doc_id == "rivers.txt"
    assert len(index.bm25_scores(analyze("Nile river"))) == n_before + 1


def test_add_refuses_another_model_and_needs_an_index(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    with pytest.raises(QAError, match="no index at"):
        build_index(corpus, tmp_path / "none", add=True)
    _build(corpus, tmp_path / "idx", tiny_models)
    with pytest.raises(QAError, match="was embedded with"):
        build_index(corpus, tmp_path / "idx", add=True, embedding=EmbeddingOptions("sentence-transformers/all-mpnet-base-v2"))


def test_the_manifest_records_the_precisions_the_passages_were_embedded_in(tiny_models, write_files, tmp_path):
    corpus, out = write_files(SMALL_CORPUS), tmp_path / "idx"
    built = build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"]), precision="fp32"))
    assert built.manifest["dense"]["precision"] == "fp32"
    more = tmp_path / "more"
    more.mkdir()
    (more / "rivers.txt").write_text("The Nile is the longest river in Africa.")
    added = build_index(more, out, add=True, embedding=EmbeddingOptions(precision="bf16"))
    assert added.new_passages == 1 and added.manifest["dense"]["precision"] == "bf16, fp32"
    again = build_index(more, out, add=True, embedding=EmbeddingOptions(precision="fp32"))  # nothing new: nothing embedded
    assert again.new_passages == 0 and again.manifest["dense"]["precision"] == "bf16, fp32"

    manifest = json.loads((out / layout.MANIFEST).read_text())  # an index built before qa recorded it
    del manifest["dense"]["precision"]
    (out / layout.MANIFEST).write_text(json.dumps(manifest))
    (more / "seas.txt").write_text("The Baltic Sea is brackish.")
    assert "precision" not in build_index(more, out, add=True).manifest["dense"]  # unknown for the earlier passages


def test_a_second_writer_is_stopped_by_the_lock(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    with directory_lock(tmp_path / "idx"), pytest.raises(QAError, match="another process is writing"):
        _build(corpus, tmp_path / "idx", tiny_models)
    _build(corpus, tmp_path / "idx", tiny_models)  # free again


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from qa.indexer import EmbeddingOptions, build

    def stall(*args):
        print("embedding", flush=True)
        time.sleep(120)

    build.EmbeddingQueue.encode = stall
    build.build_index(sys.argv[1], sys.argv[2], embedding=EmbeddingOptions(sys.argv[3]))
    """
)


def test_kill_9_during_a_rebuild_leaves_the_previous_index(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    out = tmp_path / "idx"
    _build(corpus, out, tiny_models)
    before = (out / "manifest.json").read_text()
    (corpus / "new.txt").write_text("A document the killed writer never finishes.")

    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(corpus), str(out), str(tiny_models["encoder"])],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert writer.stdout.readline().strip() == "embedding"  # the store and BM25 are written
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".idx.building-") for p in tmp_path.iterdir())  # its half-built index
    assert (out / "manifest.json").read_text() == before
    assert Index(out).manifest["counts"]["documents"] == 4

    _build(corpus, out, tiny_models)  # the lock died with the writer; the leftovers are cleaned
    assert json.loads((out / "manifest.json").read_text())["counts"]["documents"] == 5
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name or ".old-" in p.name]


def test_a_writer_killed_while_swapping_directories_is_recovered(tiny_index, tmp_path):
    import shutil

    # the window between moving the old index aside and moving the new one in
    shutil.copytree(tiny_index, tmp_path / ".idx.old-4242")
    (tmp_path / ".idx.building-x1").mkdir()
    assert Index(tmp_path / "idx").manifest["counts"]["documents"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_rebuilding_an_index_reached_by_a_symlink_replaces_the_link_not_its_folder(tiny_index, tiny_models, write_files, tmp_path):
    import shutil

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_index, elsewhere)
    (tmp_path / "cache").mkdir()
    link = tmp_path / "cache" / "idx"
    link.symlink_to(elsewhere)
    build_index(write_files({"a.txt": "A lake is still water."}), link, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    assert not link.is_symlink() and Index(link).manifest["counts"]["documents"] == 1
    assert Index(elsewhere).manifest["counts"]["documents"] == 4  # the folder the link pointed to is kept
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["idx"]  # no leftover link


def test_a_malformed_corpus_is_indexed_with_counts_and_never_half_written(tiny_models, write_files, tmp_path):
    from tests.corpus_fixtures import make_pdf

    corpus = write_files({
        "good.txt": "Rivers carry water to the sea.",
        "good.pdf": make_pdf(["Volcanoes erupt molten rock."]),
        "page.html": "<html><body><p>Glaciers move slowly.</p></body></html>",
        "binary.txt": b"\x7fELF\x00\x00\x01 not text",
        "latin1.md": "caf\xe9".encode("latin-1"),
        "broken.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog",
        "broken.json": '{"text": "unterminated',
        "truncated.json.gz": b"\x1f\x8b\x08\x00garbage",
        "empty.txt": "",
        "records.jsonl": '{"text": "Deserts are dry."}\n{bad line\n{"title": "no text"}\n',
        "huge.txt": "lorem " * 250_000,
        "image.png": b"\x89PNG\r\n",
    })
    out = tmp_path / "idx"
    result = _build(corpus, out, tiny_models, reading=ReadOptions(max_file_mb=1))
    report = result.report
    assert report.documents == 4 and result.manifest["counts"] == {"documents": 4, "passages": 4}
    assert report.files_read == 5  # good.txt, good.pdf, page.html, records.jsonl, empty.txt
    assert report.skipped == {
        "binary file": 1,
        "invalid UTF-8": 1,
        "broken PDF": 1,
        "invalid JSON (line 1)": 1,
        "broken gzip": 1,
        "empty text": 1,
        "invalid JSON line": 1,
        "no 'text' string field": 1,
        "larger than 1 MB (1 MB): split it, or use JSON Lines (streamed)": 1,
        "unsupported file type": 1,
    }
    assert json.loads((out / "manifest.json").read_text())["corpus"]["skipped"] == dict(report.skipped)
    assert {p.doc_id for p in Index(out).store.get(range(4))} == {"good.txt", "good.pdf", "page.html", "records.jsonl:1"}


def test_token_windows_fit_the_embedding_model_and_add_keeps_them(tiny_models, write_files, tmp_path):
    from transformers import AutoTokenizer

    corpus = write_files({"long.txt": "The river runs to the sea. " * 40, "short.md": "# S\n\nA lake."})
    out = tmp_path / "idx"
    build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])), passages=PassageOptions(max_tokens=24, overlap_tokens=6))
    index = Index(out)
    assert index.manifest["passages"] == {
        "unit": "tokens", "tokenizer": str(tiny_models["encoder"]), "max_tokens": 24, "overlap_tokens": 6, "sentence_aware": True,
    }
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["encoder"])
    passages = index.store.get(range(len(index)))
    assert len(passages) > 5
    for p in passages:
        assert len(tokenizer(p.text, add_special_tokens=False)["input_ids"]) <= 24
        assert p.text.endswith(".")  # sentence ends
    more = tmp_path / "more"
    more.mkdir()
    (more / "pond.txt").write_text("A pond is small. " * 20)
    build_index(more, out, add=True)
    index = Index(out)
    assert index.manifest["passages"]["unit"] == "tokens"
    added = [p for p in index.store.get(range(len(index))) if p.doc_id == "pond.txt"]
    assert len(added) > 1 and all(len(tokenizer(p.text, add_special_tokens=False)["input_ids"]) <= 24 for p in added)


def test_default_passages_are_token_windows_of_the_embedding_model(tiny_models, write_files, tmp_path):
    out = tmp_path / "idx"
    build_index(write_files({"a.txt": "One sentence here. " * 120}), out, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    assert Index(out).manifest["passages"] == PassageOptions().settings(str(tiny_models["encoder"])) == {
        "unit": "tokens", "tokenizer": str(tiny_models["encoder"]), "max_tokens": 200, "overlap_tokens": 40, "sentence_aware": True,
    }
    assert PassageOptions(max_words=50).settings()["unit"] == "words"
    with pytest.raises(QAError, match="not both"):
        PassageOptions(max_words=50, max_tokens=50).settings()
