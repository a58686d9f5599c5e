"""Run an evaluation end to end: choose and prepare the index of the question set's corpus
(cached), answer every question with :meth:`Pipeline.ask_batch`, and score.

:func:`evaluate` is the one entry point: ``qa evaluate`` parses its options and calls it, and so
can a Python user."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.corpora.squad import Example, sample_examples
from qa.embedding import DEFAULT_EMBEDDING_MODEL
from qa.errors import QAError
from qa.eval import datasets
from qa.eval.question_sets import QuestionSet, load_question_set
from qa.eval.retrieval import contains_answer, first_relevant, mean_reciprocal_rank, recall_curve
from qa.index import Index, layout, read_manifest
from qa.indexer import EmbeddingOptions, PassageOptions, build_index
from qa.metrics import squad_scores
from qa.pipeline import DEFAULT_TOP_K, QUESTION_BATCH, Pipeline, rank_answers
from qa.progress import progress_bar
from qa.reader import Abstention, Reader, resolve_reader
from qa.retriever import DEFAULT_RETRIEVER, RETRIEVERS, HybridRetriever

RECALL_DEPTH = 100
"""Passages retrieved per question for recall@k and MRR (at least the largest top-k)."""


@dataclass
class SettingResult:
    """Predictions and scores of one (retriever, top-k) setting; ``retriever`` is ``gold`` when
    each question was read on its gold passage."""

    retriever: str
    top_k: int
    predictions: dict[str, str]
    metrics: dict[str, float]


@dataclass
class RetrieverRun:
    """Retrieval over every question with one retriever, and timings per question."""

    name: str
    recall_answer: np.ndarray
    recall_gold: np.ndarray
    mrr_answer: float
    mrr_gold: float
    seconds: dict[str, list[float]]
    retrieved: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Evaluation:
    question_set: QuestionSet
    examples: list[Example]
    results: list[SettingResult]
    runs: list[RetrieverRun]
    config: dict[str, Any]
    seconds: float


def corpus_key(question_set: QuestionSet, embedding_model: str) -> str:
    """What an index of this question set depends on: the data files' contents, not their paths."""
    payload = {
        "corpus": sorted(question_set.sources.values()),
        "benchmark": question_set.name,
        "embedding_model": embedding_model,
        "format_version": layout.FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_index(
    question_set: QuestionSet,
    index_dir: str | Path | None = None,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    show_progress: bool = False,
    precision: str = "auto",
) -> Path:
    """The index of the question set's corpus: reused when it was built for this corpus and
    model with the default passage settings, built when missing (its passages embedded in
    ``precision``). A cached index that is stale
    is rebuilt; a stale ``index_dir`` given by the user is an error, never silently used."""
    key = corpus_key(question_set, embedding_model)
    path = Path(index_dir) if index_dir else datasets.cache_dir() / "indexes" / f"{question_set.name}-{key}"
    if (path / layout.MANIFEST).is_file():
        manifest = read_manifest(path)
        passages = manifest["passages"]
        if manifest.get("metadata", {}).get("eval_key") == key and passages == PassageOptions().settings(embedding_model):
            return path
        if index_dir:
            raise QAError(
                f"index {str(path)!r} was not built for {question_set.name} with {embedding_model}: "
                "remove it or choose another --index"
            )
    build_index(
        question_set.corpus,
        path,
        embedding=EmbeddingOptions(model=embedding_model, precision=precision),
        show_progress=show_progress,
        metadata={"eval_key": key, "benchmark": question_set.name, "sources": question_set.sources},
    )
    return path


def evaluate(
    question_set: QuestionSet | str,
    reader: Reader | str | os.PathLike | None = None,
    *,
    path: str | Path | None = None,
    data: str | Path | None = None,
    gold: bool = False,
    retrievers: Sequence[str] = (DEFAULT_RETRIEVER,),
    top_ks: Sequence[int] = (DEFAULT_TOP_K,),
    limit: int | None = None,
    seed: int = 0,
    index_dir: str | Path | None = None,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    abstain: bool = True,
    no_answer_threshold: float | None = None,
    question_batch: int = QUESTION_BATCH,
    precision: str = "auto",
    backend: str = "auto",
    device: str | None = None,
    show_progress: bool = False,
    on_question: Callable[[], None] | None = None,
) -> Evaluation:
    """Evaluate ``reader`` (a :class:`Reader`, a model folder or hub id; None: ``$QA_READER``,
    else the packaged reader) on ``question_set`` (a :class:`QuestionSet`, or its name loaded
    with ``path``, ``data`` and ``gold``, see :func:`load_question_set`), with each retriever
    and top-k in an open question set.

    The corpus index is prepared once (:func:`prepare_index`, with ``embedding_model``; or
    ``index_dir``). Every retriever retrieves ``max(100, max(top_ks))`` passages per question
    (for the recall curve) and the reader reads the top ``max(top_ks)`` of them once; each
    smaller top-k is scored from that same reading. That equals reading fewer passages up to
    bf16 rounding, which depends on how passages are batched and padded.

    Questions are answered ``question_batch`` at a time (:meth:`Pipeline.ask_batch`: fewer,
    fuller forward passes); a question's time is then its share of its batch's time. With
    ``question_batch=1`` every latency is that of one question alone, as in ``qa ask``.

    With ``abstain`` (the default) the pipeline abstains by the reader's own rule (its
    ``abstention.json``, see :mod:`qa.reader.abstention`), with its threshold replaced by
    ``no_answer_threshold`` when given (scope: the reader's, else ``"passage"``); the metrics then
    also hold EM/F1 as if it had answered every question (``exact_match_answering_all``,
    ``f1_answering_all``) and the share of questions it abstained on (``abstained``).
    """
    if question_batch < 1:
        raise QAError(f"question batch must be at least 1, got {question_batch}")
    unknown = [r for r in retrievers if r not in RETRIEVERS]
    if unknown or not retrievers:
        raise QAError(f"unknown retriever {', '.join(map(repr, unknown)) or '(none)'}: choose from {', '.join(RETRIEVERS)}")
    top_ks = sorted(set(top_ks))
    if not top_ks or top_ks[0] < 1:
        raise QAError("top-k values must be at least 1")
    resolved = reader if isinstance(reader, Reader) else resolve_reader(reader)
    if resolved is None:
        raise QAError("qa evaluate needs a reader: pass --reader PATH_OR_HUB_ID or set QA_READER")
    if isinstance(question_set, str):
        question_set = load_question_set(question_set, path=path, data=data, gold=gold)
    reader = resolved if isinstance(resolved, Reader) else Reader(resolved, device=device, precision=precision, backend=backend)
    rule = reader.abstention if abstain else None
    if abstain and no_answer_threshold is not None:
        rule = Abstention(no_answer_threshold, rule.scope if rule else "passage")
    started = time.perf_counter()
    examples = sample_examples(question_set.examples, limit, seed)
    if not examples:
        raise QAError(f"{question_set.name} has no questions to evaluate")
    config: dict[str, Any] = {
        "benchmark": question_set.name,
        "questions": len(examples),
        "limit": limit,
        "seed": seed,
        "reader": reader.name,
        "sources": question_set.sources,
        "abstention": asdict(rule) if rule else None,
        "question_batch": question_batch,
        "precision": reader.precision,
        "backend": reader.backend,
    }
    if question_set.gold:
        with _progress(f"Evaluating {question_set.name}", len(examples), show_progress, on_question) as advance:
            result = _evaluate_gold(question_set, examples, reader, rule, question_batch, advance)
        return Evaluation(question_set, examples, [result], [], config, time.perf_counter() - started)

    embedding_model = EmbeddingOptions(model=embedding_model).model_id or DEFAULT_EMBEDDING_MODEL
    index_path = prepare_index(question_set, index_dir, embedding_model, show_progress=show_progress)
    index = Index(index_path, device=device, precision=precision)
    config.update(index=str(index_path), embedding_model=index.manifest["dense"]["model"], retrievers=list(retrievers), top_k=list(top_ks))
    results: list[SettingResult] = []
    runs: list[RetrieverRun] = []
    with _progress(f"Evaluating {question_set.name}", len(examples) * len(retrievers), show_progress, on_question) as advance:
        for name in retrievers:
            pipe = Pipeline(index, reader=reader, retriever=name, abstention=rule, question_batch=question_batch)
            config.setdefault("min_cosine", pipe.min_cosine)  # the pipeline's floor (qa.pipeline.MIN_COSINE), or None
            fusion = config.setdefault("fusion", {"answers": {"bm25_weight": pipe.bm25_weight, "dense_weight": pipe.dense_weight}})
            if isinstance(pipe.retriever, HybridRetriever):
                bm25_weight, dense_weight = pipe.retriever.weights
                fusion["hybrid"] = {"rrf_k": pipe.retriever.rrf_k, "bm25_weight": bm25_weight, "dense_weight": dense_weight}
            run, predictions, answering_all = _evaluate_open(pipe, examples, top_ks, advance)
            runs.append(run)
            for k in top_ks:
                metrics = _answer_metrics(examples, predictions[k], question_set.squad_v2, answering_all[k] if rule else None)
                metrics.update(
                    {
                        "recall_answer": 100 * float(run.recall_answer[k - 1]),
                        "recall_gold": 100 * float(run.recall_gold[k - 1]),
                        "mrr_answer": run.mrr_answer,
                        "mrr_gold": run.mrr_gold,
                        **_timing(run.seconds),
                    }
                )
                results.append(SettingResult(name, k, predictions[k], metrics))
    return Evaluation(question_set, examples, results, runs, config, time.perf_counter() - started)


def _evaluate_open(
    pipe: Pipeline, examples: list[Example], top_ks: list[int], advance: Callable[[int], None]
) -> tuple[RetrieverRun, dict[int, dict[str, str]], dict[int, dict[str, str]]]:
    """Answer every question with ``pipe`` at the largest top-k, rank again for the smaller ones,
    and measure retrieval at :data:`RECALL_DEPTH`. Returns the retrieval run, the predictions and
    the predictions without abstention, per top-k."""
    max_k = max(top_ks)
    depth = max(RECALL_DEPTH, max_k)
    predictions: dict[int, dict[str, str]] = {k: {} for k in top_ks}
    answering_all: dict[int, dict[str, str]] = {k: {} for k in top_ks}
    first_answer, first_gold, retrieved = [], [], {}
    seconds: dict[str, list[float]] = {"retrieve": [], "read": [], "total": []}
    for first in range(0, len(examples), pipe.question_batch):
        group = examples[first : first + pipe.question_batch]
        for example, prediction in zip(group, pipe.ask_batch([e.question for e in group], max_k, 1, depth=depth)):
            hits = prediction.hits
            retrieved[example.id] = [h.passage.doc_id for h in hits]
            if example.answerable:
                first_answer.append(first_relevant(contains_answer(h.passage.text, example.answers) for h in hits))
                first_gold.append(first_relevant([h.passage.doc_id == example.doc_id for h in hits]))
            for k in top_ks:
                answers = prediction.answers if k == max_k else pipe.rank_answers(hits[:k], prediction.reading, 1) if hits else []
                predictions[k][example.id] = answers[0].text if answers else ""
                if pipe.abstention is not None:
                    always = rank_answers(hits[:k], prediction.reading, 1, bm25_weight=pipe.bm25_weight,
                                          dense_weight=pipe.dense_weight, aggregate=pipe.aggregate) if hits else []
                    answering_all[k][example.id] = always[0].text if always else ""
            for stage in seconds:
                seconds[stage].append(prediction.seconds[stage])
        advance(len(group))
    run = RetrieverRun(
        pipe.retriever.name,
        recall_curve(first_answer, depth),
        recall_curve(first_gold, depth),
        mean_reciprocal_rank(first_answer),
        mean_reciprocal_rank(first_gold),
        seconds,
        retrieved,
    )
    return run, predictions, answering_all


def _evaluate_gold(question_set, examples, reader: Reader, rule: Abstention | None, question_batch, advance) -> SettingResult:
    documents = {d.id: d for d in question_set.documents}
    predictions: dict[str, str] = {}
    answering_all: dict[str, str] = {}
    latencies: list[float] = []
    for first in range(0, len(examples), question_batch):
        group = examples[first : first + question_batch]
        t0 = time.perf_counter()
        output = reader.read_batch([e.question for e in group], [documents[e.doc_id].text for e in group], n_best=1)
        for i, example in enumerate(group):
            part = output.part(i, i + 1)
            answering_all[example.id] = part.spans[0].text if part.spans else ""
            predictions[example.id] = "" if part.abstains(rule) else answering_all[example.id]
        latencies += [(time.perf_counter() - t0) / len(group)] * len(group)
        advance(len(group))
    metrics = _answer_metrics(examples, predictions, question_set.squad_v2, answering_all if rule else None)
    metrics.update(_timing({"read": latencies, "total": latencies}))
    return SettingResult("gold", 1, predictions, metrics)


@contextlib.contextmanager
def _progress(title: str, total: int, show: bool, on_question: Callable[[], None] | None) -> Iterator[Callable[[int], None]]:
    """A progress bar (when shown) and ``on_question`` calls, advanced a batch at a time."""
    with progress_bar("questions", disable=not show) as bar:
        task = bar.add_task(title, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)
            if on_question:
                for _ in range(n):
                    on_question()

        yield advance


def _answer_metrics(
    examples: Sequence[Example], predictions: dict[str, str], squad_v2: bool, answering_all: dict[str, str] | None = None
) -> dict[str, float]:
    """EM/F1 (and HasAns/NoAns for SQuAD 2.0); with ``answering_all`` (the predictions without
    abstention), the share of questions abstained on and EM/F1 without abstention too."""
    scores = {e.id: squad_scores(predictions[e.id], e.answers) for e in examples}
    metrics = {
        "exact_match": 100 * statistics.fmean(s[0] for s in scores.values()),
        "f1": 100 * statistics.fmean(s[1] for s in scores.values()),
    }
    if answering_all is not None:
        always = [squad_scores(answering_all[e.id], e.answers) for e in examples]
        metrics["abstained"] = 100 * statistics.fmean(predictions[e.id] == "" != answering_all[e.id] for e in examples)
        metrics["exact_match_answering_all"] = 100 * statistics.fmean(s[0] for s in always)
        metrics["f1_answering_all"] = 100 * statistics.fmean(s[1] for s in always)
    if squad_v2:
        for label, group in (("HasAns", [e for e in examples if e.answerable]), ("NoAns", [e for e in examples if not e.answerable])):
            if group:
                metrics[f"{label}_exact"] = 100 * statistics.fmean(scores[e.id][0] for e in group)
                metrics[f"{label}_f1"] = 100 * statistics.fmean(scores[e.id][1] for e in group)
                metrics[f"{label}_total"] = len(group)
    return metrics


def _timing(seconds: dict[str, list[float]]) -> dict[str, float]:
    total = seconds["total"]
    out = {
        "latency_p50": float(np.percentile(total, 50)),
        "latency_p95": float(np.percentile(total, 95)),
        "questions_per_second": len(total) / sum(total) if sum(total) else 0.0,
    }
    for stage in ("retrieve", "read"):
        if stage in seconds:
            out[f"{stage}_seconds_mean"] = float(np.mean(seconds[stage]))
    return out
