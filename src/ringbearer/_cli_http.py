"""``ringbearer send --url``: submit to a node's public listener instead of the control socket.

The messages go as JSON lines to ``POST /v1/messages`` with the producer's
bearer token; the answer is the socket's: the submit reply, or an error with
its code, raised as the socket client raises it (``RequestError``), so the
command's output and exit codes are the same either way. A node that cannot
be reached, or answers something that is not the listener's, is a
``ControlError``. The token is read from the environment, never from the
command line (where ``ps`` would show it), and never printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import httpx

from ._cli_base import UsageError
from ._errors import ControlError, ErrorCode, RequestError

PATH = "/v1/messages"
DEFAULT_TOKEN_ENV = "RINGBEARER_TOKEN"
LINES_TYPE = "application/x-ndjson"
# Messages a request: each request is one body, and the listener refuses one past its
# max_body_bytes (256 KiB by default): a hundred messages of 2 KiB fit.
HTTP_CHUNK = 100
# What the listener says in plain text (its own limits, before the intake route answers).
_PLAIN: Mapping[int, ErrorCode] = {
    401: ErrorCode.FORBIDDEN,
    413: ErrorCode.TOO_MANY,
    429: ErrorCode.BUSY,
    503: ErrorCode.STORE_UNAVAILABLE,
}


def token_from_env(name: str = DEFAULT_TOKEN_ENV, environ: Mapping[str, str] | None = None) -> str:
    """The bearer token in environment variable ``name``; UsageError when it is unset."""
    token = (os.environ if environ is None else environ).get(name, "").strip()
    if not token:
        raise UsageError(f"no token: set ${name} to the producer's token")
    return token


def endpoint(url: str) -> str:
    """The submit endpoint of a node's listener URL (``https://host:8787`` or the endpoint)."""
    base = url.rstrip("/")
    return base if base.endswith(PATH) else f"{base}{PATH}"


def submit_over_http(
    url: str,
    token: str,
    messages: list[dict[str, Any]],
    *,
    timeout: float = 120.0,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Submit ``messages`` (``MessageIn`` objects as JSON) in one request; the reply, as
    ``{"accepted": [...], "refused": [...]}``. RequestError for an error reply,
    ControlError when the node is not reached or not understood."""
    body = b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)
    headers = {"authorization": f"Bearer {token}", "content-type": LINES_TYPE}
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            answer = client.post(endpoint(url), content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ControlError(f"cannot reach {endpoint(url)}: {type(exc).__name__}: {exc}") from exc
    if answer.status_code == 200:
        return _reply(answer)
    raise _error(answer)


def _reply(answer: httpx.Response) -> dict[str, Any]:
    document = _document(answer)
    if not isinstance(document, dict) or not {"accepted", "refused"} <= set(document):
        raise ControlError(f"unreadable reply from {answer.request.url}: not a submit reply")
    return document


def _error(answer: httpx.Response) -> RequestError | ControlError:
    """The error an answer other than 200 says: the listener's own, else by its status."""
    document = _document(answer)
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return RequestError(_code(error.get("code")), error["message"])
    status = answer.status_code
    code = _PLAIN.get(status)
    if code is not None:
        return RequestError(code, f"HTTP {status}: {_text(answer)}")
    return ControlError(f"{answer.request.url} answered HTTP {status}: {_text(answer)}")


def _document(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _text(answer: httpx.Response) -> str:
    """The start of a plain answer's text, on one line."""
    text = " ".join(answer.text.split())
    return text[:200] or answer.reason_phrase


def _code(text: object) -> ErrorCode:
    """A code this client does not know (a newer daemon's) reads as internal."""
    try:
        return ErrorCode(str(text))
    except ValueError:
        return ErrorCode.INTERNAL
