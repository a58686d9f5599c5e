"""Searching only the documents that meet conditions (`qa ask --where "publish_time>=2021"`): the
conditions, the passages they select, and retrieval restricted to them, the same whether each
passage of the subset is scored or the whole index's rankings are read deeper."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.errors import QAError
from qa.index import Index
from qa.index.where import DOCUMENT_FIELDS, Condition, fields_named, parse_where, row_test
from qa.indexer import EmbeddingOptions, LayoutOptions, PassageOptions, build_index
from qa.pipeline import Pipeline
from qa.retriever import make_retriever
from qa.retriever import retrievers as retrievers_module

WORDS = "virus cytokine lung vaccine trial mask school children fever cough ventilator antibody".split()
QUESTIONS = ["Which cytokine rises in the lung?", "vaccine trial antibody", "children fever cough at school"]


@pytest.mark.parametrize(
    "text, value, holds",
    [
        ("publish_time>=2021", "2021-03-01", True),
        ("publish_time>=2021", "2020-12-31", False),
        ("publish_time<=2020", "2020-12-31", True),  # compared at the precision written: all of 2020
        ("publish_time<2020-06", "2020-05-31", True),
        ("publish_time<2020-06", "2020-06-01", False),
        ("publish_time>2020", "2020-07", False),
        ("year>=2019", 2021, True),  # numbers as numbers
        ("year<10", 9, True),
        ("year<10", "9", True),
        ("year<10", 10.5, False),
        ("journal=the lancet", "The Lancet", True),  # equal ignoring case
        ("journal=Lancet", "The Lancet", False),
        ("journal=*lancet*", "The Lancet Infectious Diseases", True),
        ("journal!=*lancet*", "Nature", True),
        ("journal!=*lancet*", "The Lancet", False),
        ("authors~smith", "Smith, J.; Doe, A.", True),
        ("authors~smith", "Doe, A.", False),
    ],
)
def test_a_condition_compares_as_documented(text, value, holds):
    assert Condition.parse(text).holds(value) is holds


def test_missing_fields_read_as_empty_and_lists_hold_when_an_item_does():
    assert Condition.parse("journal!=Nature").holds(None) and not Condition.parse("journal=Nature").holds(None)
    assert not Condition.parse("publish_time>=2021").holds(None)
    assert not any(Condition.parse(f"publish_time{op}2021").holds(empty) for op in ("<", "<=", ">", ">=") for empty in (None, "", " "))
    tags = Condition.parse("tags=covid*")
    assert tags.holds(["flu", "COVID-19"]) and not tags.holds(["flu"]) and not tags.holds([])
    fields = {"id": "a/b.md", "title": "T", "source": "a/b.md"}
    assert document_meets(parse_where(["id=a/*", "year>=2020"]), fields, {"year": 2020})
    assert not document_meets(parse_where(["id=a/*", "year>=2020"]), fields, {"year": 2019})


def test_conditions_are_read_from_their_text_and_written_back_the_same():
    assert Condition.parse("  publish_time >= 2021 ") == Condition("publish_time", ">=", "2021")
    assert Condition.parse("title~a = b") == Condition("title", "~", "a = b")  # the first operator splits
    assert str(Condition.parse("journal != x")) == "journal!=x"
    assert parse_where([str(c) for c in parse_where(["a<=1", "b~c"])]) == parse_where(["a<=1", "b~c"])
    for bad in ["journal", "=Lancet", "journal=", ">= 2021"]:
        with pytest.raises(QAError, match="FIELD OP VALUE"):
            Condition.parse(bad)
    with pytest.raises(QAError, match="list of conditions"):
        parse_where("year>=2020")


def document_meets(conditions, fields: dict, metadata: dict) -> bool:
    """The store's test of one document, from its fields (id, title, source) and whole metadata."""
    return row_test(conditions)([fields[f] if f in DOCUMENT_FIELDS else metadata.get(f) for f in fields_named(conditions)])


