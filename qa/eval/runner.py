"""Run an evaluation end to end: index the benchmark's corpus (cached), retrieve, read, score."""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from qa.corpora.squad import Example
from qa.errors import QAError
from qa.eval import datasets
from qa.eval.benchmarks import Benchmark
from qa.eval.retrieval import contains_answer, first_relevant, mean_reciprocal_rank, recall_curve
from qa.eval.squad_metrics import exact_match, f1_score, max_over_answers, normalize_answer
from qa.indexer import build_index, layout
from qa.indexer.build import passage_settings
from qa.models import DEFAULT_EMBEDDING_MODEL
from qa.pipeline import Pipeline
from qa.reader import Reader, Reading
from qa.retriever import HybridRetriever, Index

RECALL_DEPTH = 100
QUESTION_BATCH = 16


@dataclass
class Cell:
    """Scores of one (retriever, top-k) setting; ``retriever`` is ``gold`` for gold passages."""

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
    benchmark: Benchmark
    examples: list[Example]
    cells: list[Cell]
    runs: list[RetrieverRun]
    config: dict[str, Any]
    seconds: float


def sample(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """``limit`` questions drawn with ``seed`` (all, in file order, without a limit)."""
    chosen = list(examples)
    if limit is not None and limit < len(chosen):
        random.Random(seed).shuffle(chosen)
        chosen = chosen[:limit]
    return chosen


def score(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) as the official scorers compute them; an unanswerable question (no answers) is
    right only when the prediction is empty (SQuAD 2.0)."""
    if not answers:
        right = float(normalize_answer(prediction) == "")
        return right, right
    return max_over_answers(exact_match, prediction, answers), max_over_answers(f1_score, prediction, answers)


def corpus_key(benchmark: Benchmark, embedding_model: str) -> str:
    """What an index of this benchmark depends on: the data files' contents, not their paths."""
    payload = {
        "corpus": sorted(benchmark.sources.values()),
        "benchmark": benchmark.name,
        "embedding_model": embedding_model,
        "format_version": layout.FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_index(
    benchmark: Benchmark,
    index_dir: str | Path | None = None,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    show_progress: bool = False,
) -> Path:
    """The index of the benchmark's corpus: reused when it was built for this corpus and model
    with the default passage settings, built when missing. A cached index that is stale is
    rebuilt; a stale ``index_dir`` given by the user is an error, never silently used."""
    key = corpus_key(benchmark, embedding_model)
    path = Path(index_dir) if index_dir else datasets.cache_dir() / "indexes" / f"{benchmark.name}-{key}"
    if (path / layout.MANIFEST).is_file():
        manifest = layout.read_manifest(path)
        passages = manifest["passages"]
        if manifest.get("metadata", {}).get("eval_key") == key and passages == passage_settings(embedding_model):
            return path
        if index_dir:
            raise QAError(
                f"index {str(path)!r} was not built for {benchmark.name} with {embedding_model}: "
                "remove it or choose another --index"
            )
    build_index(
        benchmark.corpus,
        path,
        embedding_model=embedding_model,
        show_progress=show_progress,
        metadata={"eval_key": key, "benchmark": benchmark.name, "sources": benchmark.sources},
    )
    return path


def evaluate(
    benchmark: Benchmark,
    reader: Reader,
    *,
    retrievers: Sequence[str] = ("hybrid",),
    top_ks: Sequence[int] = (10,),
    limit: int | None = None,
    seed: int = 0,
    index_dir: str | Path | None = None,
    no_answer_threshold: float | None = None,
    question_batch: int = QUESTION_BATCH,
    show_progress: bool = False,
    on_question: Callable[[], None] | None = None,
) -> Evaluation:
    """Evaluate ``reader`` (with each retriever and top-k in an open benchmark) on ``benchmark``.

    Every retriever retrieves ``max(100, max(top_ks))`` passages once per question (for the
    recall curve) and the reader reads the top ``max(top_ks)`` of them once; each smaller top-k
    is scored from that same reading. That equals reading fewer passages up to bf16 rounding,
    which depends on how passages are batched and padded.

    The reader reads the passages of ``question_batch`` questions in one batch (fewer, fuller
    forward passes); a question's read time is then its share of its group's time. With
    ``question_batch=1`` every latency is that of one question alone, as in ``qa ask``.
    """
    if question_batch < 1:
        raise QAError(f"question batch must be at least 1, got {question_batch}")
    started = time.perf_counter()
    examples = sample(benchmark.examples, limit, seed)
    if not examples:
        raise QAError(f"{benchmark.name} has no questions to evaluate")
    config: dict[str, Any] = {
        "benchmark": benchmark.name,
        "questions": len(examples),
        "limit": limit,
        "seed": seed,
        "reader": reader.name,
        "sources": benchmark.sources,
        "no_answer_threshold": no_answer_threshold,
        "question_batch": question_batch,
    }
    if benchmark.gold:
        cell = _evaluate_gold(benchmark, examples, reader, no_answer_threshold, question_batch, on_question)
        return Evaluation(benchmark, examples, [cell], [], config, time.perf_counter() - started)

    path = prepare_index(benchmark, index_dir, show_progress=show_progress)
    index = Index(path)
    config.update(index=str(path), embedding_model=index.manifest["dense"]["model"], retrievers=list(retrievers), top_k=list(top_ks))
    cells: list[Cell] = []
    runs: list[RetrieverRun] = []
    max_k = max(top_ks)
    depth = max(RECALL_DEPTH, max_k)
    for name in retrievers:
        pipe = Pipeline(index, reader=reader, retriever=name, no_answer_threshold=no_answer_threshold)
        fusion = config.setdefault("fusion", {"answers": {"bm25_weight": pipe.bm25_weight, "dense_weight": pipe.dense_weight}})
        if isinstance(pipe.retriever, HybridRetriever):
            bm25_weight, dense_weight = pipe.retriever.weights
            fusion["hybrid"] = {"rrf_k": pipe.retriever.rrf_k, "bm25_weight": bm25_weight, "dense_weight": dense_weight}
        predictions: dict[int, dict[str, str]] = {k: {} for k in top_ks}
        first_answer, first_gold, retrieved = [], [], {}
        seconds: dict[str, list[float]] = {"retrieve": [], "read": [], "total": []}
        for first in range(0, len(examples), question_batch):
            group = examples[first : first + question_batch]
            tops, seconds_retrieve = [], []
            for example in group:
                t0 = time.perf_counter()
                hits = pipe.retriever.search(example.question, depth)
                seconds_retrieve.append(time.perf_counter() - t0)
                tops.append(hits[:max_k])
                retrieved[example.id] = [h.passage.doc_id for h in hits]
                if example.answerable:
                    first_answer.append(first_relevant([contains_answer(h.passage.text, example.answers) for h in hits]))
                    first_gold.append(first_relevant([h.passage.doc_id == example.doc_id for h in hits]))
            t1 = time.perf_counter()
            questions = [e.question for e, top in zip(group, tops) for _ in top]
            texts = [h.passage.text for top in tops for h in top]
            reading = reader.read_batch(questions, texts, n_best=1)
            lo = 0
            for example, top in zip(group, tops):
                part = reading_part(reading, lo, lo + len(top))
                lo += len(top)
                for k in top_ks:
                    answers = pipe.rank_answers(example.question, top[:k], part, 1) if top else []
                    predictions[k][example.id] = answers[0].text if answers else ""
            read_share = (time.perf_counter() - t1) / len(group)
            for t in seconds_retrieve:
                seconds["retrieve"].append(t)
                seconds["read"].append(read_share)
                seconds["total"].append(t + read_share)
                if on_question:
                    on_question()
        run = RetrieverRun(
            name,
            recall_curve(first_answer, depth),
            recall_curve(first_gold, depth),
            mean_reciprocal_rank(first_answer),
            mean_reciprocal_rank(first_gold),
            seconds,
            retrieved,
        )
        runs.append(run)
        for k in top_ks:
            metrics = _answer_metrics(examples, predictions[k], benchmark.squad_v2)
            metrics.update(
                {
                    "recall_answer": 100 * float(run.recall_answer[k - 1]),
                    "recall_gold": 100 * float(run.recall_gold[k - 1]),
                    "mrr_answer": run.mrr_answer,
                    "mrr_gold": run.mrr_gold,
                    **_timing(seconds),
                }
            )
            cells.append(Cell(name, k, predictions[k], metrics))
    return Evaluation(benchmark, examples, cells, runs, config, time.perf_counter() - started)


def reading_part(reading: Reading, lo: int, hi: int) -> Reading:
    """The part of ``reading`` for pairs ``lo`` to ``hi - 1``, numbered from 0 again."""
    spans = [replace(s, passage=s.passage - lo) for s in reading.spans if lo <= s.passage < hi]
    return Reading(spans, reading.null_scores[lo:hi])


def _evaluate_gold(benchmark, examples, reader, no_answer_threshold, question_batch, on_question) -> Cell:
    documents = {d.id: d for d in benchmark.documents}
    predictions: dict[str, str] = {}
    latencies: list[float] = []
    for first in range(0, len(examples), question_batch):
        group = examples[first : first + question_batch]
        t0 = time.perf_counter()
        reading = reader.read_batch([e.question for e in group], [documents[e.doc_id].text for e in group], n_best=1)
        for i, example in enumerate(group):
            part = reading_part(reading, i, i + 1)
            best = part.spans[0] if part.spans else None
            abstain = best is None or part.abstains(best, no_answer_threshold)
            predictions[example.id] = "" if abstain else best.text
        latencies += [(time.perf_counter() - t0) / len(group)] * len(group)
        if on_question:
            for _ in group:
                on_question()
    metrics = _answer_metrics(examples, predictions, benchmark.squad_v2)
    metrics.update(_timing({"read": latencies, "total": latencies}))
    return Cell("gold", 1, predictions, metrics)


def _answer_metrics(examples: Sequence[Example], predictions: dict[str, str], squad_v2: bool) -> dict[str, float]:
    scores = {e.id: score(predictions[e.id], e.answers) for e in examples}
    metrics = {
        "exact_match": 100 * statistics.fmean(s[0] for s in scores.values()),
        "f1": 100 * statistics.fmean(s[1] for s in scores.values()),
    }
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
