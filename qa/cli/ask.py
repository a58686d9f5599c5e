"""`qa ask`: a question (or a file of them), answered here or by a running `qa serve`, printed with
its evidence."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.text import Text

from qa.cli.common import (
    SERVER_ENV, TOKEN_ENV, AlwaysAnswerOption, BackendOption, DeviceOption, IndexOption, JsonOption, PrecisionOption,
    RetrieverChoice, app, err, friendly_errors, one_line, out,
)
from qa.errors import QAError
from qa.index.where import parse_where
from qa.pipeline import DEFAULT_ANSWERS, DEFAULT_TOP_K
from qa.progress import progress_bar
from qa.retriever import DEFAULT_RETRIEVER


@app.command()
@friendly_errors
def ask(
    question: Annotated[Optional[str], typer.Argument(help="The question, in quotes.", show_default=False)] = None,
    questions_file: Annotated[
        Optional[Path],
        typer.Option("--questions", "-f", metavar="FILE",
                     help="Ask every question of FILE instead (one a line; blank lines and lines starting with # are "
                          "skipped; - reads stdin), read together in batches; with --json, one JSON object a line.",
                     show_default=False),
    ] = None,
    index_dir: IndexOption = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Passages to retrieve and read.")] = DEFAULT_TOP_K,
    retriever: Annotated[RetrieverChoice, typer.Option(help="How to retrieve passages.")] = RetrieverChoice(DEFAULT_RETRIEVER),
    reader: Annotated[
        Optional[str],
        typer.Option(help="Reader model: a folder, a hub id, or a packaged reader (default; biomed: trained with COVID-QA too). "
                     "Default: $QA_READER, else the packaged default."),
    ] = None,
    answers: Annotated[int, typer.Option("--answers", "-n", min=1, help="Answers to show.")] = DEFAULT_ANSWERS,
    where: Annotated[
        Optional[list[str]],
        typer.Option("--where", "-w", metavar="FIELD OP VALUE",
                     help="Search only the documents that meet this condition (repeatable: all must hold). FIELD: id, title, "
                          "source or a metadata key (CORD-19: publish_time, journal, authors...); OP: = and != (ignoring "
                          "case; * and ? are wildcards), ~ (contains), < <= > >= (numbers, else text at the length of VALUE, "
                          "so publish_time<=2020 holds for all of 2020). E.g. --where \"publish_time>=2021\".",
                     show_default=False),
    ] = None,
    always_answer: AlwaysAnswerOption = False,
    server: Annotated[
        Optional[str],
        typer.Option(help=f"Ask a running `qa serve` at this URL instead of loading the models here. Default: ${SERVER_ENV}.",
                     show_default=False),
    ] = None,
    precision: PrecisionOption = "auto",
    backend: BackendOption = "auto",
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question (or a file of them, --questions) from the indexed collection."""
    asked = _questions(question, questions_file)
    where = [str(c) for c in parse_where(where or [])]  # an unreadable condition fails here, before any model loads
    server = server if server is not None else os.environ.get(SERVER_ENV)
    if server:
        if always_answer:
            raise QAError(f"--always-answer applies to answering here; the server at {server} abstains by its reader's rule: "
                          "pass --server '' to answer here")
        local = [name for name, value in (("--index", index_dir), ("--reader", reader), ("--device", device)) if value]
        local += [f"--{name}" for name, value in (("precision", precision), ("backend", backend)) if value != "auto"]
        if local:
            raise QAError(
                f"{', '.join(local)} choose a local index and models, but the question goes to the server at {server} "
                f"(--server or ${SERVER_ENV}), which uses its own: drop them, or pass --server '' to answer here"
            )
        from qa.client import ask_server

        token = os.environ.get(TOKEN_ENV)
        results: Iterator[dict] = (
            ask_server(server, q, top_k=top_k, answers=answers, retriever=retriever.value, where=where, token=token) for q in asked
        )
    else:
        from qa.pipeline import Pipeline

        pipeline = Pipeline(index_dir, reader=reader, retriever=retriever.value, device=device, precision=precision, backend=backend,
                            abstention=None if always_answer else "reader")
        batch = pipeline.question_batch
        results = (p.as_dict() for first in range(0, len(asked), batch)
                   for p in pipeline.ask_batch(asked[first : first + batch], top_k=top_k, answers=answers, where=where))
    show = len(asked) > 1 and err.is_terminal and (as_json or not out.is_terminal)  # answers on a terminal are progress enough
    with progress_bar("questions", disable=not show) as bar:
        task = bar.add_task("Answering", total=len(asked))
        for i, result in enumerate(results):
            for warning in result["warnings"]:
                err.print(f"[yellow]warning:[/] {escape(one_line(warning))}")
            if as_json:
                print(json.dumps(result, ensure_ascii=False), flush=True)  # each as it comes: nothing lost if a later one fails
            else:
                if len(asked) > 1:
                    out.print(("\n" if i else "") + f"[bold]Q{i + 1}. {escape(_flat(result['question']))}[/]")
                print_result(result)
            bar.advance(task)


