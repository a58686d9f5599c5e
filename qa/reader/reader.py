"""Extractive reader: answer spans for (question, passage) pairs from any
``AutoModelForQuestionAnswering`` checkpoint, batched and length-sorted. BERT readers in a local
folder (the packaged one) run on :mod:`qa.bert`, without the cost of importing transformers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qa.device import autocast, choose_backend, choose_precision, pick_device
from qa.errors import QAError
from qa.hub import load_error, quiet_transformers, resolve_model
from qa.reader.abstention import Abstention, load_abstention
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
    """Spans for a batch of (question, passage) pairs, and each pair's no-answer scores:
    ``null_scores``, the [CLS] start + end logits, lowest over the pair's windows (as readers
    trained on SQuAD 2.0 one paragraph at a time are used); ``null_starts`` and ``null_ends``, the
    log-sum-exp of the [CLS] start (end) logits over the pair's windows (for the question-level
    score of readers trained with shared normalisation; see :mod:`qa.reader.abstention`)."""

    spans: list[AnswerSpan]
    null_scores: np.ndarray
    null_starts: np.ndarray
    null_ends: np.ndarray

    def margin(self, passages: int | None = None, scope: str = "question") -> float:
        """How far the best span of the first ``passages`` pairs (default: all) beats the no-answer
        score of ``scope``: of those pairs together (``question``), or of the best span's own pair
        (``passage``); ``-inf`` without a span."""
        n = len(self.null_scores) if passages is None else passages
        best = max((s for s in self.spans if s.passage < n), key=lambda s: s.score, default=None)
        if best is None:
            return -np.inf
        if scope == "passage":
            return float(best.score - self.null_scores[best.passage])
        return float(best.score - np.logaddexp.reduce(self.null_starts[:n]) - np.logaddexp.reduce(self.null_ends[:n]))

    def abstains(self, rule: Abstention | None, passages: int | None = None) -> bool:
        """True when ``rule`` is set and the best span of the first ``passages`` pairs (default: all)
        does not beat the no-answer score of its ``rule.scope`` by ``rule.threshold``; False without
        a rule or a span."""
        if rule is None:
            return False
        margin = self.margin(passages, rule.scope)
        return margin != -np.inf and margin < rule.threshold

    def select(self, pairs: Sequence[int]) -> ReaderOutput:
        """The output for the pairs ``pairs`` of the batch, in that order, numbered from 0 again."""
        number = {pair: i for i, pair in enumerate(pairs)}
        spans = [replace(s, passage=number[s.passage]) for s in self.spans if s.passage in number]
        rows = list(pairs)
        return ReaderOutput(spans, self.null_scores[rows], self.null_starts[rows], self.null_ends[rows])

    def part(self, lo: int, hi: int) -> ReaderOutput:
        """The output for pairs ``lo`` to ``hi - 1`` of the batch, numbered from 0 again."""
        spans = [replace(s, passage=s.passage - lo) for s in self.spans if lo <= s.passage < hi]
        return ReaderOutput(spans, self.null_scores[lo:hi], self.null_starts[lo:hi], self.null_ends[lo:hi])


PACKAGED_READERS = ("default", "biomed")
"""Readers shipped inside the package, by name: ``default`` (general domain: SQuAD) and ``biomed``
(the default trained further with COVID-QA mixed in: CORD-19 questions; docs/READER.md)."""


def packaged_reader_path(name: str = "default") -> Path | None:
    """The folder of the packaged reader ``name`` (:data:`PACKAGED_READERS`), if this installation has it."""
    path = Path(str(resources.files("qa.reader").joinpath(name)))
    return path if name in PACKAGED_READERS and (path / "config.json").is_file() else None


def default_reader_path() -> Path | None:
    """The reader shipped inside the package, if this installation has one."""
    return packaged_reader_path("default")


def reader_folder(reader: str | os.PathLike) -> str:
    """``reader`` as given (a folder or hub id), except a packaged reader's name (``biomed``) where
    no folder of that name is here: its packaged folder."""
    name = str(reader)
    if name not in PACKAGED_READERS or Path(name).exists():
        return name
    path = packaged_reader_path(name)
    if path is None:
        raise QAError(f"this installation of qa has no packaged reader {name!r} (qa/reader/{name}); "
                      f"name a reader folder or hub id instead")
    return str(path)


def resolve_reader(reader: str | os.PathLike | None = None) -> str | None:
    """``reader`` if given, else ``$QA_READER``, else the packaged default reader, else None (a
    packaged reader's name stands for its folder: :func:`reader_folder`)."""
    chosen = reader or os.environ.get(READER_ENV)
    if chosen:
        return reader_folder(chosen)
    default = default_reader_path()
    return str(default) if default else None


MAX_QUESTION_TOKENS = 128
#: OpenVINO streams: batches of features read at once, the cores shared among them, in calls of
#: many batches (``qa evaluate``'s 16 questions, ``qa serve``'s micro-batches); a call of a few
#: (one question's passages, ``qa ask``) runs on one stream (``benchmarks/reader_call_streams.py``,
#: docs/READER.md).
READER_STREAMS = 2


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
    autocast on CUDA, bf16 autocast on CPUs where it pays (:func:`qa.device.cpu_prefers_bf16`),
    else in fp32; ``"int8"`` (CPU) runs weights and activations in int8 on OpenVINO, calibrated
    once and cached (:mod:`qa.int8`), or with torch, the linear layers quantised
    dynamically (see ``benchmarks/bench_reader.py`` for speed and accuracy).
    ``backend`` is what runs the forward passes (:func:`qa.device.choose_backend`: OpenVINO for
    bf16 or int8 on a CPU where it is installed, else torch); with OpenVINO, ``streams`` batches
    run at once in calls of many (:data:`READER_STREAMS`).
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
        backend: str = "auto",
        streams: int | None = None,
    ):
        started = time.perf_counter()  # the imports are part of what loading costs
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
        source = resolve_model(reader_folder(model))
        self.abstention = load_abstention(source) if Path(source).is_dir() else None
        """The reader's own no-answer rule (its folder's ``abstention.json``), or None."""
        try:
            tokenizer, self.model, self.pad_id = _load_bert(source) or _load_with_transformers(self.name, source)
        except (OSError, ValueError) as err:
            raise load_error("reader", self.name, err) from err
        from qa.bert import check_windows, copy_tokenizer

        # Pairs are cut into windows by one tokenizer, words are counted by another: each keeps its settings.
        self._words = copy_tokenizer(tokenizer)
        check_windows(self._words)  # on the copy, before its own setting: a broken release reads long passages in part
        self._words.no_truncation()
        self._pairs = tokenizer
        self._pairs.enable_truncation(max_length, stride=stride, strategy="only_second")
        self.model.to(self.device).eval()
        self.precision = choose_precision(precision, self.device, "the reader")
        self.backend = choose_backend(backend, self.device, self.precision, "the reader")
        if self.precision == "int8" and self.backend == "torch":
            self.model = _quantize_int8(self.model)
        self._compiled = None
        if self.backend == "openvino":
            from qa.openvino_runtime import compile_converted, convert_module

            if self.precision == "int8":
                from qa.int8 import int8_model

                settings = {"max_length": max_length, "stride": stride, "max_question_tokens": self.max_question_tokens}
                converted = int8_model(self.model, source, self._feature_arrays, settings)
            else:
                converted = convert_module(self.model, 3)
            self._compiled = compile_converted(converted, self.precision, READER_STREAMS if streams is None else streams)
        logger.info("loaded the reader %s on %s in %s (%s) in %.1f s", self.name, self.device, self.precision, self.backend,
                    time.perf_counter() - started)

    def fit_question(self, question: str) -> str:
        """``question`` cut to the first :attr:`max_question_tokens` tokens, if it is longer."""
        return self.fit_questions([question])[0]

    def fit_questions(self, questions: Sequence[str]) -> list[str]:
        """Each question cut to :attr:`max_question_tokens` tokens where longer (logged)."""
        limit = self.max_question_tokens
        unique = list(dict.fromkeys(questions))
        fitted = {}
        for question, encoding in zip(unique, self._words.encode_batch(unique, add_special_tokens=False)):
            offsets = encoding.offsets
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
        null_starts = np.full(len(passages), -np.inf, dtype=np.float32)
        null_ends = np.full(len(passages), -np.inf, dtype=np.float32)
        if not passages:
            return ReaderOutput([], null_scores, null_starts, null_ends)
        features = self._windows(questions, passages)
        best: dict[tuple[int, int, int], float] = {}
        batches = [features[first : first + self.batch_size] for first in range(0, len(features), self.batch_size)]
        for batch, (start_logits, end_logits) in zip(batches, self._logits([[window for _, window in b] for b in batches])):
            context = self._context_mask([window for _, window in batch], start_logits.shape[1])
            starts, ends, scores = best_spans(
                start_logits, end_logits, context, self.max_answer_tokens, n_best
            )
            for row, (pair, window) in enumerate(batch):
                offsets = window.offsets
                null_scores[pair] = min(null_scores[pair], start_logits[row, 0] + end_logits[row, 0])
                null_starts[pair] = np.logaddexp(null_starts[pair], start_logits[row, 0])
                null_ends[pair] = np.logaddexp(null_ends[pair], end_logits[row, 0])
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
        return ReaderOutput(kept, null_scores, null_starts, null_ends)

    def best_answers(
        self, questions: Sequence[str], passages: Sequence[str], abstention: Abstention | None = None
    ) -> list[str]:
        """The best span of each pair ``(questions[i], passages[i])``, read in one batch; "" where
        the reader finds none or abstains by ``abstention`` (see :meth:`ReaderOutput.abstains`)."""
        output = self.read_batch(questions, passages, n_best=1)
        answers = []
        for i in range(len(passages)):
            part = output.part(i, i + 1)
            answers.append("" if not part.spans or part.abstains(abstention) else part.spans[0].text)
        return answers

    def _logits(self, batches: list[list]):
        """Start and end logits of each batch of windows, in order: with OpenVINO, as
        :meth:`qa.openvino_runtime.CompiledModule.map` runs them (a call of many batches on the
        streams, if there are several); else one :meth:`_forward` after another."""
        if self._compiled is None:
            yield from (self._forward(windows) for windows in batches)
            return
        yield from (tuple(logits) for logits in self._compiled.map(self._arrays(windows, for_openvino=True) for windows in batches))

    def _windows(self, questions: Sequence[str], passages: Sequence[str]) -> list[tuple[int, Any]]:
        """Each pair's windows (``tokenizers.Encoding``) with the pair's index, shortest first. A
        pair longer than max_length is read in windows: its first, then the overflowing ones."""
        encodings = self._pairs.encode_batch(list(zip(self.fit_questions(questions), passages)))
        features = [(pair, window) for pair, encoding in enumerate(encodings) for window in (encoding, *encoding.overflowing)]
        features.sort(key=lambda feature: len(feature[1].ids))
        return features

    def _feature_arrays(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[tuple[np.ndarray, ...]]:
        """The forward passes' inputs for ``pairs`` (question, passage), ``batch_size`` windows at
        a time, as :meth:`read_batch` runs them."""
        windows = [window for _, window in self._windows([q for q, _ in pairs], [p for _, p in pairs])]
        return [self._arrays(windows[first : first + batch_size]) for first in range(0, len(windows), batch_size)]

    def _arrays(self, windows: list, for_openvino: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids, token types and attention mask of tokenised windows (``tokenizers.Encoding``),
        padded to the longest (``for_openvino``: rounded up, :func:`qa.openvino_runtime.padded_length`)."""
        length = max(len(w.ids) for w in windows)
        if for_openvino:
            from qa.openvino_runtime import padded_length

            length = padded_length(length, self.max_length)

        def padded(rows, fill):
            return np.array([row + [fill] * (length - len(row)) for row in rows], dtype=np.int64)

        return padded([w.ids for w in windows], self.pad_id), padded([w.type_ids for w in windows], 0), padded([w.attention_mask for w in windows], 0)

    def _forward(self, windows: list) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits of tokenised windows (``tokenizers.Encoding``), padded to the longest."""
        import torch

        arrays = self._arrays(windows)
        if self._compiled is not None:
            start, end = self._compiled(arrays)
            return start, end
        input_ids, token_type_ids, attention_mask = (torch.from_numpy(a).to(self.device) for a in arrays)
        with torch.inference_mode(), autocast(self.device, self.precision):
            start, end = self.model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return start.float().cpu().numpy(), end.float().cpu().numpy()

    @staticmethod
    def _context_mask(windows: list, length: int) -> np.ndarray:
        """True at the tokens of the passage (not the question, special tokens or padding)."""
        mask = np.zeros((len(windows), length), dtype=bool)
        for row, window in enumerate(windows):
            mask[row, : len(window.ids)] = [s == 1 for s in window.sequence_ids]
        return mask


def _load_bert(source: str):
    """(tokenizer, model, pad id) of a local BERT reader folder, without importing transformers
    (:mod:`qa.bert`); None when the folder is not one :mod:`qa.bert` reproduces."""
    from qa import bert

    config = bert.read_config(source, "BertForQuestionAnswering") if Path(source).is_dir() else None
    if config is None:
        return None
    return bert.load_tokenizer(source), bert.load_qa(source, config), config.pad_token_id


def _load_with_transformers(name: str, source: str):
    """(tokenizer, model, pad id) of any ``AutoModelForQuestionAnswering`` checkpoint with a fast
    tokenizer, folder or hub id."""
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

    quiet_transformers()
    config = AutoConfig.from_pretrained(source)
    if not any(a.endswith("ForQuestionAnswering") for a in config.architectures or []):
        raise QAError(
            f"{name!r} is not an extractive question-answering model "
            f"(architectures: {config.architectures}); use a checkpoint fine-tuned on SQuAD"
        )
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.is_fast:
        raise QAError(f"reader {name!r} has no fast tokenizer; character offsets need one")
    takes_types = "token_type_ids" in tokenizer.model_input_names  # not DistilBERT or RoBERTa

    class StartEnd(torch.nn.Module):
        """The model called as :class:`qa.bert.BertForQA` is: (start, end) logits."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, token_type_ids, attention_mask):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if takes_types:
                inputs["token_type_ids"] = token_type_ids
            out = self.model(**inputs)
            return out.start_logits, out.end_logits

    model = StartEnd(AutoModelForQuestionAnswering.from_pretrained(source, dtype=torch.float32))
    from qa.bert import copy_tokenizer

    # without the padding a tokenizer.json may set: padded, a batch's short questions would count as long
    return copy_tokenizer(tokenizer.backend_tokenizer), model, tokenizer.pad_token_id or 0
