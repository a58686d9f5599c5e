"""Shards served by other machines (issue 20): `qa serve-shard` serves an index, `qa index --join`
lists such servers as the shards of one index, and that index answers as the same shards on this
machine do. Real uvicorn servers on loopback ports stand in for the other machines."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.errors import QAError
from qa.index import Index, check_index, layout
from qa.index.analysis import analyze
from qa.index.remote import ShardClient
from qa.index.where import parse_where
from qa.indexer import EmbeddingOptions, LayoutOptions, PassageOptions, build_index
from qa.indexer.join import join_shards
from qa.pipeline import Pipeline
from qa.retriever import make_retriever
from qa.retriever import retrievers
from serving import call, running_shard
from test_shards import QUESTIONS, _build, _corpus  # the same small corpus and questions as the shards on one machine


@pytest.fixture(scope="module")
def sharded(tiny_models, tmp_path_factory):
    """A corpus built whole and in shards of 7 passages (each shard folder an ordinary index)."""
    root = tmp_path_factory.mktemp("remote")
    corpus = _corpus(root / "corpus")
    whole = _build(corpus, root / "whole", tiny_models).path
    result = _build(corpus, root / "sharded", tiny_models, layout_options=LayoutOptions(shard_passages=7))
    return {"root": root, "whole": whole, "sharded": result.path,
            "shards": [result.path / entry["path"] for entry in result.manifest["shards"]]}


@contextlib.contextmanager
def _served(paths, token=None):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_shard(path, token)) for path in paths]


def test_a_joined_index_of_served_shards_answers_as_the_shards_on_this_machine(sharded, tiny_models, tmp_path, monkeypatch):
    local, whole = Index(sharded["sharded"]), Index(sharded["whole"])
    n = len(whole)
    with _served(sharded["shards"]) as urls:
        result = join_shards(urls, tmp_path / "joined")
        assert [s["url"] for s in result.manifest["shards"]] == urls and result.manifest["counts"] == whole.manifest["counts"]
        assert result.manifest["dense"]["precision"] == whole.manifest["dense"]["precision"]  # each shard's manifest records it
        assert sorted(p.name for p in result.path.iterdir()) == sorted([layout.MANIFEST, layout.MARKER])
        joined = Index(result.path)
        assert joined.remote and len(joined) == n

        assert joined.store.get(list(range(n))) == whole.store.get(list(range(n)))  # same passages, same numbers
        assert joined.store.get([n - 1, 0, 7]) == whole.store.get([n - 1, 0, 7])
        assert joined.store.document("doc05.txt") == whole.store.document("doc05.txt")
        assert joined.store.document("none") is None
        assert joined.store.metadata(["doc00.txt", "doc23.txt", "none"]).keys() == {"doc00.txt", "doc23.txt"}
        for where in (["id=doc1*"], ["id!=doc1*", "title~doc2"], ["id=none"]):  # each server selects its own passages
            conditions = parse_where(where)
            assert joined.store.passages_where(conditions).tolist() == whole.store.passages_where(conditions).tolist()
        assert joined.store.metadata_fields() == whole.store.metadata_fields()
        np.testing.assert_array_equal(joined.vectors[np.arange(n)], local.vectors[np.arange(n)])

        vectors = whole.question_encoder.encode(QUESTIONS)
        local_scores, local_ids = local.faiss.search(vectors, 5)
        scores, ids = joined.faiss.search(vectors, 5)
        assert np.array_equal(ids, local_ids) and np.allclose(scores, local_scores, atol=1e-6)

        for question in QUESTIONS:  # BM25 as if unsharded: every shard scores with all shards' statistics
            terms = analyze(question)
            np.testing.assert_allclose(joined.bm25_scores(terms), whole.bm25_scores(terms), rtol=1e-5, atol=1e-6)
            assert joined.bm25_search(terms).top(10) == local.bm25_search(terms).top(10)
        assert joined.bm25_search(["zzz"]) is None

        for kind in ("bm25", "dense", "hybrid"):
            remote_hits = make_retriever(joined.load(), kind).search_batch(QUESTIONS, 5)
            local_hits = make_retriever(local.load(), kind).search_batch(QUESTIONS, 5)
            assert remote_hits == local_hits, kind  # passages, scores, ranks and evidence

        within = whole.store.passages_where(parse_where(["id=doc1*"]))
        for kind, exact in itertools.product(("bm25", "dense", "hybrid"), (True, False)):  # scored each, or read deeper
            monkeypatch.setattr(retrievers, "EXACT_WITHIN_REMOTE", len(within) if exact else 0)
            remote_hits = make_retriever(joined.load(), kind).search_batch(QUESTIONS, 5, within=within)
            local_hits = make_retriever(local.load(), kind).search_batch(QUESTIONS, 5, within=within)
            assert [[h.passage for h in hits] for hits in remote_hits] == [[h.passage for h in hits] for hits in local_hits], kind
            assert [h.score for hits in remote_hits for h in hits] == pytest.approx([h.score for hits in local_hits for h in hits])

        reader = str(tiny_models["reader"])
        asked = Pipeline(joined, reader=reader, precision="fp32").ask_batch(QUESTIONS[:2], top_k=5)
        expected = Pipeline(local, reader=reader, precision="fp32").ask_batch(QUESTIONS[:2], top_k=5)
        assert [{**p.as_dict(), "seconds": None} for p in asked] == [{**p.as_dict(), "seconds": None} for p in expected]

        report = check_index(result.path)
        assert report.ok, report.problems
        assert any("by their servers" in check for check in report.checks)


def test_a_batch_of_questions_asks_each_shard_server_once_per_step(sharded, tmp_path, monkeypatch):
    """BM25's two round trips, the dense search and the evidence of a whole batch: one request per
    server each, and the same hits as the questions asked one at a time."""
    with _served(sharded["shards"]) as urls:
        joined = Index(join_shards(urls, tmp_path / "joined").path).load()
        retriever = make_retriever(joined, "hybrid")
        one_at_a_time = [retriever.search(question, 5) for question in QUESTIONS]
        asked: Counter = Counter()
        call = ShardClient.call

        def counted(self, route, body=None):
            asked[route] += 1
            return call(self, route, body)

        monkeypatch.setattr(ShardClient, "call", counted)
        batch = retriever.search_batch(QUESTIONS, 5)

        def exact(found):
            return [[(h.passage, h.score, h.rank, h.bm25) for h in hits] for hits in found]

        def cosines(found):
            return [h.cosine for hits in found for h in hits]

        assert exact(batch) == exact(one_at_a_time)
        # questions encoded together are padded otherwise than one at a time: their cosines differ by float rounding
        np.testing.assert_allclose(cosines(batch), cosines(one_at_a_time), atol=1e-5)
        assert asked["/shard/bm25/holding"] == asked["/shard/dense"] == len(urls)
        assert 1 <= asked["/shard/bm25/top"] <= len(urls) and asked["/shard/bm25/at"] <= len(urls)
        assert asked["/shard/passages"] <= len(urls) and asked["/shard/vectors"] <= len(urls)


def test_a_rebuilt_or_stopped_shard_is_refused_by_name(sharded, tiny_models, tmp_path):
    root = tmp_path / "shards"
    first = _build(sharded["root"] / "corpus", root / "a", tiny_models).path
    with _served([first]) as (url,):
        joined = join_shards([url], tmp_path / "joined").path
        _build(sharded["root"] / "corpus", root / "a", tiny_models)  # rebuilt while served: another build
        with pytest.raises(QAError, match="now serves another build.*join the shards again"):
            Index(joined)
        assert not check_index(joined).ok
    with pytest.raises(QAError, match=f"cannot reach the shard server at {url}"):
        Index(joined)
    problems = check_index(joined).problems
    assert len(problems) == 1 and url in problems[0] and "cannot reach" in problems[0]


def test_shards_built_unlike_each_other_are_not_joined_and_a_joined_index_is_not_added_to(sharded, tiny_models, tmp_path):
    other = build_index(sharded["root"] / "corpus", tmp_path / "words", embedding=EmbeddingOptions(str(tiny_models["encoder"])),
                        passages=PassageOptions(max_words=20, overlap_words=4)).path
    with _served([sharded["shards"][0], other]) as urls:
        with pytest.raises(QAError, match="built unlike.*passages"):
            join_shards(urls, tmp_path / "joined")
        assert not (tmp_path / "joined").exists()
        with pytest.raises(QAError, match="listed twice"):
            join_shards([urls[0], urls[0]], tmp_path / "joined")
        joined = join_shards(urls[:1], tmp_path / "joined").path
        with pytest.raises(QAError, match="joins shards served by other machines"):
            _build(sharded["root"] / "corpus", joined, tiny_models, add=True)
        assert Index(joined).remote  # unchanged


def test_served_shards_with_a_token_need_it_on_the_joining_machine(sharded, tmp_path, monkeypatch):
    monkeypatch.delenv("QA_SHARD_TOKEN", raising=False)
    with _served(sharded["shards"][:1], token="s3cret") as (url,):
        assert call(url, "GET", "/health")[0] == 200
        status, _, body = call(url, "GET", "/shard")
        assert status == 401 and "token" in body["error"]["message"]
        with pytest.raises(QAError, match="answered 401.*QA_SHARD_TOKEN"):
            join_shards([url], tmp_path / "joined")
        monkeypatch.setenv("QA_SHARD_TOKEN", "s3cret")
        index = Index(join_shards([url], tmp_path / "joined").path)
        assert len(index.store.get([0, 1])) == 2
        status, _, body = call(url, "POST", "/shard/passages", {"ids": [10_000]}, token="s3cret")
        assert status == 400 and "passage numbers of this shard lie in 0.." in body["error"]["message"]


def test_qa_index_join_and_check_on_the_command_line(sharded, tmp_path):
    runner = CliRunner()
    with _served(sharded["shards"]) as urls:
        joined = tmp_path / "joined"
        result = runner.invoke(app, ["index", *[arg for url in urls for arg in ("--join", url)], "--index", str(joined)])
        assert result.exit_code == 0, result.output
        assert f"Joined {len(urls)} served shards" in result.output
        result = runner.invoke(app, ["index", "--check", str(joined), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["ok"] is True
        result = runner.invoke(app, ["index", str(sharded["root"] / "corpus"), "--join", urls[0], "--index", str(joined)])
        assert result.exit_code != 0 and "reads no corpus" in result.output
    result = runner.invoke(app, ["serve-shard", "--index", str(sharded["whole"]), "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "--token" in result.output
