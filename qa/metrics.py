"""Exact match and token F1 with the answer normalisation of the official SQuAD v1.1 scorer:
lower-case, remove punctuation, remove the articles a/an/the, collapse white space."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_answers(metric: Callable[[str, str], float], prediction: str, truths: Iterable[str]) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    return max((metric(prediction, t) for t in truths), default=0.0)


def squad_scores(prediction: str, answers: Iterable[str]) -> tuple[float, float]:
    """(EM, F1) of ``prediction`` as the official scorers compute them; an unanswerable question
    (no answers) is right only when the prediction is empty (SQuAD 2.0)."""
    answers = list(answers)
    if not answers:
        right = float(normalize_answer(prediction) == "")
        return right, right
    return max_over_answers(exact_match, prediction, answers), max_over_answers(f1_score, prediction, answers)
