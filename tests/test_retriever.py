import numpy as np
import pytest

from qa.errors import QAError
from qa.index.analysis import analyze, analyze_corpus
from qa.retriever import HybridRetriever, Index, make_retriever, reciprocal_rank_fusion
from qa.retriever.retrievers import HYBRID_WEIGHTS


def test_analyzer_lowercases_stems_and_drops_stop_words():
    assert analyze("The Towers are BUILT in Paris") == ["tower", "built", "pari"]
    assert analyze("the of and") == []


def test_corpus_analysis_gives_each_text_its_terms_as_ids_of_one_vocabulary():
    texts = ["The Towers are BUILT in Paris", "the of and", "Paris towers, Paris!"]
    ids, vocab = analyze_corpus(texts)
    terms = {i: term for term, i in vocab.items()}
    assert [[terms[i] for i in doc] for doc in ids] == [analyze(t) for t in texts]
    assert sorted(vocab.values()) == list(range(len(vocab))) == [0, 1, 2]
    assert ids[2] == [2, 0, 2]


def test_reciprocal_rank_fusion_on_a_hand_computed_case():
    fused = reciprocal_rank_fusion([[(1, 9.0), (2, 8.0)], [(2, 0.9), (3, 0.8)]], k=60)
    assert [d for d, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1][1] == pytest.approx(1 / 61) and fused[2][1] == pytest.approx(1 / 62)


def test_weighted_fusion_lets_the_heavier_ranking_lead():
    bm25, dense = [(1, 9.0), (2, 8.0)], [(3, 0.9), (1, 0.8)]
    fused = reciprocal_rank_fusion([bm25, dense], k=10, weights=(1.0, 0.5))
    assert [d for d, _ in fused] == [1, 2, 3]
    assert fused[0][1] == pytest.approx(1 / 11 + 0.5 / 12)
    assert fused[1][1] == pytest.approx(1 / 12) and fused[2][1] == pytest.approx(0.5 / 11)
    assert [d for d, _ in reciprocal_rank_fusion([bm25, dense], k=10, weights=(0.5, 1.0))] == [1, 3, 2]
    with pytest.raises(ValueError, match="1 weights for 2 rankings"):
        reciprocal_rank_fusion([bm25, dense], weights=(1.0,))


@pytest.fixture(scope="module")
def index(tiny_index):
    return Index(tiny_index)


def test_bm25_finds_the_document_with_the_words(index):
    hits = make_retriever(index, "bm25").search("Who was the engineer of the Eiffel Tower?", 3)
    assert hits[0].passage.doc_id == "eiffel.md"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_with_no_known_term_returns_nothing(index):
    assert make_retriever(index, "bm25").search("zzzz qqqq", 5) == []


@pytest.mark.parametrize("kind", ["dense", "hybrid"])
def test_dense_and_hybrid_return_k_distinct_passages(index, kind):
    hits = make_retriever(index, kind).search("mailman", 3)
    assert len(hits) == 3 and len({h.passage.idx for h in hits}) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_k_larger_than_the_index_is_clamped(index):
    assert len(make_retriever(index, "dense").search("cat", 1000)) == len(index)
    assert len(make_retriever(index, "hybrid").search("cat", 1000)) == len(index)


def _ranking(hits):
    return [(h.passage.idx, h.score) for h in hits]


def test_hybrid_ranks_a_bm25_and_dense_agreement_first(index):
    hybrid = make_retriever(index, "hybrid")
    bm25 = _ranking(make_retriever(index, "bm25").search("cat mat", 50))
    dense = _ranking(make_retriever(index, "dense").search("cat mat", 50))
    assert _ranking(hybrid.search("cat mat", 50)) == reciprocal_rank_fusion([bm25, dense], weights=HYBRID_WEIGHTS)
    plain = HybridRetriever(index, rrf_k=60, weights=(1.0, 1.0))
    assert _ranking(plain.search("cat mat", 50)) == reciprocal_rank_fusion([bm25, dense], k=60)


def test_unknown_retriever_is_a_clear_error(index):
    with pytest.raises(QAError, match="unknown retriever 'fuzzy'"):
        make_retriever(index, "fuzzy")


@pytest.mark.parametrize("kind", ["bm25", "dense", "hybrid"])
def test_every_hit_carries_its_bm25_score_and_cosine_from_one_pass_per_question(tiny_index, kind, monkeypatch):
    index = Index(tiny_index)
    questions = ["Who was the engineer of the Eiffel Tower?", "What do plants release?"]
    calls, encoded = [], []
    score_all = index.bm25.get_scores_from_ids
    monkeypatch.setattr(index.bm25, "get_scores_from_ids", lambda ids: calls.append(ids) or score_all(ids))
    encode = index.question_encoder.encode
    monkeypatch.setattr(index.question_encoder, "encode", lambda texts: encoded.append(list(texts)) or encode(texts))
    results = make_retriever(index, kind).search_batch(questions, 4)
    assert len(calls) == 2 and encoded == [questions]  # one BM25 pass per question, one encoder call
    for question, hits in zip(questions, results):
        every = score_all(index.bm25.get_tokens_ids(analyze(question)))
        vector = encode([question])[0]
        for hit in hits:
            assert hit.bm25 == pytest.approx(float(every[hit.passage.idx]))
            assert hit.cosine == pytest.approx(float(index.vectors[hit.passage.idx].astype("float32") @ vector), abs=1e-6)
            if kind == "bm25":
                assert hit.bm25 == pytest.approx(hit.score)


def test_a_bm25_search_without_evidence_needs_no_encoder(tiny_index, monkeypatch):
    index = Index(tiny_index)
    monkeypatch.setattr(Index, "question_encoder", property(lambda self: pytest.fail("the encoder was loaded")))
    hits = make_retriever(index, "bm25").search("Eiffel Tower", 2, evidence=False)
    assert hits and all(h.cosine is None and h.bm25 is None for h in hits)


def test_top_k_breaks_ties_by_position_even_across_the_cut():
    """Tied scores at the k-th place: the lowest positions are taken (argpartition alone takes any)."""
    from qa.index.scores import top_k

    rng = np.random.default_rng(0)
    for _ in range(500):
        scores = rng.integers(0, 4, rng.integers(1, 40)).astype(np.float32)
        k = int(rng.integers(1, len(scores) + 1))
        assert [i for i, _ in top_k(scores, k)] == sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    assert top_k(np.array([1, 3, 2, 3, 3, 0.5], dtype=np.float32), 2) == [(1, 3.0), (3, 3.0)]
