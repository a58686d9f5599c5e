"""The `qa` command line: parse, call the library, print. Nothing here that Python users lack."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

import qa
from qa.corpora.readers import DEFAULT_MAX_FILE_MB
from qa.device import PRECISIONS
from qa.embedding import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, DEFAULT_EMBEDDING_MODEL
from qa.errors import QAError
from qa.index.dense import KINDS as DENSE_KINDS
from qa.index.remote import SHARD_TOKEN_ENV
from qa.indexer.options import LayoutOptions
from qa.indexer.passages import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS, DEFAULT_OVERLAP_WORDS
from qa.pipeline import DEFAULT_ANSWERS, DEFAULT_TOP_K, QUESTION_BATCH
from qa.reader.train_config import TrainConfig
from qa.retriever.train_config import RetrieverTrainConfig
from qa.retriever import DEFAULT_RETRIEVER, RETRIEVERS

app = typer.Typer(
    help="Answer questions, with evidence, from your own document collection.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


RetrieverChoice = Enum("RetrieverChoice", {name: name for name in RETRIEVERS}, type=str)


IndexOption = Annotated[
    Optional[Path],
    typer.Option(
        "--index",
        "-i",
        help="Index directory. Default: $QA_INDEX, else ./.qa-index.",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    Optional[str], typer.Option(help="Torch device (cpu, cuda, cuda:1). Default: cuda if available, else cpu.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.")]
BackendOption = Annotated[
    str,
    typer.Option(help="What runs the reader: auto (OpenVINO for bf16 on a CPU where OpenVINO (the extra qa\\[openvino]) is installed, else torch), "
                      "torch or openvino."),
]
AlwaysAnswerOption = Annotated[
    bool, typer.Option("--always-answer", help="Show the best answers even where the reader judges that the passages do not answer.")
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="Arithmetic of the reader and question encoder: auto (fp16 on CUDA, bf16 on CPUs with native bf16, "
        f"else fp32), {', '.join(PRECISIONS[1:])} (int8: the reader only)."
    ),
]

LOG_ENV = "QA_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error")


DEBUG_ENV = "QA_DEBUG"
SERVER_ENV = "QA_SERVER"
TOKEN_ENV = "QA_TOKEN"


def _friendly_errors(command):
    """Turn a QAError into one line on stderr and exit status 1, with no traceback. Anything
    else (a bug, or a library's panic) is one line too, exit status 2, with the way to see the
    traceback (``QA_DEBUG=1``)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except QAError as error:
            err.print(f"[bold red]error:[/] {escape(_one_line(str(error)))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as error:  # noqa: BLE001 - Rust panics are BaseExceptions
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            detail = _one_line(str(error)) or "no message"
            err.print(
                f"[bold red]error:[/] unexpected {type(error).__name__}: {escape(detail)} "
                f"(a bug in qa: please report it; {DEBUG_ENV}=1 shows the traceback)"
            )
            raise typer.Exit(2) from None

    return wrapper


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _version(value: bool) -> None:
    if value:
        out.print(f"qa {qa.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log what qa does on stderr (-v: info, -vv: debug).")
    ] = 0,
    log_level: Annotated[
        Optional[str], typer.Option(help=f"Log level: {', '.join(LOG_LEVELS)}. Default: ${LOG_ENV}, else warning.", show_default=False)
    ] = None,
) -> None:
    """Answer questions, with evidence, from your own document collection."""
    _configure_logging(verbose, log_level)


