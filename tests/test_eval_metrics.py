import numpy as np
import pytest

from qa.eval.retrieval import contains_answer, first_relevant, mean_reciprocal_rank, recall_curve
from qa.corpora.squad import sample_examples
from qa.metrics import squad_scores
from qa.corpora.squad import Example


def test_unanswerable_questions_score_as_squad2_does():
    assert squad_scores("", ()) == (1.0, 1.0)
    assert squad_scores("The", ()) == (1.0, 1.0)  # normalises to empty: an abstention
    assert squad_scores("Paris", ()) == (0.0, 0.0)
    assert squad_scores("", ("Paris",)) == (0.0, 0.0)
    assert squad_scores("in Paris", ("Paris",)) == (0.0, pytest.approx(2 / 3))


def test_contains_answer_matches_whole_normalised_words():
    assert contains_answer("Built in 1889, the tower...", ["1889"])
    assert contains_answer("Gustave Eiffel's company", ["gustave eiffels company."])
    assert not contains_answer("Built in 18890.", ["1889"])
    assert not contains_answer("anything", ["the"])  # an answer that normalises to nothing


def test_recall_curve_and_mrr_on_hand_computed_ranks():
    ranks = [1, 3, None, 2]
    assert first_relevant([False, False, True]) == 3 and first_relevant([False]) is None
    checked = []

    def relevant(flags):  # what the evaluation passes: checks made one at a time
        for flag in flags:
            checked.append(flag)
            yield flag

    assert first_relevant(relevant([False, True, False, True])) == 2 and checked == [False, True]  # no check after the first
    curve = recall_curve(ranks, depth=4)
    assert np.allclose(curve, [0.25, 0.5, 0.75, 0.75])
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)


def test_sample_is_seeded_and_keeps_order_without_limit():
    examples = [Example(str(i), "q", ("a",), "d", "t") for i in range(50)]
    assert sample_examples(examples, None, 0) == examples
    assert sample_examples(examples, 10, 1) == sample_examples(examples, 10, 1)
    assert sample_examples(examples, 10, 1) != sample_examples(examples, 10, 2)
    assert len(sample_examples(examples, 500, 0)) == 50
