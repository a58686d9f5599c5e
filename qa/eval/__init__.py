"""Evaluation: official SQuAD answer normalisation, exact match and F1."""

from qa.eval.squad_metrics import exact_match, f1_score, max_over_answers, normalize_answer

__all__ = ["exact_match", "f1_score", "max_over_answers", "normalize_answer"]
