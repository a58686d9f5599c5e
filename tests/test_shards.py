"""A sharded index (qa index --shard-passages, issue 20): shards written as ordinary indexes,
searched as one, added to as new shards, checked and refused when damaged."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.errors import QAError
from qa.index import Index, check_index, layout
from qa.index.analysis import analyze
from qa.indexer import EmbeddingOptions, LayoutOptions, PassageOptions, build_index
from qa.indexer.stages import BM25_B, BM25_K1
from qa.retriever import make_retriever

WORDS = ("paris tower engineer river city mountain company capital plants light oxygen energy cat dog animal "
         "mailman bridge station harbour forest desert island volcano glacier museum library garden").split()
QUESTIONS = ["Which engineer built the tower in Paris?", "What do plants release with light?", "dog barks at mailman",
             "volcano island glacier", "museum library garden bridge"]


def _corpus(root, documents=24, seed=0):
    rng = random.Random(seed)
    root.mkdir()
    for i in range(documents):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
        (root / f"doc{i:02d}.txt").write_text(" ".join(words).capitalize() + ".")
    return root


def _build(corpus, out, tiny_models, **kw):
    return build_index(corpus, out, embedding=EmbeddingOptions(str(tiny_models["encoder"])),
                       passages=PassageOptions(max_words=12, overlap_words=4), **kw)


def _expected_bm25(index: Index, query: list[str], shard_sizes: list[int]) -> np.ndarray:
    """BM25 (bm25s's Lucene variant) by hand: idf over the whole index, length normalised by the
    average passage length of each passage's shard (one size: the whole index's)."""
    passages = index.store.get(list(range(len(index))))
    terms = [Counter(analyze(p.retrieval_text)) for p in passages]
    lengths = np.array([sum(t.values()) for t in terms], dtype=np.float64)
    shard_of = np.repeat(np.arange(len(shard_sizes)), shard_sizes)
    average = np.array([lengths[shard_of == s].mean() for s in range(len(shard_sizes))])[shard_of]
    scores = np.zeros(len(passages))
    for term, count in Counter(query).items():
        holding = sum(term in t for t in terms)
        if not holding:
            continue
        idf = math.log(1 + (len(passages) - holding + 0.5) / (holding + 0.5))
        tf = np.array([t[term] for t in terms], dtype=np.float64)
        scores += count * idf * tf / (tf + BM25_K1 * (1 - BM25_B + BM25_B * lengths / average))
    return scores


def test_a_sharded_index_holds_and_finds_what_the_unsharded_one_does(tiny_models, tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    whole = Index(_build(corpus, tmp_path / "whole", tiny_models).path)
    result = _build(corpus, tmp_path / "sharded", tiny_models, layout_options=LayoutOptions(shard_passages=7))
    manifest = result.manifest
    assert manifest["format_version"] == layout.SHARDED_VERSION and layout.marker_version(result.path) == layout.SHARDED_VERSION
    sizes = [entry["passages"] for entry in manifest["shards"]]
    assert len(sizes) >= 3 and all(size >= 7 for size in sizes[:-1]) and manifest["shard_passages"] == 7
    assert [e["path"] for e in manifest["shards"]] == [layout.shard_dir(i) for i in range(len(sizes))]
    assert manifest["counts"] == whole.manifest["counts"] and manifest["files"] == {}

    sharded = Index(result.path)
    n = len(whole)
    assert len(sharded) == n == sum(sizes) and sharded.store.count() == n
    assert sharded.store.get(list(range(n))) == whole.store.get(list(range(n)))  # same passages, same numbers
    assert sharded.store.get([n - 1, 0]) == whole.store.get([n - 1, 0])
    assert sharded.store.document("doc05.txt") == whole.store.document("doc05.txt")
    assert sharded.store.metadata(["doc00.txt", "doc23.txt", "none"]).keys() == {"doc00.txt", "doc23.txt"}
    gold = whole.store.get([n - 1])[0]
    from qa.corpora import Document

    sha = Document(id=gold.doc_id, text=whole.store.document(gold.doc_id).text, title=gold.title).sha256
    assert sharded.store.passages_with_content(sha) == whole.store.passages_with_content(sha)
    np.testing.assert_allclose(sharded.vectors[np.arange(n)], whole.vectors[np.arange(n)], atol=2e-3)

    vectors = whole.question_encoder.encode(QUESTIONS)
    exact_scores, exact_ids = whole.faiss.search(vectors, 5)
    scores, ids = sharded.faiss.search(vectors, 5)
    assert np.array_equal(ids, exact_ids) and np.allclose(scores, exact_scores, atol=1e-2)

    for question in QUESTIONS:  # BM25 as if unsharded: the idf and the average length of all shards
        query = analyze(question)
        np.testing.assert_allclose(whole.bm25_scores(query), _expected_bm25(whole, query, [n]), rtol=1e-5)
        np.testing.assert_allclose(sharded.bm25_scores(query), whole.bm25_scores(query), rtol=1e-5, atol=1e-6)
    assert sharded.bm25_scores(["zzz"]) is None
    with pytest.raises(QAError, match="is sharded"):
        _ = sharded.bm25

    hits = make_retriever(sharded.load(), "hybrid").search("Which engineer built the tower in Paris?", 5)
    assert len(hits) == 5 and all(h.bm25 is not None and h.cosine is not None for h in hits)
    report = check_index(result.path)
    assert report.ok, report.problems
    assert any("shards" in check for check in report.checks)


def test_shards_filled_at_once_hold_and_score_what_one_shard_at_a_time_does(tiny_models, tmp_path):
    corpus = _corpus(tmp_path / "corpus", documents=40)
    whole = Index(_build(corpus, tmp_path / "whole", tiny_models).path)
    result = _build(corpus, tmp_path / "dealt", tiny_models, layout_options=LayoutOptions(shard_passages=7, open_shards=3))
    entries = result.manifest["shards"]
    assert [e["path"] for e in entries] == [layout.shard_dir(i) for i in range(len(entries))]
    assert len(entries) >= 5 and sum(e["passages"] >= 7 for e in entries) >= len(entries) - 3  # only the last 3 may be short
    dealt = Index(result.path)
    assert dealt.manifest["counts"] == whole.manifest["counts"]
    firsts = [dealt.shards[i].store.get([0])[0].doc_id for i in range(3)]
    assert firsts == ["doc00.txt", "doc01.txt", "doc02.txt"]  # dealt: the first documents open the three shards

    def keyed(index):
        return [(p.doc_id, p.start, p.end, p.text) for p in index.store.get(list(range(len(index))))]

    keys, whole_keys = keyed(dealt), keyed(whole)
    assert keys != whole_keys and sorted(keys) == sorted(whole_keys)  # the same passages, numbered otherwise
    for shard in dealt.shards:  # a document's passages stay together, in one shard
        docs = [p.doc_id for p in shard.store.get(list(range(len(shard))))]
        assert docs == sorted(docs, key=docs.index)
    order = np.array([whole_keys.index(k) for k in keys])  # dealt passage i is whole's passage order[i]
    np.testing.assert_allclose(dealt.vectors[np.arange(len(keys))], whole.vectors[order], atol=2e-3)
    for question in QUESTIONS:  # BM25 as if unsharded, whatever shard a passage is in
        query = analyze(question)
        np.testing.assert_allclose(dealt.bm25_scores(query), whole.bm25_scores(query)[order], rtol=1e-5, atol=1e-6)
    assert check_index(result.path).ok
    with pytest.raises(QAError, match="--shard-passages"):
        _build(corpus, tmp_path / "unsharded", tiny_models, layout_options=LayoutOptions(open_shards=2))
    with pytest.raises(QAError, match="at least 1"):
        LayoutOptions(shard_passages=7, open_shards=0)


def test_adding_to_a_sharded_index_writes_a_new_shard_and_keeps_the_old_ones(tiny_models, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    first = _build(_corpus(tmp_path / "corpus", documents=10), out, tiny_models, layout_options=LayoutOptions(shard_passages=6))
    shards = first.manifest["shards"]
    inodes = {e["path"]: os.stat(out / e["path"] / layout.STORE).st_ino for e in shards}
    old_count = first.manifest["counts"]["passages"]

    more = _corpus(tmp_path / "more", documents=14)  # doc00..doc09 again, then four new documents
    second = build_index(more, out, add=True)
    entries = second.manifest["shards"]
    assert entries[: len(shards)] == shards and len(entries) > len(shards)
    assert second.report.skipped == {"already in the index": 10}
    assert second.manifest["counts"]["documents"] == 14 and second.manifest["generation"] == 2
    assert {e["path"]: os.stat(out / e["path"] / layout.STORE).st_ino for e in shards} == inodes  # linked, not copied
    index = Index(out)
    assert len(index) == old_count + second.new_passages
    assert index.store.get([old_count])[0].doc_id == "doc10.txt"
    assert check_index(out).ok

    from qa.indexer import build

    def fail(self, texts):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(build.EmbeddingQueue, "encode", fail)
    with pytest.raises(RuntimeError, match="half-way"):
        build_index(_corpus(tmp_path / "later", documents=20), out, add=True)
    after = Index(out)  # the previous index, untouched
    assert after.build_id == second.manifest["build_id"] and len(after) == len(index)
    assert check_index(out).ok


KILLED_ADDER = textwrap.dedent(
    """
    import sys, time
    from qa.indexer import build

    def stall(*args):
        print("embedding", flush=True)
        time.sleep(120)

    build.EmbeddingQueue.encode = stall
    build.build_index(sys.argv[1], sys.argv[2], add=True)
    """
)


def test_kill_9_while_adding_a_shard_leaves_the_previous_index_and_its_linked_shards(tiny_models, tmp_path):
    out = tmp_path / "idx"
    _build(_corpus(tmp_path / "corpus", documents=10), out, tiny_models, layout_options=LayoutOptions(shard_passages=6))
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    adder = subprocess.Popen([sys.executable, "-c", KILLED_ADDER, str(_corpus(tmp_path / "more", documents=16)), str(out)],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        assert adder.stdout.readline().strip() == "embedding"  # the old shards are linked, the new one half written
    finally:
        adder.send_signal(signal.SIGKILL)
        adder.wait()
    assert any(p.name.startswith(".idx.building-") for p in tmp_path.iterdir())
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # not a byte changed
    assert check_index(out).ok
    result = build_index(_corpus(tmp_path / "later", documents=16), out, add=True)  # the leftovers are cleaned
    assert result.manifest["counts"]["documents"] == 16 and check_index(out).ok
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name or ".old-" in p.name]


def test_an_unsharded_index_becomes_shard_0_when_added_to_with_shards(tiny_models, tmp_path):
    out = tmp_path / "idx"
    first = _build(_corpus(tmp_path / "corpus", documents=8), out, tiny_models)
    store = os.stat(out / layout.STORE).st_ino
    before = Index(out).store.get(list(range(len(Index(out)))))
    second = build_index(_corpus(tmp_path / "more", documents=12), out, add=True, layout_options=LayoutOptions(shard_passages=1000))
    entries = second.manifest["shards"]
    assert [e["path"] for e in entries] == [layout.shard_dir(0), layout.shard_dir(1)]
    assert entries[0]["build_id"] == first.manifest["build_id"]
    assert os.stat(out / layout.shard_dir(0) / layout.STORE).st_ino == store
    assert not (out / layout.STORE).exists()
    index = Index(out)
    assert index.store.get(list(range(len(before)))) == before and len(index) == len(before) + second.new_passages
    assert check_index(out).ok


def test_shards_without_stored_lengths_keep_their_own_length_normalisation(tiny_models, tmp_path):
    out = tmp_path / "idx"
    _build(_corpus(tmp_path / "corpus", documents=10), out, tiny_models)
    manifest = json.loads((out / layout.MANIFEST).read_text())  # as an index of qa before 2026-12 was
    (out / layout.BM25_DIR / layout.BM25_LENGTHS).unlink()
    del manifest["files"][f"{layout.BM25_DIR}/{layout.BM25_LENGTHS}"]
    (out / layout.MANIFEST).write_text(json.dumps(manifest))
    build_index(_corpus(tmp_path / "more", documents=24), out, add=True, layout_options=LayoutOptions(shard_passages=1000))
    index = Index(out)
    sizes = [len(shard) for shard in index.shards]
    assert len(sizes) == 2 and index.shards[0].bm25_lengths is None and index.shards[1].bm25_lengths is not None
    for question in QUESTIONS:
        query = analyze(question)
        np.testing.assert_allclose(index.bm25_scores(query), _expected_bm25(index, query, sizes), rtol=1e-5)


def test_a_damaged_shard_is_named(tiny_models, tmp_path):
    out = _build(_corpus(tmp_path / "corpus"), tmp_path / "idx", tiny_models, layout_options=LayoutOptions(shard_passages=10)).path
    vectors = out / layout.shard_dir(1) / layout.VECTORS
    vectors.write_bytes(vectors.read_bytes()[:-8])
    with pytest.raises(QAError, match="damaged"):
        Index(out)
    report = check_index(out)
    assert not report.ok and all(p.startswith(layout.shard_dir(1)) for p in report.problems)


def test_qa_index_shard_passages_on_the_command_line(tiny_models, tmp_path):
    corpus, out = _corpus(tmp_path / "corpus"), tmp_path / "idx"
    args = ["index", str(corpus), "--index", str(out), "--embedding-model", str(tiny_models["encoder"]), "--max-words", "12",
            "--overlap-words", "4", "--shard-passages", "10"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    shards = json.loads(result.stdout)["shards"]
    assert len(shards) >= 2
    result = CliRunner().invoke(app, ["index", "--check", "--index", str(out)])
    assert result.exit_code == 0 and f"{len(shards)} shards" in result.output
    assert CliRunner().invoke(app, [*args[:-1], "0"]).exit_code != 0
