"""JSON over HTTP with the standard library alone: what ``qa ask --server`` sends to a running
``qa serve`` (:mod:`qa.client`) and what a joined index sends to its shard servers
(:mod:`qa.index.remote`). Failures become a :class:`QAError` naming the server and what to check."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from qa.errors import QAError

TIMEOUT_S = 60


def request_json(base: str, route: str, body: Any = None, *, token: str | None = None, timeout: float = TIMEOUT_S,
                 server: str = "qa server", command: str = "qa serve", on_401: str = "") -> Any:
    """The JSON answer of the server at ``base`` to a GET of ``route`` (``body`` None) or a POST of
    ``body`` as JSON, with ``token`` as a bearer token. Errors name the ``server`` at ``base`` and
    the ``command`` that should be running there; ``on_401`` is added to a refused token's message."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + route, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        hint = on_401 if error.code == 401 else ""
        raise QAError(f"the {server} at {base} answered {error.code}: {_message(error)}{hint}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise QAError(f"cannot reach the {server} at {base} ({reason}): is `{command}` running there?") from None
    except ValueError:
        raise QAError(f"the server at {base} did not answer with JSON: is it a `{command}` server?") from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason or "no message"
