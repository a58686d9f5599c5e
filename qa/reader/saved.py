"""A trained reader as ``qa train`` leaves it: its weights saved in a chosen precision, its
exact match and F1 on gold paragraphs, and its model card, which names the runs it came from.
Shared by ``qa train reader`` (:mod:`qa.reader.train`) and ``qa train merge`` (:mod:`qa.reader.merge`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from qa import training
from qa.corpora.squad import load_squad, sample_examples
from qa.errors import QAError
from qa.fsutil import share_like_create
from qa.hub import resolve_model
from qa.metrics import squad_scores
from qa.reader.reader import Reader, reader_folder

EVAL_QUESTION_BATCH = 16  # questions read in one reader call by gold_scores
SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def save_reader(output: Path, model, tokenizer, save_dtype: str) -> None:
    """Save the model in ``save_dtype`` (:data:`SAVE_DTYPES`; it stays float32 in memory) and the
    tokenizer to ``output``, with the file modes a plain ``open`` gives."""
    model.to(SAVE_DTYPES[save_dtype])
    started = time.time() - 1  # file times can be a little coarse
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    share_like_create(output, written_since=started)
    model.to(torch.float32)


def gold_scores(reader_dir: Path, eval_file: str, eval_limit: int | None, device: str) -> dict[str, Any]:
    """EM/F1 of the reader saved in ``reader_dir`` on ``eval_file`` with each question's gold
    paragraph (``eval_limit`` questions drawn with seed 1), for the metrics and the model card."""
    started = time.perf_counter()
    reader = Reader(reader_dir, device=device)
    data = load_squad(eval_file)
    examples = sample_examples(data.examples, eval_limit, seed=1)
    texts = {d.id: d.text for d in data.documents}
    predictions: list[str] = []
    for first in range(0, len(examples), EVAL_QUESTION_BATCH):
        group = examples[first : first + EVAL_QUESTION_BATCH]
        predictions += reader.best_answers([e.question for e in group], [texts[e.doc_id] for e in group])
    scores = [squad_scores(p, e.answers) for p, e in zip(predictions, examples)]
    return {
        "eval_file": eval_file,
        "eval_questions": len(examples),
        "exact_match": round(100 * statistics.fmean(s[0] for s in scores), 2),
        "f1": round(100 * statistics.fmean(s[1] for s in scores), 2),
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


CARD_MARK = training.card_mark("reader")
MERGE_MARK = training.card_mark("merge")


def qa_card(base: str) -> str | None:
    """The model card of a reader that ``qa train reader`` or ``qa train merge`` made, else None."""
    try:
        folder = resolve_model(reader_folder(base))
    except QAError:
        return None
    return training.written_card(folder, "reader", "merge")


def gold_scores_lines(metrics: dict[str, Any]) -> list[str]:
    """The model card's lines for :func:`gold_scores` in ``metrics`` (none when not measured)."""
    if "exact_match" not in metrics:
        return []
    return [
        f"Measured on `{metrics['eval_file']}` with each question's gold paragraph ({metrics['eval_questions']} questions, "
        f"max length 384, stride 128, max answer length 30 tokens, official SQuAD normalisation): "
        f"**exact match {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f}**.",
        "",
    ]


def without_repeat(section: list[str], earlier: list[str], name: str) -> list[str]:
    """``section`` (lines of :func:`qa.training.card_section`) with the card of ``earlier``, a section given
    above it, replaced by a line that points there where ``section`` holds that card too (at
    another heading level): averaging a reader with one trained from it would otherwise give the
    same chain twice, and each such merge would double the card."""
    def plain(line: str) -> str:
        return line.lstrip("#").strip()

    body = [plain(line) for line in earlier[2:]]
    while body and not body[-1]:
        body.pop()
    if not body:
        return section
    lines = [plain(line) for line in section]
    for start in range(2, len(lines) - len(body) + 1):
        if lines[start : start + len(body)] == body:
            return [*section[:start], f"The reader `{name}`, whose card is given above.", *section[start + len(body) :]]
    return section
