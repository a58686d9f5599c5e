"""Asking a running `qa serve` from the command line (``qa ask --server URL``), with the standard
library alone: the CLI answers in a fraction of a second without importing torch."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from qa.errors import QAError

TIMEOUT_S = 60


def ask_server(url: str, question: str, *, top_k: int, answers: int, retriever: str, token: str | None = None) -> dict[str, Any]:
    """The server's answer: the JSON of ``qa ask --json``."""
    body = json.dumps({"question": question, "top_k": top_k, "answers": answers, "retriever": retriever}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    endpoint = url.rstrip("/") + "/ask"
    if not endpoint.startswith(("http://", "https://")):
        raise QAError(f"--server takes a URL such as http://127.0.0.1:8000, not {url!r}")
    request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise QAError(f"the server at {url} answered {error.code}: {_message(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise QAError(f"cannot reach the qa server at {url} ({reason}): is `qa serve` running there?") from None
    except ValueError:
        raise QAError(f"the server at {url} did not answer with JSON: is it a qa server?") from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason or "no message"
