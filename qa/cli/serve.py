"""`qa serve` and `qa serve-shard`: the HTTP servers, on a socket opened here."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.markup import escape

from qa.cli.common import TOKEN_ENV, BackendOption, DeviceOption, IndexOption, PrecisionOption, app, err, friendly_errors, one_line
from qa.errors import QAError
from qa.index.remote import SHARD_TOKEN_ENV
from qa.pipeline import QUESTION_BATCH


LOOPBACK = ("127.0.0.1", "localhost", "::1")
HostOption = Annotated[str, typer.Option(help="Address to listen on. Any other than 127.0.0.1/localhost needs a token.")]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port, printed).")]


@app.command()
@friendly_errors
def serve(
    index_dir: IndexOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
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
            err.print(f"[bold red]error:[/] cannot serve: {escape(one_line(service.error))}")
        else:
            err.print(f"Ready: {service.index.manifest['counts']['passages']} passages, reader "
                      f"{escape(str(service.reader.name if service.reader else None))}. Open {url}", highlight=False)

    app_ = create_app(options, settings, on_ready=ready)
    config = uvicorn.Config(app_, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    err.print(f"Serving {escape(str(index_path))} at {url} (loading the models; Ctrl+C stops)", highlight=False)
    uvicorn.Server(config).run(sockets=[sock])


@app.command("serve-shard")
@friendly_errors
def serve_shard(
    index_dir: IndexOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8100,
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
