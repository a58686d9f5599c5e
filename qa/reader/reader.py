"""Extractive reader: answer spans for (question, passage) pairs from any
``AutoModelForQuestionAnswering`` checkpoint, batched and length-sorted."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from qa.device import autocast, choose_precision, pick_device
from qa.errors import QAError
from qa.hub import load_error, quiet_transformers, resolve_model
from qa.reader.decode import best_spans

READER_ENV = "QA_READER"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerSpan:
    """An answer candidate in passage ``passage``: ``text == passages[passage][start:end]``.

    ``score`` is the sum of the start and end logits (comparable across passages of one question).
    """

    passage: int
    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class ReaderOutput:
    """Spans for a batch of (question, passage) pairs, and each pair's no-answer score: the
    [CLS] start + end logits, lowest over the pair's windows (meaningful for readers trained
    on SQuAD 2.0)."""

    spans: list[AnswerSpan]
    null_scores: np.ndarray

    def abstains(self, span: AnswerSpan, threshold: float | None) -> bool:
        """True when ``threshold`` is set and ``span`` does not beat its pair's no-answer score
        by that much."""
        return threshold is not None and span.score - self.null_scores[span.passage] < threshold

    def part(self, lo: int, hi: int) -> ReaderOutput:
        """The output for pairs ``lo`` to ``hi - 1`` of the batch, numbered from 0 again."""
        spans = [replace(s, passage=s.passage - lo) for s in self.spans if lo <= s.passage < hi]
        return ReaderOutput(spans, self.null_scores[lo:hi])


def default_reader_path() -> Path | None:
    """The reader shipped inside the package, if this installation has one."""
    folder = resources.files("qa.reader").joinpath("default")
    path = Path(str(folder))
    return path if (path / "config.json").is_file() else None


def resolve_reader(reader: str | os.PathLike | None = None) -> str | None:
    """``reader`` if given, else ``$QA_READER``, else the packaged default reader, else None."""
    if reader:
        return str(reader)
    if os.environ.get(READER_ENV):
        return os.environ[READER_ENV]
    default = default_reader_path()
    return str(default) if default else None


MAX_QUESTION_TOKENS = 128


def _quantize_int8(model):
    """Linear layers with int8 weights, one scale per output channel, and dynamically quantised
    activations (CPU). Per-channel scales keep far more accuracy than one scale per matrix
    (benchmarks/bench_reader.py, packaged reader, 1,000 SQuAD dev questions: EM -1.5 instead of
    -4.8 against fp32, at the same speed)."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the quantised tensor API, not this use yet
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class Reader:
    """Extracts answer spans from passages.

    Pairs are tokenised with ``truncation="only_second"``; passages longer than
    ``max_length`` tokens are read in windows overlapping by ``stride`` tokens. Features are
    sorted by length and padded per batch. ``precision="auto"`` runs the forward pass under fp16
    autocast on CUDA, bf16 autocast on CPUs with native bf16, else in fp32; ``"int8"`` quantises
    the linear layers dynamically (CPU; see ``benchmarks/bench_reader.py`` for speed and accuracy).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        device: str | None = None,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int = 30,
        batch_size: int | None = None,
        precision: str = "auto",
    ):
        started = time.perf_counter()  # the imports are part of what loading costs
        import torch
        from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

        quiet_transformers()
        self.name = str(model)
        self.device = pick_device(device)
        self.max_length = max_length
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        # Longer questions are cut (with a warning): a question must leave a window more than
        # `stride` tokens of passage, and no real question comes near 128 tokens.
        self.max_question_tokens = min(MAX_QUESTION_TOKENS, max_length - stride - 4)
        if self.max_question_tokens < 8:
            raise QAError(f"max_length {max_length} leaves no room for a question with stride {stride}: raise it or lower the stride")
        # features per forward pass: on a CPU, small batches of length-sorted features are fastest
        # (benchmarks/bench_reader.py, 2-core AVX2 CPU: 21-23 pairs/s at 4 and 8, 19-20 at 16, 15 at 32)
        self.batch_size = batch_size or (64 if self.device.startswith("cuda") else 8)
        source = resolve_model(model)
        try:
            config = AutoConfig.from_pretrained(source)
            if not any(a.endswith("ForQuestionAnswering") for a in config.architectures or []):
                raise QAError(
                    f"{self.name!r} is not an extractive question-answering model "
                    f"(architectures: {config.architectures}); use a checkpoint fine-tuned on SQuAD"
                )
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModelForQuestionAnswering.from_pretrained(source, dtype=torch.float32)
        except (OSError, ValueError) as err:
            raise load_error("reader", self.name, err) from err
        if not self.tokenizer.is_fast:
            raise QAError(f"reader {self.name!r} has no fast tokenizer; character offsets need one")
        self.model.to(self.device).eval()
        self.precision = choose_precision(precision, self.device, "the reader")
        if self.precision == "int8":
            self.model = _quantize_int8(self.model)
        logger.info("loaded the reader %s on %s in %s in %.1f s", self.name, self.device, self.precision, time.perf_counter() - started)

    def fit_question(self, question: str) -> str:
        """``question`` cut to the first :attr:`max_question_tokens` tokens, if it is longer."""
        return self.fit_questions([question])[0]

    def fit_questions(self, questions: Sequence[str]) -> list[str]:
        """Each question cut to :attr:`max_question_tokens` tokens where longer (logged)."""
        limit = self.max_question_tokens
        unique = list(dict.fromkeys(questions))
        enc = self.tokenizer(unique, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        fitted = {}
        for question, offsets in zip(unique, enc["offset_mapping"]):
            if len(offsets) <= limit:
                fitted[question] = question
            else:
                fitted[question] = question[: offsets[limit - 1][1]]
                logger.info("question of %d tokens cut to the reader's %d: %r", len(offsets), limit, fitted[question])
        return [fitted[q] for q in questions]

    def read(self, question: str, passages: Sequence[str], n_best: int = 5) -> list[AnswerSpan]:
        """The best spans over all ``passages`` for one question, best first (at most ``n_best``
        per passage)."""
        return self.read_pairs([question] * len(passages), passages, n_best)

    def read_pairs(
        self, questions: Sequence[str], passages: Sequence[str], n_best: int = 5
    ) -> list[AnswerSpan]:
        """Spans for the pairs ``(questions[i], passages[i])``; ``AnswerSpan.passage`` is ``i``.

        Sorted by score, best first; at most ``n_best`` distinct spans per pair.
        """
        return self.read_batch(questions, passages, n_best).spans

    def read_batch(
        self, questions: Sequence[str], passages: Sequence[str], n_best: int = 5
    ) -> ReaderOutput:
        """Like :meth:`read_pairs`, with each pair's no-answer score as well."""
        if len(questions) != len(passages):
            raise ValueError("questions and passages must have the same length")
        null_scores = np.full(len(passages), np.inf, dtype=np.float32)
        if not passages:
            return ReaderOutput([], null_scores)
        enc = self.tokenizer(
            self.fit_questions(questions),
            list(passages),
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        n_features = len(enc["input_ids"])
        pair_of = enc["overflow_to_sample_mapping"]
        order = sorted(range(n_features), key=lambda f: len(enc["input_ids"][f]))
        best: dict[tuple[int, int, int], float] = {}
        for first in range(0, n_features, self.batch_size):
            batch = order[first : first + self.batch_size]
            start_logits, end_logits = self._forward(enc, batch)
            context = self._context_mask(enc, batch, start_logits.shape[1])
            starts, ends, scores = best_spans(
                start_logits, end_logits, context, self.max_answer_tokens, n_best
            )
            for row, feature in enumerate(batch):
                offsets = enc["offset_mapping"][feature]
                pair = pair_of[feature]
                null = start_logits[row, 0] + end_logits[row, 0]
                null_scores[pair] = min(null_scores[pair], null)
                for s, e, score in zip(starts[row], ends[row], scores[row]):
                    if not np.isfinite(score):
                        break
                    key = (pair, offsets[s][0], offsets[e][1])
                    if score > best.get(key, -np.inf):
                        best[key] = float(score)
        spans = [
            AnswerSpan(pair, start, end, passages[pair][start:end], score)
            for (pair, start, end), score in best.items()
        ]
        spans.sort(key=lambda s: -s.score)
        kept: list[AnswerSpan] = []
        per_pair: dict[int, int] = {}
        for span in spans:
            if per_pair.get(span.passage, 0) < n_best:
                per_pair[span.passage] = per_pair.get(span.passage, 0) + 1
                kept.append(span)
        return ReaderOutput(kept, null_scores)

    def best_answers(
        self, questions: Sequence[str], passages: Sequence[str], no_answer_threshold: float | None = None
    ) -> list[str]:
        """The best span of each pair ``(questions[i], passages[i])``, read in one batch; "" where
        the reader finds none or abstains (``no_answer_threshold``, see :meth:`ReaderOutput.abstains`)."""
        output = self.read_batch(questions, passages, n_best=1)
        answers = []
        for i in range(len(passages)):
            part = output.part(i, i + 1)
            best = part.spans[0] if part.spans else None
            answers.append("" if best is None or part.abstains(best, no_answer_threshold) else best.text)
        return answers

    def _forward(self, enc, features: list[int]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        length = max(len(enc["input_ids"][f]) for f in features)
        pad = self.tokenizer.pad_token_id or 0
        names = [n for n in ("input_ids", "token_type_ids", "attention_mask") if n in enc]
        tensors = {}
        for name in names:
            fill = pad if name == "input_ids" else 0
            rows = [enc[name][f] + [fill] * (length - len(enc[name][f])) for f in features]
            tensors[name] = torch.tensor(rows, device=self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model(**tensors)
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

    @staticmethod
    def _context_mask(enc, features: list[int], length: int) -> np.ndarray:
        mask = np.zeros((len(features), length), dtype=bool)
        for row, feature in enumerate(features):
            seq = enc.sequence_ids(feature)
            mask[row, : len(seq)] = [s == 1 for s in seq]
        return mask
