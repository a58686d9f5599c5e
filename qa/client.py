"""Asking a running `qa serve` from the command line (``qa ask --server URL``), with the standard
library alone: the CLI answers in a fraction of a second without importing torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qa.errors import QAError
from qa.http import request_json


def ask_server(
    url: str, question: str, *, top_k: int, answers: int, retriever: str, where: Sequence[str] = (), token: str | None = None
) -> dict[str, Any]:
    """The server's answer: the JSON of ``qa ask --json``."""
    if not url.startswith(("http://", "https://")):
        raise QAError(f"--server takes a URL such as http://127.0.0.1:8000, not {url!r}")
    body: dict[str, Any] = {"question": question, "top_k": top_k, "answers": answers, "retriever": retriever}
    if where:  # a server older than --where refuses the key, so it is sent only when asked for
        body["where"] = list(where)
    return request_json(url.rstrip("/"), "/ask", body, token=token)
