"""Retrieval metrics: recall@k and MRR, by answer string and by gold paragraph."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from qa.metrics import normalize_answer


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """True when a gold answer occurs in ``text`` as whole words, after SQuAD normalisation."""
    haystack = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(a)} " in haystack for a in answers if normalize_answer(a))


def first_relevant(relevant: Iterable[bool]) -> int | None:
    """1-based rank of the first relevant passage, or None. Pass a generator to stop checking at
    the first relevant one (checking a passage for an answer normalises its text)."""
    return next((i + 1 for i, r in enumerate(relevant) if r), None)


def recall_curve(first_ranks: Sequence[int | None], depth: int) -> np.ndarray:
    """``curve[k - 1]`` = fraction of questions with a relevant passage in the top ``k``."""
    curve = np.zeros(depth)
    for rank in first_ranks:
        if rank is not None and rank <= depth:
            curve[rank - 1 :] += 1
    return curve / max(len(first_ranks), 1)


def mean_reciprocal_rank(first_ranks: Sequence[int | None]) -> float:
    return float(np.mean([1.0 / r if r else 0.0 for r in first_ranks])) if first_ranks else 0.0
