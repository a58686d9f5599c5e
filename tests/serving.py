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
    import socket

    import uvicorn

    app = create_app(ServiceOptions(index=index, reader=str(reader) if reader else None, precision="fp32", **options), settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 60
        while call(url, "GET", "/health", token=settings.token)[0] != 200 or call(url, "GET", "/ready", token=settings.token)[0] != 200:
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