def _configure_logging(verbose: int, log_level: Optional[str]) -> None:
    """Send the ``qa`` logger's records to stderr: at ``--log-level``, else as ``-v`` says, else
    at ``$QA_LOG_LEVEL``, else warnings only."""
    if log_level is None and verbose:
        log_level = "info" if verbose == 1 else "debug"
    level = (log_level or os.environ.get(LOG_ENV) or "warning").lower()
    if level not in LOG_LEVELS:
        err.print(f"[bold red]error:[/] unknown log level {escape(level)!r}: choose from {', '.join(LOG_LEVELS)}")
        raise typer.Exit(1)
    logger = logging.getLogger("qa")
    for handler in [h for h in logger.handlers if getattr(h, "_qa_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler._qa_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())


@app.command()
@_friendly_errors
def index(
    path: Annotated[
        Optional[Path], typer.Argument(help="A corpus folder (walked recursively) or a single file; with --check, the index.", show_default=False)
    ] = None,
    index_dir: IndexOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Verify an index (PATH, --index or the default) instead of building one.")
    ] = False,
    add: Annotated[
        bool, typer.Option("--add", help="Add PATH's documents to the existing index; unchanged documents are skipped.")
    ] = False,
    embedding_model: Annotated[
        Optional[str],
        typer.Option(help="sentence-transformers model: a local folder or a hub id. Default: all-MiniLM-L6-v2 (with --add: the index's)."),
    ] = None,
    max_tokens: Annotated[
        Optional[int],
        typer.Option(min=1, help=f"Embedding-model tokens per passage, ending at a sentence end where cheap. Default: {DEFAULT_MAX_TOKENS}."),
    ] = None,
    overlap_tokens: Annotated[int, typer.Option(min=0, help="Tokens shared by consecutive passages.")] = DEFAULT_OVERLAP_TOKENS,
    max_words: Annotated[
        Optional[int], typer.Option(min=1, help="Split into windows of this many words instead of tokens.")
    ] = None,
    overlap_words: Annotated[int, typer.Option(min=0, help="Words shared by consecutive --max-words windows.")] = DEFAULT_OVERLAP_WORDS,
    batch_size: Annotated[
        Optional[int], typer.Option(min=1, help=f"Embedding batch size. Default: {CPU_BATCH_SIZE} on CPU, {CUDA_BATCH_SIZE} on CUDA.")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="What runs the embedding model: auto (OpenVINO for bf16 on a CPU with native bf16 where the extra "
                               "qa\\[openvino] is installed, else torch), torch or openvino.")
    ] = "auto",
    id_field: Annotated[str, typer.Option(help="JSON/JSONL record field holding the document id.")] = "id",
    title_field: Annotated[str, typer.Option(help="JSON/JSONL record field holding the title.")] = "title",
    text_field: Annotated[str, typer.Option(help="JSON/JSONL record field holding the text.")] = "text",
    include: Annotated[
        Optional[list[str]], typer.Option(help="Read only files matching this glob (repeatable; no '/': file names).")
    ] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Skip files matching this glob (repeatable).")] = None,
    max_file_mb: Annotated[
        float,
        typer.Option(
            min=0,
            help="Skip files larger than this (JSON Lines are streamed and exempt). A file is read whole: "
            "budget about 9 MB of memory per MB of a text file (benchmarks/bench_ingest_memory.py: 64 MB took 1.1 GB).",
        ),
    ] = DEFAULT_MAX_FILE_MB,
    dense_index: Annotated[
        str, typer.Option(help=f"FAISS index: {', '.join(DENSE_KINDS)} (auto: exact below 200,000 passages, else IVF).")
    ] = LayoutOptions.dense_index,
    shard_passages: Annotated[
        Optional[int],
        typer.Option(
            min=1, metavar="N",
            help="Write the index as shards of N passages or just over (a document stays in one shard; each shard its own "
            "store, BM25 and dense part, searched as one). "
            "With --add: the added documents go into new shards (an unsharded index becomes shard 0); adding to a sharded "
            "index always writes new shards.",
            show_default=False,
        ),
    ] = None,
    open_shards: Annotated[
        int,
        typer.Option(
            min=1, metavar="K",
            help="With --shard-passages: fill K shards at once, each document going to the one with the fewest passages, so "
            "that a --ray build's K shard writers add in parallel (the passages are then numbered in another order than with 1).",
        ),
    ] = LayoutOptions.open_shards,
    device: DeviceOption = None,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray", metavar="ADDRESS",
            help="Read, split and embed on a Ray cluster: 'auto' (the cluster this machine belongs to), a cluster's "
            "address, or 'local' (start Ray on this machine). Needs pip install \"qa[ray]\".",
            show_default=False,
        ),
    ] = None,
    ray_workers: Annotated[
        Optional[int], typer.Option(min=1, help="Embedding actors of a --ray build. Default: one per GPU, else one per 2 CPUs.", show_default=False)
    ] = None,
    ray_shard_writers: Annotated[
        str,
        typer.Option(
            metavar="here|cluster",
            help="Who writes the shards of a sharded --ray build: 'here' (this machine, whose disk holds the index) or "
            "'cluster' (the cluster's nodes in turn, each copying its finished shard into the index folder, which must then be "
            "on a file system every node mounts at the same path).",
        ),
    ] = "here",
    join: Annotated[
        Optional[list[str]],
        typer.Option(
            "--join", metavar="URL",
            help="Instead of reading a corpus, write an index whose shards are indexes served by `qa serve-shard` on other "
            f"machines (repeatable, in order; their token, if any: ${SHARD_TOKEN_ENV}).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Index a collection for `qa ask`: .txt, .md, .html, .pdf, .json(.gz), .jsonl(.gz), SQuAD and COVID-QA
    files, and CORD-19 releases (metadata.csv + document_parses)."""
    if check:
        _check_index(path or index_dir, as_json)
        return
    if join:
        _join(join, path, index_dir, add or ray is not None, as_json)
        return
    if path is None:
        raise QAError("qa index needs the corpus to index: qa index PATH (or qa index --check to verify an index)")
    from qa.indexer import EmbeddingOptions, LayoutOptions, PassageOptions, RayOptions, ReadOptions, build_index

    if ray is None and (ray_workers is not None or ray_shard_writers != "here"):
        option = "--ray-workers sets the workers" if ray_workers is not None else "--ray-shard-writers sets the shard writers"
        raise QAError(f"{option} of a --ray build: add --ray local, --ray auto or --ray ADDRESS")

    result = build_index(
        path,
        index_dir,
        add=add,
        reading=ReadOptions(tuple(include or ()), tuple(exclude or ()), max_file_mb, id_field, title_field, text_field),
        passages=PassageOptions(max_tokens, overlap_tokens, max_words, overlap_words),
        embedding=EmbeddingOptions(embedding_model, device, batch_size, backend),
        layout_options=LayoutOptions(dense_index, shard_passages, open_shards),
        show_progress=not as_json and err.is_terminal,
        ray=None if ray is None else RayOptions(ray, ray_workers, shard_writers=ray_shard_writers),
    )
    for warning in result.report.warnings[:20]:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if len(result.report.warnings) > 20:
        err.print(f"[yellow]warning:[/] … and {len(result.report.warnings) - 20} more")
    if as_json:
        print(json.dumps({"index": str(result.path), "seconds": result.seconds, **result.manifest}))
        return
    counts = result.manifest["counts"]
    report = result.report
    shards = result.manifest.get("shards")
    in_shards = f" in {len(shards)} shards" if shards else ""
    if add:
        out.print(
            f"Added [bold]{report.documents}[/] documents as [bold]{result.new_passages}[/] passages to "
            f"[bold]{escape(str(result.path))}[/] (now {counts['documents']} documents, {counts['passages']} passages{in_shards}) "
            f"in {result.seconds:.1f} s"
        )
    else:
        out.print(
            f"Indexed [bold]{counts['documents']}[/] documents as [bold]{counts['passages']}[/] passages "
            f"into [bold]{escape(str(result.path))}[/]{in_shards} in {result.seconds:.1f} s"
        )
    if report.skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in report.skipped.most_common())
        out.print(f"Files read: {report.files_read}; skipped: {escape(reasons)}")
    if report.linked_folders:
        out.print(f"Followed {report.linked_folders} symbolic link(s) to folders")


def _join(urls: list[str], path: Optional[Path], index_dir: Optional[Path], building: bool, as_json: bool) -> None:
    from qa.indexer.join import join_shards

    if path is not None or building:
        raise QAError("qa index --join writes an index of served shards and reads no corpus: drop PATH, --add and --ray")
    result = join_shards(urls, index_dir)
    if as_json:
        print(json.dumps({"index": str(result.path), "seconds": result.seconds, **result.manifest}))
        return
    counts = result.manifest["counts"]
    out.print(f"Joined [bold]{len(urls)}[/] served shards ({counts['documents']} documents, {counts['passages']} passages) "
              f"into [bold]{escape(str(result.path))}[/]")


def _check_index(path: Optional[Path], as_json: bool) -> None:
    from qa.index import check_index, default_index_dir

    report = check_index(path or default_index_dir())
    if as_json:
        print(json.dumps(report.as_dict()))
    elif report.ok:
        counts = report.manifest["counts"]
        out.print(
            f"OK: {escape(str(report.path))} ({counts['documents']} documents, {counts['passages']} passages, "
            f"generation {report.manifest.get('generation', 1)}): " + escape("; ".join(report.checks))
        )
    else:
        for problem in report.problems:
            err.print(f"[bold red]problem:[/] {escape(_one_line(problem))}")
        err.print(f"[bold red]error:[/] the index at {escape(str(report.path))!r} is damaged: rebuild it with `qa index`")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@_friendly_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    index_dir: IndexOption = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Passages to retrieve and read.")] = DEFAULT_TOP_K,
    retriever: Annotated[RetrieverChoice, typer.Option(help="How to retrieve passages.")] = RetrieverChoice(DEFAULT_RETRIEVER),
    reader: Annotated[
        Optional[str],
        typer.Option(help="Reader model: a folder, a hub id, or a packaged reader (default; biomed: trained with COVID-QA too). "
                     "Default: $QA_READER, else the packaged default."),
    ] = None,
    answers: Annotated[int, typer.Option("--answers", "-n", min=1, help="Answers to show.")] = DEFAULT_ANSWERS,
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
    """Answer a question from the indexed collection."""
    if not question.strip():
        raise QAError('the question is empty: ask something, e.g. qa ask "Who wrote Hamlet?"')
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

        result = ask_server(server, question, top_k=top_k, answers=answers, retriever=retriever.value,
                            token=os.environ.get(TOKEN_ENV))
    else:
        from qa.pipeline import Pipeline

        pipeline = Pipeline(index_dir, reader=reader, retriever=retriever.value, device=device, precision=precision, backend=backend,
                            abstention=None if always_answer else "reader")
        result = pipeline.ask(question, top_k=top_k, answers=answers).as_dict()
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(_one_line(warning))}")
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    _print_result(result)


@app.command()
@_friendly_errors
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


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
@_friendly_errors
def serve(
    index_dir: IndexOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Any other than 127.0.0.1/localhost needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port, printed).")] = 8000,
    token: Annotated[
        Optional[str], typer.Option(help=f"Require 'Authorization: Bearer TOKEN' on every API request. Default: ${TOKEN_ENV}.", show_default=False)
    ] = None,
    reader: Annotated[
        Optional[str], typer.Option(help="Reader model: a folder, a hub id, or a packaged reader (default; biomed: trained with COVID-QA too). "
                     "Default: $QA_READER, else the packaged default.")
    ] = None,
    cors_origin: Annotated[
        Optional[list[str]], typer.Option(help="Allow browser pages from this origin to call the API (repeatable). Default: none.")
    ] = None,
    max_queue: Annotated[int, typer.Option(min=1, help="Questions that may wait; beyond, 503 with Retry-After.")] = 32,
    max_batch: Annotated[int, typer.Option(min=1, help="Questions read together in one batch.")] = QUESTION_BATCH,
    batch_window_ms: Annotated[float, typer.Option(min=0, help="How long an idle server waits for questions to batch.")] = 5.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a question may wait and be read before a 503.")] = 30.0,
    max_question_chars: Annotated[int, typer.Option(min=1, help="Longest question taken.")] = 1000,
    precision: PrecisionOption = "auto",
    backend: BackendOption = "auto",
    device: DeviceOption = None,
) -> None:
    """Serve the index over HTTP: a web page at /, the API (POST /ask, GET /documents/ID, /ready,
    /metrics) and its documentation at /docs."""
    import uvicorn

    from qa.index import default_index_dir
    from qa.server import ServerSettings, ServiceOptions, create_app

    token = _token_for(host, token, TOKEN_ENV, "ask")
    index_path = index_dir or default_index_dir()
    from qa.index import layout

    layout.read_manifest(index_path)  # fail now, in one line, when there is no index
    options = ServiceOptions(index=index_path, reader=reader, device=device, precision=precision, backend=backend, max_queue=max_queue,
                             max_batch=max_batch, batch_window=batch_window_ms / 1000)
    settings = ServerSettings(token=token, cors_origins=tuple(cors_origin or ()), timeout=timeout, max_question_chars=max_question_chars)
    sock = _listen(host, port)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}/"

    def ready(service) -> None:
        if service.error:
            err.print(f"[bold red]error:[/] cannot serve: {escape(_one_line(service.error))}")
        else:
            err.print(f"Ready: {service.index.manifest['counts']['passages']} passages, reader "
                      f"{escape(str(service.reader.name if service.reader else None))}. Open {url}", highlight=False)

    app_ = create_app(options, settings, on_ready=ready)
    config = uvicorn.Config(app_, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    err.print(f"Serving {escape(str(index_path))} at {url} (loading the models; Ctrl+C stops)", highlight=False)
    uvicorn.Server(config).run(sockets=[sock])


@app.command("serve-shard")
@_friendly_errors
def serve_shard(
    index_dir: IndexOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Any other than 127.0.0.1/localhost needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port, printed).")] = 8100,
    token: Annotated[
        Optional[str],
        typer.Option(help=f"Require 'Authorization: Bearer TOKEN' on every request. Default: ${SHARD_TOKEN_ENV}.", show_default=False),
    ] = None,
) -> None:
    """Serve an index as one shard of an index on another machine (`qa index --join URL ...` there): its passages,
    BM25 and dense search, for questions that machine analyses and embeds."""
    import uvicorn

    from qa.index import default_index_dir
    from qa.server.shard import create_shard_app

    token = _token_for(host, token, SHARD_TOKEN_ENV, "search this shard", f"set {SHARD_TOKEN_ENV} on the joining machine too")
    index_path = index_dir or default_index_dir()
    app_ = create_shard_app(index_path, token)
    index = app_.state.served.index
    sock = _listen(host, port)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}"
    err.print(f"Serving {escape(str(index_path))} ({len(index)} passages, build {index.build_id}) as a shard at {url}: "
              f"join it with `qa index --join {url}` (Ctrl+C stops)", highlight=False)
    uvicorn.Server(uvicorn.Config(app_, log_level="warning", access_log=False, timeout_graceful_shutdown=5)).run(sockets=[sock])


def _token_for(host: str, token: str | None, env: str, what: str, also: str = "") -> str | None:
    """The server's token (``--token``, else ``$env``); a server listening beyond loopback needs one."""
    token = token or os.environ.get(env) or None
    if host not in LOOPBACK and not token:
        raise QAError(
            f"listening on {host} lets other machines in: pass --token (or set {env}) so that only holders of the token "
            f"can {what}, or keep the default --host 127.0.0.1" + (f" ({also})" if also else "")
        )
    return token


def _listen(host: str, port: int):
    """A listening socket on ``host``:``port`` (port 0: a free one), with a clear error when taken."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        raise QAError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


train_app = typer.Typer(help="Train models.", no_args_is_help=True)
TRAIN_DEFAULTS = TrainConfig(train="", base="", output="")
RETRIEVER_DEFAULTS = RetrieverTrainConfig(train=[], index=[], output="")
app.add_typer(train_app, name="train")


def _printed_as_stopped_or_json(metrics, as_json: bool, command: str, output: Path, checkpoint: Path) -> bool:
    """Print what ``qa train COMMAND`` says when it stopped at a checkpoint (``metrics`` None) or
    when --json asks for the metrics; True when it printed, leaving only the text summary to print."""
    if metrics is None:
        if as_json:
            print(json.dumps({"stopped": True, "checkpoint": str(checkpoint)}))
        else:
            out.print(escape(f"Stopped with a checkpoint in {checkpoint}: continue with `qa train {command} --output {output} --resume`"))
        return True
    if as_json:
        print(json.dumps(metrics))
        return True
    return False


@train_app.command("reader")
@_friendly_errors
def train_reader(
    train: Annotated[
        Optional[list[str]],
        typer.Option(help="Training data: SQuAD v1.1/v2.0 or COVID-QA JSON (.json or .json.gz); repeatable (mixed in one run)."),
    ] = None,
    train_repeat: Annotated[
        Optional[list[int]],
        typer.Option(min=1, help="Use each --train file's questions this many times an epoch (once per --train, in order), "
                     "e.g. to mix COVID-QA into SQuAD."),
    ] = None,
    base: Annotated[Optional[str], typer.Option(help="Model to start from: a folder or hub id.")] = None,
    output: Annotated[Path, typer.Option(help="Where the model, model card and checkpoints go.")] = Path("reader"),
    eval_file: Annotated[Optional[str], typer.Option("--eval", help="SQuAD-format file for EM/F1 on gold paragraphs at the end.")] = None,
    max_length: Annotated[int, typer.Option(min=32, help="Tokens per feature (question + passage window).")] = TRAIN_DEFAULTS.max_length,
    stride: Annotated[int, typer.Option(min=0, help="Tokens shared by consecutive windows of a long passage.")] = TRAIN_DEFAULTS.stride,
    batch_size: Annotated[int, typer.Option(min=1)] = TRAIN_DEFAULTS.batch_size,
    grad_accum: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = TRAIN_DEFAULTS.grad_accum,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = TRAIN_DEFAULTS.lr,
    epochs: Annotated[float, typer.Option(help="Passes over the training features.")] = TRAIN_DEFAULTS.epochs,
    warmup: Annotated[float, typer.Option(help="Fraction of steps with linear warmup.")] = TRAIN_DEFAULTS.warmup,
    weight_decay: Annotated[float, typer.Option()] = TRAIN_DEFAULTS.weight_decay,
    seed: Annotated[int, typer.Option()] = TRAIN_DEFAULTS.seed,
    freeze_embeddings: Annotated[bool, typer.Option(help="Keep the word embeddings fixed.")] = False,
    negative_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Keep this fraction of the windows without an answer (long documents).")
    ] = TRAIN_DEFAULTS.negative_fraction,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Optimizer steps between checkpoints.")] = TRAIN_DEFAULTS.checkpoint_every,
    max_minutes: Annotated[Optional[float], typer.Option(help="Fit the schedule into this many minutes of training.")] = None,
    stop_after_minutes: Annotated[Optional[float], typer.Option(help="Checkpoint and stop after this many minutes; continue with --resume.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on the first N questions only.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on N questions (seed 1).")] = None,
    save_dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 for the saved weights.")] = TRAIN_DEFAULTS.save_dtype,
    teacher: Annotated[
        Optional[str], typer.Option(help="Distil from this reader (same tokenizer): its logits are computed once and kept with the run.")
    ] = None,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight of the teacher's soft targets (hard labels: 1 - alpha).")] = TRAIN_DEFAULTS.alpha,
    temperature: Annotated[float, typer.Option(min=0.01, help="Softening of both distributions for distillation.")] = TRAIN_DEFAULTS.temperature,
    layers: Annotated[Optional[int], typer.Option(min=1, help="Start from this many of --base's layers, evenly spaced (a smaller student).")] = None,
    shared_norm: Annotated[
        bool,
        typer.Option("--shared-norm", help="Batch each question's windows and retrieved passages (qa train open-data) together, "
                     "with one softmax over all of them, so that span scores compare across passages."),
    ] = False,
    unanswerable_fraction: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="With --shared-norm: this fraction of the questions lose their gold passage each epoch "
                     "and learn [CLS] over their retrieved negatives (the no-answer signal for abstention)."),
    ] = TRAIN_DEFAULTS.unanswerable_fraction,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --output.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty --output that is not a qa training output (its model files are replaced).")
    ] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune an extractive QA reader (e.g. from all-MiniLM-L6-v2 on SQuAD v1.1 train)."""
    from qa.reader.train import TrainConfig, train_reader as run

    if save_dtype not in ("float32", "float16", "bfloat16"):
        raise QAError(f"--save-dtype must be float32, float16 or bfloat16, not {save_dtype!r}")
    if not resume and not (train and base):
        raise QAError("--train and --base are required (or --resume to continue a checkpoint)")
    config = TrainConfig(
        train=list(train or []), base=base or "", output=str(output), eval=eval_file, max_length=max_length, stride=stride,
        batch_size=batch_size, grad_accum=grad_accum, lr=lr, epochs=epochs, warmup=warmup,
        weight_decay=weight_decay, seed=seed, freeze_embeddings=freeze_embeddings, negative_fraction=negative_fraction,
        checkpoint_every=checkpoint_every, max_minutes=max_minutes, limit=limit, eval_limit=eval_limit,
        save_dtype=save_dtype, teacher=teacher, alpha=alpha, temperature=temperature, layers=layers,
        shared_norm=shared_norm, unanswerable_fraction=unanswerable_fraction, train_repeat=list(train_repeat) if train_repeat else None,
        device=device,
    )
    metrics = run(
        config,
        resume=resume,
        overwrite=overwrite,
        show_progress=not as_json and err.is_terminal,
        stop_after_minutes=stop_after_minutes,
        log=None if err.is_terminal else lambda line: err.print(line, highlight=False),
    )
    if _printed_as_stopped_or_json(metrics, as_json, "reader", output, output / "checkpoint"):
        return
    scores = f", EM {metrics['exact_match']:.2f} / F1 {metrics['f1']:.2f}" if "exact_match" in metrics else ""
    out.print(f"Trained {metrics['steps']} steps in {metrics['train_seconds'] / 60:.1f} min{scores}; model in {escape(str(output))}")


@train_app.command("merge")
@_friendly_errors
def train_merge(
    first: Annotated[str, typer.Argument(metavar="FIRST", help="A reader: folder, hub id, or packaged name (default, biomed).")],
    second: Annotated[str, typer.Argument(metavar="SECOND", help="A reader of the same architecture and tokenizer, e.g. one trained from FIRST.")],
    weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="The share of SECOND: (1 - weight) x FIRST + weight x SECOND.")] = 0.5,
    output: Annotated[Path, typer.Option(help="Where the merged reader and its model card go.")] = Path("reader"),
    eval_file: Annotated[Optional[str], typer.Option("--eval", help="SQuAD-format file for EM/F1 on gold paragraphs at the end.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on N questions (seed 1).")] = None,
    save_dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 for the saved weights.")] = "float16",
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Average two readers' weights (weight-space ensembling): a reader between a base and one
    fine-tuned from it, e.g. the default and biomed."""
    from qa.reader.merge import merge_readers

    metrics = merge_readers(first, second, weight, output, eval_file=eval_file, eval_limit=eval_limit,
                            save_dtype=save_dtype, device=device)
    if as_json:
        print(json.dumps(metrics))
        return
    scores = f", EM {metrics['exact_match']:.2f} / F1 {metrics['f1']:.2f}" if "exact_match" in metrics else ""
    out.print(escape(f"Merged {first} and {second} (weight {weight:g} on the second){scores}; reader in {output}"))


@train_app.command("retriever")
@_friendly_errors
def train_retriever(
    train: Annotated[
        Optional[list[str]], typer.Option(help="SQuAD-format training data (repeatable): SQuAD v1.1 train, COVID-QA train.")
    ] = None,
    index_dir: Annotated[
        Optional[list[str]],
        typer.Option("--index", help="An index holding the training paragraphs (its passages are the positives and hard negatives): one for all --train files, or one per file, in order."),
    ] = None,
    output: Annotated[Path, typer.Option(help="Where the sentence-transformers model, its card and checkpoints go.")] = Path("retriever"),
    base: Annotated[str, typer.Option(help="Encoder to start from: a folder or hub id.")] = RETRIEVER_DEFAULTS.base,
    batch_size: Annotated[int, typer.Option(min=2, help="Questions per batch: each is a negative for the others.")] = RETRIEVER_DEFAULTS.batch_size,
    mini_batch_size: Annotated[
        int, typer.Option(min=0, help="Cached MNRL: compute a batch in mini-batches of this many (memory); 0: plain MNRL.")
    ] = RETRIEVER_DEFAULTS.mini_batch_size,
    negatives: Annotated[int, typer.Option(min=0, help="BM25 hard negatives per question.")] = RETRIEVER_DEFAULTS.negatives,
    negative_depth: Annotated[int, typer.Option(min=1, help="BM25 passages searched for hard negatives.")] = RETRIEVER_DEFAULTS.negative_depth,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = RETRIEVER_DEFAULTS.lr,
    epochs: Annotated[float, typer.Option(help="Passes over the training questions.")] = RETRIEVER_DEFAULTS.epochs,
    warmup: Annotated[float, typer.Option(help="Fraction of steps with linear warmup.")] = RETRIEVER_DEFAULTS.warmup,
    seed: Annotated[int, typer.Option()] = RETRIEVER_DEFAULTS.seed,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = RETRIEVER_DEFAULTS.checkpoint_every,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on the first N questions of each file only.")] = None,
    held_out: Annotated[int, typer.Option(min=0, help="Questions kept out to measure recall before and after.")] = RETRIEVER_DEFAULTS.held_out,
    stop_after_minutes: Annotated[Optional[float], typer.Option(help="Checkpoint and stop after this many minutes; continue with --resume.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --output.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty --output that is not a qa training output.")
    ] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune the retriever's encoder on questions and the passages that answer them, with BM25 hard negatives."""
    from qa.retriever.train import RetrieverTrainConfig, train_retriever as run

    if not resume and not (train and index_dir):
        raise QAError("--train and --index are required (or --resume to continue a checkpoint)")
    config = RetrieverTrainConfig(
        train=list(train or []), index=list(index_dir or []), output=str(output), base=base, batch_size=batch_size,
        mini_batch_size=mini_batch_size, negatives=negatives, negative_depth=negative_depth, lr=lr, epochs=epochs,
        warmup=warmup, seed=seed, checkpoint_every=checkpoint_every, limit=limit, held_out=held_out, device=device,
    )
    metrics = run(config, resume=resume, overwrite=overwrite, show_progress=not as_json and err.is_terminal,
                  stop_after_minutes=stop_after_minutes, log=lambda line: err.print(escape(line), highlight=False))
    if _printed_as_stopped_or_json(metrics, as_json, "retriever", output, output / "checkpoints"):
        return
    after = metrics["recall_after"]
    scores = f"; held-out recall@10 {metrics['recall_before']['recall@10']} -> {after['recall@10']}" if after else ""
    out.print(f"Trained {metrics['steps']} steps in {metrics['train_seconds'] / 60:.1f} min{scores}; model in {escape(str(output))} "
              f"(build an index with it: qa index CORPUS --embedding-model {escape(str(output))})")


@train_app.command("open-data")
@_friendly_errors
def train_open_data(
    train: Annotated[str, typer.Option(help="SQuAD-format training data (e.g. SQuAD v1.1 train).")],
    index_dir: Annotated[str, typer.Option("--index", help="An index holding the training paragraphs (e.g. the open-squad one).")],
    output: Annotated[Path, typer.Option(help="The SQuAD v2.0 file to write, for qa train reader --train.")],
    negatives: Annotated[int, typer.Option(min=0, help="Retrieved passages without an answer per question, labelled unanswerable.")] = 2,
    retriever: Annotated[RetrieverChoice, typer.Option(help="How passages are retrieved.")] = RetrieverChoice(DEFAULT_RETRIEVER),
    depth: Annotated[int, typer.Option(min=1, help="Retrieved passages searched for negatives.")] = DEFAULT_TOP_K,
    limit: Annotated[Optional[int], typer.Option(min=1, help="The first N answerable questions only (after --skip).")] = None,
    skip: Annotated[int, typer.Option(min=0, help="Leave out the first N answerable questions (e.g. those an earlier run trained on).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Write training data for reading retrieved passages: each question with its gold passage and
    the retriever's passages that do not answer it (a SQuAD v2.0 file for qa train reader)."""
    from qa.index import Index
    from qa.retriever.open_data import open_training_data, write_open_training_data

    if output.exists():
        raise QAError(f"{str(output)!r} exists: choose a new file (qa never overwrites what it did not write)")
    data, counts = open_training_data(train, Index(index_dir), negatives=negatives, retriever=retriever.value, depth=depth,
                                      limit=limit, skip=skip, show_progress=not as_json and err.is_terminal)
    write_open_training_data(data, output)
    if as_json:
        print(json.dumps({"output": str(output), **counts}))
        return
    out.print(f"Wrote {escape(str(output))}: {counts['questions']} questions with their gold passage and "
              f"{counts['negative passages']} retrieved passages without an answer")
    for what, n in counts.items():
        if what.endswith("left out: the gold answer is not inside one index passage") or "retrieved passages left out" in what:
            out.print(f"  {n} {escape(what)}")


def _print_result(result: dict) -> None:
    """Print a prediction as ``Prediction.as_dict`` (and the server) give it."""
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
    """The passage around the answer ``text[start:end]``, on one line, the answer highlighted."""
    before, after = _flat(text[:start]), _flat(text[end:])
    if len(before) > context:
        before = "… " + before[-context:].split(" ", 1)[-1]
    if len(after) > context:
        after = after[:context].rsplit(" ", 1)[0] + " …"
    gap_before = " " if start > 0 and text[start - 1].isspace() else ""
    gap_after = " " if end < len(text) and text[end].isspace() else ""
    marked = Text("   ")
    marked.append(before + gap_before)
    marked.append(_flat(text[start:end]), style="bold black on yellow")
    marked.append(gap_after + after)
    return marked


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="qa")


if __name__ == "__main__":
    sys.exit(main())