def _questions(question: str | None, path: Path | None) -> list[str]:
    """The questions asked: the argument, or the lines of ``path`` (``-``: stdin)."""
    if (question is None) == (path is None):
        raise QAError('ask a question (qa ask "Who wrote Hamlet?") or pass a file of them (qa ask --questions FILE), not '
                      + ("both" if question is not None else "neither"))
    if question is not None:
        if not question.strip():
            raise QAError('the question is empty: ask something, e.g. qa ask "Who wrote Hamlet?"')
        return [question]
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise QAError(f"cannot read the questions from {str(path)!r}: {error}") from None
    asked = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not asked:
        raise QAError(f"no questions in {str(path)!r}: write one a line")
    return asked


def print_result(result: dict) -> None:
    """Print a prediction as ``Prediction.as_dict`` (and the server) give it."""
    if result.get("where"):  # a server older than --where sends no such key
        n = result["searched_passages"]
        out.print(Text(f"Searched the {n:,} passage{'' if n == 1 else 's'} of the documents where {' and '.join(result['where'])}.",
                       style="dim"))
    if result["reader"] is None:
        err.print(
            "[yellow]No reader available[/]: pass --reader PATH_OR_HUB_ID or set QA_READER to an "
            "extractive QA model (e.g. one fine-tuned on SQuAD). Showing the top passages."
        )
        for passage in result["passages"]:
            out.print(f"[bold]{passage['rank']}.[/] {_where(passage['document'], passage['title'])}  [dim]score {passage['score']:.3f}[/]")
            out.print(Text("   " + _excerpt(passage["text"])), "")
        if not result["passages"]:
            out.print("No passage in the index matches this question.")
        return
    if not result["answers"] and result.get("off_topic"):  # a server older than the cosine floor sends no such key
        out.print("No answer: none of the passages is close to this question; the collection does not seem to cover it "
                  "(--always-answer shows the reader's best guesses).")
        return
    if not result["answers"] and result.get("abstained"):  # a server older than abstention sends no such key
        out.print("No answer: the reader judges that none of the passages it read answers this question "
                  "(--always-answer shows its best guesses).")
        return
    if not result["answers"]:
        out.print("No answer: the index holds no passage that answers this question.")
        return
    for i, answer in enumerate(result["answers"], start=1):
        out.print(
            f"[bold]{i}. {escape(_flat(answer['answer']))}[/]  [dim]score {answer['score']:.2f}[/]  "
            f"{_where(answer['document'], answer['title'])}"
        )
        cited = [c for c in (answer.get("citation"), answer.get("link")) if c]  # a server older than citations sends none
        if cited:
            out.print(Text("   " + _flat(". ".join(cited)), style="dim"))
        out.print(_marked(answer["context"], answer["start"], answer["end"]), "")


def _where(doc_id: str, title: str) -> str:
    title = f" — {escape(_flat(title))}" if title else ""
    return f"[cyan]{escape(_flat(doc_id))}[/]{title}"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _excerpt(text: str, width: int = 300) -> str:
    text = _flat(text)
    return text if len(text) <= width else text[:width].rsplit(" ", 1)[0] + " …"


def _marked(text: str, start: int, end: int, context: int = 160) -> Text:
    """The passage around the answer ``text[start:end]``, on one line, the answer highlighted; where
    the output shows no styles (a pipe, a file), marked as Markdown's bold, ``**answer**``."""
    before, after = _flat(text[:start]), _flat(text[end:])
    if len(before) > context:
        before = "… " + before[-context:].split(" ", 1)[-1]
    if len(after) > context:
        after = after[:context].rsplit(" ", 1)[0] + " …"
    gap_before = " " if start > 0 and text[start - 1].isspace() else ""
    gap_after = " " if end < len(text) and text[end].isspace() else ""
    marked = Text("   ")
    marked.append(before + gap_before)
    answer = _flat(text[start:end])
    marked.append(answer if out.color_system else f"**{answer}**", style="bold black on yellow")
    marked.append(gap_after + after)
    return marked

