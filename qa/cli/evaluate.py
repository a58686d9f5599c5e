"""`qa evaluate`: the whole pipeline scored on a question set, as a table and a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from qa.cli.common import AlwaysAnswerOption, BackendOption, DeviceOption, JsonOption, PrecisionOption, app, err, friendly_errors, out
from qa.embedding import DEFAULT_EMBEDDING_MODEL
from qa.errors import QAError
from qa.pipeline import DEFAULT_TOP_K, QUESTION_BATCH
from qa.retriever import DEFAULT_RETRIEVER, RETRIEVERS


@app.command()
@friendly_errors
def evaluate(
    name: Annotated[str, typer.Argument(help="open-squad, open-squad-v2, squad-gold, covid-qa or squad-json.")],
    path: Annotated[Optional[Path], typer.Argument(help="The SQuAD-format file, for squad-json.")] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="Data directory. Default: $QA_DATA_DIR, then ~/.cache/qa/data.")
    ] = None,
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", "-i", help="Index of the benchmark corpus. Default: cached, built on first use.")
    ] = None,
    retriever: Annotated[
        str, typer.Option(help=f"Retriever, or a comma-separated list: {','.join(RETRIEVERS)}.")
    ] = DEFAULT_RETRIEVER,
    top_k: Annotated[
        str, typer.Option("--top-k", "-k", help="Passages read, or a comma-separated list: 1,5,10,20.")
    ] = str(DEFAULT_TOP_K),
    reader: Annotated[
        Optional[str], typer.Option(help="Reader model: a folder, a hub id, or a packaged reader (default, biomed). Default: $QA_READER, else the packaged default.")
    ] = None,
    gold: Annotated[bool, typer.Option("--gold", help="Read each question's gold paragraph (covid-qa, squad-json).")] = False,
    embedding_model: Annotated[
        str, typer.Option(help="Embedding model of the benchmark corpus index (cached per model): a local folder or hub id.")
    ] = DEFAULT_EMBEDDING_MODEL,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate this many questions, drawn with --seed.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample.")] = 0,
    no_answer_threshold: Annotated[
        Optional[float], typer.Option(help="Abstain below this margin over the no-answer score. Default: the reader's own "
                                           "(its abstention.json), else never.")
    ] = None,
    always_answer: AlwaysAnswerOption = False,
    question_batch: Annotated[
        int, typer.Option(min=1, help="Read the passages of this many questions in one batch (1: per-question latency).")
    ] = QUESTION_BATCH,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Report directory. Default: ./qa-eval/NAME.")] = None,
    precision: PrecisionOption = "auto",
    backend: BackendOption = "auto",
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate the whole pipeline on a question set: EM/F1, retrieval recall, latency."""
    from rich.table import Table

    from qa.eval import evaluate as run_evaluation
    from qa.eval.report import table_rows, write_report

    retrievers = [r.strip() for r in retriever.split(",") if r.strip()]
    try:
        top_ks = [int(k) for k in top_k.split(",") if k.strip()]  # checked and sorted by evaluate
    except ValueError:
        raise QAError(f"--top-k takes whole numbers separated by commas, got {top_k!r}") from None
    evaluation = run_evaluation(
        name,
        reader,
        path=path,
        data=data,
        gold=gold,
        retrievers=retrievers,
        top_ks=top_ks,
        limit=limit,
        seed=seed,
        index_dir=index_dir,
        embedding_model=embedding_model,
        abstain=not always_answer,
        no_answer_threshold=no_answer_threshold,
        question_batch=question_batch,
        precision=precision,
        backend=backend,
        device=device,
        show_progress=not as_json and err.is_terminal,
    )
    report_dir = write_report(evaluation, out_dir or Path("qa-eval") / name)
    if as_json:
        print(json.dumps({"report": str(report_dir), "config": evaluation.config, "results": [
            {"retriever": r.retriever, "top_k": r.top_k, **r.metrics} for r in evaluation.results
        ]}))
        return
    header, rows = table_rows(evaluation)
    table = Table(title=f"qa evaluate {name}: {len(evaluation.examples)} questions")
    for column in header:
        table.add_column(column, justify="left" if column == "retriever" else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table, width=None if out.is_terminal else 160)  # not cut to 80 columns in a pipe
    out.print(f"Report: {escape(str(report_dir))}/report.md  ({evaluation.seconds:.0f} s)")