def _corpus(root, documents=40, seed=0):
    """JSON Lines records with a year and a journal, kept as metadata."""
    rng = random.Random(seed)
    root.mkdir()
    lines = []
    for i in range(documents):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40))).capitalize() + "."
        lines.append(json.dumps({"id": f"p{i:02d}", "title": f"Paper {i}", "text": text,
                                 "year": 2018 + i % 5, "journal": ["The Lancet", "Nature", "BMJ"][i % 3],
                                 "tags": rng.sample(WORDS, 2), "reviewed": i % 4 == 0, "extra": {"pages": i}}))
    (root / "papers.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def papers(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("where")
    corpus = _corpus(root / "corpus")
    options = {"embedding": EmbeddingOptions(str(tiny_models["encoder"])), "passages": PassageOptions(max_words=12, overlap_words=4)}
    whole = build_index(corpus, root / "whole", **options).path
    sharded = build_index(corpus, root / "sharded", layout_options=LayoutOptions(shard_passages=9), **options).path
    return {"whole": whole, "sharded": sharded}


def _meeting(index: Index, where: list[str]) -> set[int]:
    """The passages whose documents meet ``where``, found by reading every passage's metadata."""
    conditions = parse_where(where)
    passages = index.store.get(list(range(len(index))))
    metadata = index.store.metadata(p.doc_id for p in passages)
    return {p.idx for p in passages
            if document_meets(conditions, {"id": p.doc_id, "title": p.title, "source": p.source}, metadata[p.doc_id])}


@pytest.mark.parametrize("where", [["year>=2021"], ["journal=nature", "year<2020"], ["id=p0*"], ["title~paper 3"], ["tags=lung"],
                                   ["reviewed=true"], ["reviewed!=TRUE", "extra~pages"]])
def test_the_passages_where_are_those_whose_documents_meet_the_conditions_sharded_or_not(papers, where):
    whole, sharded = Index(papers["whole"]), Index(papers["sharded"])
    assert len(sharded.shards) >= 3
    expected = sorted(_meeting(whole, where))
    assert 0 < len(expected) < len(whole)
    assert whole.store.passages_where(parse_where(where)).tolist() == expected
    assert sharded.store.passages_where(parse_where(where)).tolist() == expected
    assert whole.store.passages_where(parse_where(["year>2100"])).tolist() == []
    assert whole.store.metadata_fields() == sharded.store.metadata_fields() == {"year", "journal", "tags", "reviewed", "extra"}


@pytest.mark.parametrize("kind", ["bm25", "dense"])
@pytest.mark.parametrize("exact_within", [retrievers_module.EXACT_WITHIN, 0])
def test_a_search_within_ranks_the_subset_as_the_whole_ranking_does(papers, kind, exact_within, monkeypatch):
    """Scored passage by passage (the subset is small) or read from ever deeper whole-index
    rankings (EXACT_WITHIN 0), the best passages of the subset are the whole ranking's, filtered."""
    monkeypatch.setattr(retrievers_module, "EXACT_WITHIN", exact_within)
    index = Index(papers["whole"]).load()
    retriever = make_retriever(index, kind)
    within = index.store.passages_where(parse_where(["year>=2021"]))
    allowed = set(within.tolist())
    for question in QUESTIONS:
        everything = retriever.search(question, len(index))
        expected = [h for h in everything if h.passage.idx in allowed][:5]
        found = retriever.search(question, 5, within=within)
        assert [h.passage.idx for h in found] == [h.passage.idx for h in expected]
        assert [h.score for h in found] == pytest.approx([h.score for h in expected], abs=1e-4)
        assert [h.rank for h in found] == list(range(1, len(found) + 1))
        assert all(h.bm25 is not None and h.cosine is not None for h in found)
        assert retriever.search(question, 5, within=np.concatenate([within[::-1], within[:3]])) == found  # any order, repeats


@pytest.mark.parametrize("exact_within", [retrievers_module.EXACT_WITHIN, 0])
def test_a_hybrid_search_within_fuses_the_subsets_rankings(papers, exact_within, monkeypatch):
    monkeypatch.setattr(retrievers_module, "EXACT_WITHIN", exact_within)
    index = Index(papers["sharded"]).load()
    within = index.store.passages_where(parse_where(["journal=BMJ"]))
    hybrid, allowed = make_retriever(index, "hybrid"), set(within.tolist())
    bm25, dense = make_retriever(index, "bm25"), make_retriever(index, "dense")
    for question in QUESTIONS:
        found = hybrid.search(question, 4, within=within)
        fused = retrievers_module.reciprocal_rank_fusion(
            [[(h.passage.idx, h.score) for h in r.search(question, len(index), within=within)] for r in (bm25, dense)],
            k=hybrid.rrf_k, weights=hybrid.weights,
        )
        assert [h.passage.idx for h in found] == [i for i, _ in fused[:4]]
        assert {h.passage.idx for h in found} <= allowed
    assert hybrid.search(QUESTIONS[0], 4, within=np.zeros(0, dtype=np.int64)) == []


def test_pipeline_and_qa_ask_search_only_the_documents_that_meet_where(papers, tiny_models):
    pipeline = Pipeline(papers["whole"], reader=str(tiny_models["reader"]), precision="fp32", abstention=None)
    prediction = pipeline.ask(QUESTIONS[0], top_k=5, where=["year>=2021", "journal!=nature"])
    assert prediction.where == ["year>=2021", "journal!=nature"] and prediction.hits and prediction.answers
    assert prediction.searched == len(_meeting(pipeline.index, prediction.where)) and pipeline.ask(QUESTIONS[0]).searched is None
    years = pipeline.index.store.metadata(h.passage.doc_id for h in prediction.hits)
    assert all(m["year"] >= 2021 and m["journal"] != "Nature" for m in years.values())
    assert all(a.metadata["year"] >= 2021 for a in prediction.answers)
    with pytest.raises(QAError, match="no document in the index meets year>=2100: nothing to search$"):
        pipeline.ask(QUESTIONS[0], where=["year>=2100"])
    with pytest.raises(QAError, match=r"no document has the field 'yaer' \(the fields: extra, id, journal, reviewed, source, tags, title, year\)"):
        pipeline.ask(QUESTIONS[0], where=["yaer>=2020"])  # a misspelt field is named, with the fields there are

    runner = CliRunner()
    result = runner.invoke(app, ["ask", QUESTIONS[0], "--index", str(papers["whole"]), "--reader", str(tiny_models["reader"]),
                                 "--where", "journal=BMJ", "-w", "year<=2019", "--json", "--always-answer"])
    assert result.exit_code == 0, result.output
    answered = json.loads(result.stdout)
    assert answered["where"] == ["journal=BMJ", "year<=2019"] and answered["passages"]
    assert {p["document"] for p in answered["passages"]} <= {f"p{i:02d}" for i in range(40) if i % 3 == 2 and 2018 + i % 5 <= 2019}
    assert answered["searched_passages"] == len(_meeting(Index(papers["whole"]), ["journal=BMJ", "year<=2019"]))
    text = runner.invoke(app, ["ask", QUESTIONS[0], "--index", str(papers["whole"]), "--reader", str(tiny_models["reader"]),
                               "--where", "journal=BMJ", "-w", "year<=2019", "--always-answer"]).stdout
    assert text.startswith(f"Searched the {answered['searched_passages']} passages of the documents where journal=BMJ and year<=2019.\n")
    result = runner.invoke(app, ["ask", QUESTIONS[0], "--index", str(papers["whole"]), "--where", "year"])
    assert result.exit_code == 1 and "FIELD OP VALUE" in result.output and "Traceback" not in result.output


def test_qa_info_lists_the_fields_where_can_use(papers):
    runner = CliRunner()
    result = runner.invoke(app, ["info", "--index", str(papers["sharded"]), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["fields"] == ["id", "title", "source", "extra", "journal", "reviewed", "tags", "year"]
    assert described["counts"] == Index(papers["whole"]).manifest["counts"] and described["shards"] >= 3
    assert described["dense"]["dim"] == Index(papers["whole"]).manifest["dense"]["dim"]
    text = runner.invoke(app, ["info", "-i", str(papers["whole"])]).stdout
    assert "40 documents" in text and "fields for --where: id, title, source, extra, journal, reviewed, tags, year" in text
    assert "shards" not in text
    result = runner.invoke(app, ["info", "-i", str(papers["whole"].parent / "nowhere")])
    assert result.exit_code == 1 and "no index at" in result.output
