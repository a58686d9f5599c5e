import pytest

from qa.metrics import exact_match, f1_score, max_over_answers, normalize_answer


def test_normalisation_matches_the_official_squad_rules():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an Apple, a pear and THE plum") == "apple pear and plum"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_and_f1_on_hand_computed_cases():
    assert exact_match("the Eiffel Tower", "Eiffel tower.") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # "gustave eiffels company" vs "gustave eiffel": 1 common token, P 1/3, R 1/2 -> F1 0.4
    assert f1_score("Gustave Eiffel's company", "Gustave Eiffel") == pytest.approx(0.4)
    # "gustave eiffel company" vs "gustave eiffel": 2 common tokens, P 2/3, R 1 -> F1 0.8
    assert f1_score("Gustave Eiffel company", "Gustave Eiffel") == pytest.approx(0.8)
    assert f1_score("a", "the") == 0.0  # both normalise to nothing
    assert f1_score("Paris", "Lyon") == 0.0


def test_max_over_gold_answers():
    assert max_over_answers(exact_match, "1889", ["in 1889", "1889"]) == 1.0
    # "in 1889" vs "1889": precision 1/2, recall 1 -> 2/3; vs "May 1889": 1/2 and 1/2 -> 1/2
    assert max_over_answers(f1_score, "in 1889", ["1889", "May 1889"]) == pytest.approx(2 / 3)
    assert max_over_answers(f1_score, "x", []) == 0.0
