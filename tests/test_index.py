import json
import sqlite3

import numpy as np
import pytest

from qa.errors import QAError
from qa.indexer import EmbeddingOptions, build_index
from qa.index import layout
from qa.retriever import Index

from conftest import SMALL_CORPUS, errors_in_threads


def test_manifest_describes_the_index(tiny_index, tiny_models):
    manifest = json.loads((tiny_index / "manifest.json").read_text())
    assert manifest["format"] == "qa-index" and manifest["format_version"] == layout.FORMAT_VERSION
    assert manifest["counts"]["documents"] == 4
    assert manifest["dense"]["model"] == str(tiny_models["encoder"])
    assert manifest["dense"]["dim"] == 32 and manifest["dense"]["dtype"] == "float16"
    assert manifest["passages"] == {"unit": "words", "max_words": 12, "overlap_words": 4}
    assert manifest["created"] and manifest["qa_version"]
    vectors = np.load(tiny_index / layout.VECTORS)
    assert vectors.dtype == np.float16 and vectors.shape == (manifest["counts"]["passages"], 32)
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)


def test_every_passage_is_its_document_text_at_its_offsets(tiny_index):
    index = Index(tiny_index)
    passages = index.store.get(list(range(len(index))))
    assert len(passages) == index.manifest["counts"]["passages"] > 4  # the long documents were split
    for p in passages:
        doc = index.store.document(p.doc_id)
        assert doc.text[p.start : p.end] == p.text
    assert {p.doc_id for p in passages} == {"eiffel.md", "plants.txt", "cat-1", "dog-1"}


def test_store_returns_passages_in_the_order_asked(tiny_index):
    index = Index(tiny_index)
    assert [p.idx for p in index.store.get([3, 0, 2])] == [3, 0, 2]
    assert index.store.get([]) == []


def test_rebuilding_replaces_the_index_only_when_complete(tiny_models, write_files, tmp_path, monkeypatch):
    corpus = write_files(SMALL_CORPUS)
    out = tmp_path / "idx"
    build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    before = (out / "manifest.json").read_text()

    def fail(*args, **kwargs):
        raise RuntimeError("embedding failed half-way")

    monkeypatch.setattr("qa.indexer.build.EmbeddingQueue.encode", fail)
    with pytest.raises(RuntimeError):
        build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    assert (out / "manifest.json").read_text() == before
    Index(out)  # still opens
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "idx"]  # no leftovers, not even the lock file

    monkeypatch.undo()
    (corpus / "new.txt").write_text("A new document about rivers.")
    build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    assert json.loads((out / "manifest.json").read_text())["counts"]["documents"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "idx"]


def test_refuses_to_overwrite_a_folder_that_is_not_an_index(tiny_models, write_files, tmp_path):
    corpus = write_files(SMALL_CORPUS)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(QAError, match="is not empty and is not a qa index"):
        build_index(corpus, precious, embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_empty_corpus_is_a_clear_error(write_files, tmp_path):
    corpus = write_files({"empty.txt": "   \n", "pic.png": b"\x89PNG"})
    with pytest.raises(QAError, match="no documents found .*skipped: 1 empty text, 1 unsupported file type"):
        build_index(corpus, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_a_corpus_of_stop_words_only_is_a_clear_error(tiny_models, write_files, tmp_path):
    corpus = write_files({"a.txt": "The of and, to it!", "b.md": "-- and the --"})
    with pytest.raises(QAError, match="no searchable words"):
        build_index(corpus, tmp_path / "idx", embedding=EmbeddingOptions(str(tiny_models["encoder"])))
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "manifest.json").unlink(), "is not a qa index"),
        (lambda p: (p / "manifest.json").write_text("{oops"), "unreadable"),
        (lambda p: (p / "manifest.json").write_text('{"format": "qa-index", "format_version": 999}'), "format version 999"),
        (lambda p: (p / "passages.sqlite").unlink(), "incomplete"),
    ],
)
def test_damaged_indexes_are_clear_errors(tiny_index, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    damage(copy)
    with pytest.raises(QAError, match=message):
        Index(copy)


def test_missing_index_names_the_command_to_build_it(tmp_path):
    with pytest.raises(QAError, match="qa index PATH"):
        Index(tmp_path / "nowhere")


def test_default_index_location(monkeypatch, tmp_path):
    monkeypatch.delenv("QA_INDEX", raising=False)
    assert str(layout.default_index_dir()) == ".qa-index"
    monkeypatch.setenv("QA_INDEX", str(tmp_path / "x"))
    assert layout.default_index_dir() == tmp_path / "x"


def test_document_metadata_round_trips(tiny_index):
    index = Index(tiny_index)
    doc = index.store.document("cat-1")
    assert doc.title == "Cats" and doc.source == "notes/cats.jsonl" and doc.metadata == {}
    assert index.store.document("nope") is None
    con = sqlite3.connect(tiny_index / "passages.sqlite")
    assert con.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 4


def test_threads_reading_one_passage_store_each_get_every_passage_asked_for(tiny_index):
    import random

    from qa.index.store import PassageStore

    store = PassageStore(tiny_index / "passages.sqlite")
    every = store.get(range(store.count()))

    def read(seed: int) -> None:
        draw = random.Random(seed)
        for _ in range(300):
            asked = draw.sample(range(len(every)), draw.randint(1, len(every)))
            assert store.get(asked) == [every[i] for i in asked]

    errors = errors_in_threads(read, 8)
    store.close()
    assert errors == [] and len(every) > 3


@pytest.mark.parametrize("threads", [1, 3])
def test_documents_split_ahead_on_threads_come_in_order_with_their_windows(threads, monkeypatch):
    import threading

    from qa.corpora import Document
    from qa.indexer import stages
    from qa.indexer.passages import split_passages

    monkeypatch.setattr(stages, "SPLIT_GROUP_DOCUMENTS", 3)
    monkeypatch.setattr(stages, "SPLIT_GROUP_CHARACTERS", 100)  # some groups end early, on characters
    docs = [Document(id=str(i), text=" ".join(f"w{i}x{j}" for j in range(1 + 13 * i % 50)), title="", source="s") for i in range(40)]
    where = set()

    def split(text):
        where.add(threading.current_thread().name)
        return split_passages(text, 5, 2)

    got = [(doc.id, list(windows)) for doc, windows in stages.split_ahead(iter(docs), split, threads)]
    assert got == [(doc.id, [(w.start, w.end) for w in split_passages(doc.text, 5, 2)]) for doc in docs]
    assert all(name.startswith("qa-split") for name in where) if threads > 1 else where == {threading.current_thread().name}

    def failing(text):
        if text.startswith("w20x"):
            raise ValueError("cannot split document 20")
        return split_passages(text, 5, 2)

    seen = []
    with pytest.raises(ValueError, match="document 20"):
        for doc, windows in stages.split_ahead(iter(docs), failing, threads):
            seen.append((doc.id, list(windows)))
    assert [doc_id for doc_id, _ in seen] == [str(i) for i in range(20)]  # everything before it, in order
