"""Serving in tests: a real uvicorn server on a free loopback port, in a thread."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.parse
from pathlib import Path

from qa.server import ServerSettings, ServiceOptions, create_app


@contextlib.contextmanager
def running(index: Path, reader: Path | None, settings: ServerSettings = ServerSettings(), **options):
    """A server in a thread; yields its base URL once /ready says so."""
    app = create_app(ServiceOptions(index=index, reader=str(reader) if reader else None, precision="fp32", **options), settings)
    with _serving(app, lambda url: call(url, "GET", "/ready", token=settings.token)[0] == 200) as url:
        yield url


@contextlib.contextmanager
def running_shard(index: Path, token: str | None = None):
    """`qa serve-shard` of ``index`` in a thread; yields its base URL."""
    from qa.server.shard import create_shard_app

    with _serving(create_shard_app(index, token), lambda url: True) as url:
        yield url


@contextlib.contextmanager
def _serving(app, ready):
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 60
        while call(url, "GET", "/health")[0] != 200 or not ready(url):
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def call(url: str, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None, raw: bytes | None = None):
    """(status, headers, JSON or text) of one request."""
    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=data, headers=headers)
    except ConnectionError:
        return 0, {}, None
    response = connection.getresponse()
    payload = response.read()
    try:
        content = json.loads(payload)
    except ValueError:
        content = payload.decode("utf-8", "replace")
    return response.status, {k.lower(): v for k, v in response.getheaders()}, content
