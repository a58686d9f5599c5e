"""Write an evaluation's results: report.json, report.md, official-format predictions, the gold
questions in SQuAD format (so the official scorer reproduces EM/F1), and a recall@k plot."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from qa.eval.runner import Evaluation

PACKAGES = ("qa", "torch", "transformers", "sentence-transformers", "faiss-cpu", "bm25s", "numpy")

COLUMNS = [
    ("exact_match", "EM"),
    ("f1", "F1"),
    ("HasAns_f1", "HasAns F1"),
    ("NoAns_f1", "NoAns F1"),
    ("recall_answer", "R@k answer"),
    ("recall_gold", "R@k gold"),
    ("latency_p50", "p50 s"),
    ("latency_p95", "p95 s"),
    ("questions_per_second", "q/s"),
]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    if found["qa"] is None:  # run from a source tree that pip did not install
        import qa

        found["qa"] = qa.__version__
    return found


def table_rows(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table (one row per retriever and top-k)."""
    present = [(key, label) for key, label in COLUMNS if any(key in c.metrics for c in evaluation.results)]
    header = ["retriever", "top-k"] + [label for _, label in present]
    rows = []
    for cell in evaluation.results:
        values = [cell.retriever, str(cell.top_k)]
        for key, _ in present:
            value = cell.metrics.get(key)
            values.append("" if value is None else f"{value:.3f}" if key.startswith(("latency", "questions")) else f"{value:.1f}")
        rows.append(values)
    return header, rows


def prediction_file(evaluation: Evaluation, cell) -> str:
    return "predictions.json" if len(evaluation.results) == 1 else f"predictions-{cell.retriever}-k{cell.top_k}.json"


def write_report(evaluation: Evaluation, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for cell in evaluation.results:
        (out / prediction_file(evaluation, cell)).write_text(json.dumps(cell.predictions, ensure_ascii=False, indent=1))
    (out / "questions.json").write_text(json.dumps(_squad_subset(evaluation), ensure_ascii=False))
    report: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": evaluation.config,
        "versions": versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "seconds": evaluation.seconds,
        "results": [
            {"retriever": c.retriever, "top_k": c.top_k, "predictions_file": prediction_file(evaluation, c), **c.metrics}
            for c in evaluation.results
        ],
        "recall_curves": {
            run.name: {"answer": run.recall_answer.tolist(), "gold": run.recall_gold.tolist()} for run in evaluation.runs
        },
        "questions": [
            {
                "id": e.id,
                "question": e.question,
                "answers": list(e.answers),
                "gold_document": e.doc_id,
                "predictions": {f"{c.retriever}@{c.top_k}": c.predictions[e.id] for c in evaluation.results},
                "retrieved": {
                    run.name: run.retrieved[e.id][: max(evaluation.config.get("top_k", [10]))] for run in evaluation.runs
                },
            }
            for e in evaluation.examples
        ],
    }
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1))
    (out / "report.md").write_text(_markdown(evaluation))
    if evaluation.runs:
        _plot_recall(evaluation, out / "recall.png")
    return out


def _squad_subset(evaluation: Evaluation) -> dict:
    by_doc: dict[str, list] = {}
    for e in evaluation.examples:
        by_doc.setdefault(e.doc_id, []).append(
            {"id": e.id, "question": e.question, "answers": [{"text": a} for a in e.answers]}
        )
    return {
        "version": evaluation.question_set.name,
        "data": [{"title": doc_id, "paragraphs": [{"qas": qas}]} for doc_id, qas in by_doc.items()],
    }


def _markdown(evaluation: Evaluation) -> str:
    header, rows = table_rows(evaluation)
    config = evaluation.config
    lines = [
        f"# qa evaluate {config['benchmark']}",
        "",
        f"{config['questions']} questions (limit {config['limit']}, seed {config['seed']}), reader `{config['reader']}`"
        + (f", index `{config['index']}`" if "index" in config else ", gold passages")
        + f"; {evaluation.seconds:.0f} s in all.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "EM and F1 use the official SQuAD normalisation, best over the gold answers. R@k answer: a "
        "retrieved passage among the top k contains a gold answer; R@k gold: one comes from the "
        "question's own paragraph. Latency is per question, retrieval of 100 passages and reading "
        "of the largest top-k together"
        + (
            f"; the reader read the passages of {config['question_batch']} questions per batch, and each "
            "question's read time is its share of its batch's time (`--question-batch 1` measures one "
            "question alone)."
            if config.get("question_batch", 1) > 1
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def _plot_recall(evaluation: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in evaluation.runs:
        ks = range(1, len(run.recall_answer) + 1)
        ax.plot(ks, 100 * run.recall_answer, label=f"{run.name}: answer in passage")
        ax.plot(ks, 100 * run.recall_gold, linestyle="--", label=f"{run.name}: gold paragraph")
    ax.set_xscale("log")
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("recall@k (%)")
    ax.set_title(f"{evaluation.config['benchmark']}: {evaluation.config['questions']} questions")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
