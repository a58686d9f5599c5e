"""`qa index`: build, add to, join or check an index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from qa.cli.common import IndexOption, DeviceOption, JsonOption, app, err, friendly_errors, one_line, out
from qa.corpora.readers import DEFAULT_MAX_FILE_MB
from qa.embedding import CPU_BATCH_SIZE, CUDA_BATCH_SIZE
from qa.errors import QAError
from qa.index.dense import KINDS as DENSE_KINDS
from qa.index.remote import SHARD_TOKEN_ENV
from qa.indexer.options import LayoutOptions
from qa.indexer.passages import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS, DEFAULT_OVERLAP_WORDS


@app.command()
@friendly_errors
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
        str, typer.Option(help="What runs the embedding model: auto (OpenVINO for bf16, and for int8, on a CPU where the extra "
                               "qa\\[openvino] is installed, else torch), torch or openvino.")
    ] = "auto",
    precision: Annotated[
        str, typer.Option(help="Arithmetic of the embedding model: auto (fp16 on CUDA, bf16 on CPUs where it is faster than "
                               "fp32, else fp32), fp32, bf16, fp16, int8 (static int8 on OpenVINO, calibrated once, with the "
                               "extra qa\\[openvino]; else auto). Questions are embedded in auto's precision.")
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
        embedding=EmbeddingOptions(embedding_model, device, batch_size, backend, precision),
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
    embedded = f" (passages embedded in {result.manifest['dense']['precision']})" if result.manifest["dense"].get("precision") else ""
    if add:
        out.print(
            f"Added [bold]{report.documents}[/] documents as [bold]{result.new_passages}[/] passages to "
            f"[bold]{escape(str(result.path))}[/] (now {counts['documents']} documents, {counts['passages']} passages{in_shards}) "
            f"in {result.seconds:.1f} s{embedded}"
        )
    else:
        out.print(
            f"Indexed [bold]{counts['documents']}[/] documents as [bold]{counts['passages']}[/] passages "
            f"into [bold]{escape(str(result.path))}[/]{in_shards} in {result.seconds:.1f} s{embedded}"
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
            err.print(f"[bold red]problem:[/] {escape(one_line(problem))}")
        err.print(f"[bold red]error:[/] the index at {escape(str(report.path))!r} is damaged: rebuild it with `qa index`")
    if not report.ok:
        raise typer.Exit(1)
