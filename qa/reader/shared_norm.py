"""Shared normalisation (``qa train reader --shared-norm``): a question's passages trained together.

The pipeline compares span scores across the ten passages it retrieves, but a reader trained one
window at a time only learns to rank spans *within* a window: its scores mean nothing across
passages. Here every batch holds whole questions (all the windows of the gold passage and of the
retrieved passages that ``qa train open-data`` wrote beside it), and the start and end
distributions are softmaxes over all the tokens of a question's windows together, with the
gold answer's positions as the target (Clark & Gardner 2018, "Simple and Effective Multi-Paragraph
Reading Comprehension"; Wang et al. 2019, "Multi-passage BERT").

A question whose passages are all unanswerable (a SQuAD v2.0 question without an answer, or, with
``unanswerable_fraction``, a training question whose gold passage is left out for an epoch) has
[CLS] as its target: the [CLS] positions of all its windows together. That is the no-answer
signal abstention needs: the reader learns to score [CLS] above every span when no passage
answers. A question with an answer none of whose windows holds it whole (the windows cut it)
teaches nothing and is skipped.
"""

from __future__ import annotations

import numpy as np
import torch

from qa.reader.features import LENGTH_SORT_BATCHES


def question_batches(
    questions: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    answerable: np.ndarray | None = None,
    unanswerable_fraction: float = 0.0,
) -> list[np.ndarray]:
    """The batches of one epoch, each made of whole questions (``questions[i]`` is feature i's
    question): a seeded shuffle of the questions, sorted by their longest feature within windows
    of about 50 batches, packed into batches of at most ``batch_size`` features (a question with
    more features than that is a batch alone), then the batches shuffled. Same seed, same batches.

    With ``unanswerable_fraction``, that fraction of the questions that have both answerable
    features and unanswerable ones (``answerable[i]`` False: a retrieved negative) keep only the
    unanswerable ones this epoch (a different draw each epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = np.argsort(questions, kind="stable")
    bounds = np.flatnonzero(np.diff(questions[order])) + 1
    members = np.split(order, bounds) if len(order) else []
    if unanswerable_fraction > 0 and answerable is not None:
        drop = np.random.default_rng([seed, epoch, 1]).random(len(members)) < unanswerable_fraction
        for q in np.flatnonzero(drop):
            negatives = members[q][~answerable[members[q]]]
            if 0 < len(negatives) < len(members[q]):
                members[q] = negatives
    longest = np.array([lengths[m].max() for m in members])
    shuffled = rng.permutation(len(members))
    per_window = max(1, LENGTH_SORT_BATCHES * batch_size * len(members) // max(1, len(order)))
    out: list[np.ndarray] = []
    for first in range(0, len(shuffled), per_window):
        chunk = shuffled[first : first + per_window]
        current: list[np.ndarray] = []
        size = 0
        for q in chunk[np.argsort(longest[chunk], kind="stable")]:
            if current and size + len(members[q]) > batch_size:
                out.append(np.concatenate(current))
                current, size = [], 0
            current.append(members[q])
            size += len(members[q])
        if current:
            out.append(np.concatenate(current))
    rng.shuffle(out)
    return out


def shared_norm_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    attention_mask: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    questions: torch.Tensor,
    answerable: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch's questions of the negative log-likelihood of the gold start and end,
    each a softmax over every (unpadded) token of the question's windows. A window whose label is
    not [CLS] (0) holds the answer; when several do (overlapping windows), their probabilities add.
    A question with no answerable row (``answerable``; when not given, every row counts as
    answerable) has the [CLS] positions of its windows as the target."""
    total = start_logits.new_zeros((), dtype=torch.float32)
    both = (start_logits.float(), end_logits.float())  # once for the batch, not once per question
    counted = 0
    for question in torch.unique(questions):
        rows = torch.nonzero(questions == question).squeeze(1)
        positive = rows[starts[rows] > 0]
        if len(positive) > 0:
            targets = ((positive, starts[positive]), (positive, ends[positive]))
        elif answerable is not None and not answerable[rows].any():
            cls = torch.zeros_like(rows)
            targets = ((rows, cls), (rows, cls))
        else:
            continue
        tokens = attention_mask[rows].bool()
        for scores, (at_rows, at_columns) in zip(both, targets):
            total = total + torch.logsumexp(scores[rows][tokens], 0) - torch.logsumexp(scores[at_rows, at_columns], 0)
        counted += 1
    if counted == 0:  # no answer in the batch: a zero that still reaches the graph
        return (start_logits.sum() + end_logits.sum()).float() * 0.0
    return total / (2 * counted)
