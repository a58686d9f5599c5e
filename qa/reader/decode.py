"""Vectorised n-best span decoding from start/end logits.

A span (i, j) of a feature scores ``start_logits[i] + end_logits[j]``; it is valid when both
tokens lie in the passage (``context_mask``), ``i <= j`` and ``j - i < max_answer_tokens``.
Only the ``L x max_answer_tokens`` band of candidate spans is scored, for a whole batch at once.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_mask: np.ndarray,
    max_answer_tokens: int = 30,
    n_best: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_best`` highest-scoring valid spans of each feature.

    Arguments are ``(batch, length)`` arrays. Returns ``(starts, ends, scores)``, each
    ``(batch, n)`` with ``n = min(n_best, length * max_answer_tokens)``, best first; where a
    feature has fewer valid spans the rest have score ``-inf`` (and must be ignored).
    """
    start_logits = np.asarray(start_logits, dtype=np.float32)
    end_logits = np.asarray(end_logits, dtype=np.float32)
    context_mask = np.asarray(context_mask, dtype=bool)
    batch, length = start_logits.shape
    width = max_answer_tokens
    # end_windows[b, i, d] = end_logits[b, i + d], padded past the end with invalid positions
    end_padded = np.concatenate([end_logits, np.zeros((batch, width - 1), np.float32)], axis=1)
    mask_padded = np.concatenate([context_mask, np.zeros((batch, width - 1), bool)], axis=1)
    end_windows = sliding_window_view(end_padded, width, axis=1)
    mask_windows = sliding_window_view(mask_padded, width, axis=1)

    scores = start_logits[:, :, None] + end_windows
    valid = context_mask[:, :, None] & mask_windows
    flat = np.where(valid, scores, -np.inf).reshape(batch, length * width)

    n = min(n_best, flat.shape[1])
    top = np.argpartition(-flat, n - 1, axis=1)[:, :n]
    top_scores = np.take_along_axis(flat, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    starts = top // width
    return starts, starts + top % width, top_scores
