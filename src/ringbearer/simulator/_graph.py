"""What the simulated Facebook Page and Instagram share: Meta's Graph API conventions.

Paths are versioned (``/v21.0/...``; an unversioned path gets the app's
default version, as on the real API). The access token comes as the
``access_token`` parameter (query or form body) or as an ``Authorization:
Bearer``/``OAuth`` header. Every error is the one envelope::

    {"error": {"message", "type", "code", "error_subcode"?, "is_transient",
               "error_user_title"?, "error_user_msg"?, "fbtrace_id"}}

Throttling carries ``X-Business-Use-Case-Usage`` with
``estimated_time_to_regain_access`` in minutes.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections import deque
from collections.abc import Mapping

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies

DAY = 86_400.0
_VERSIONED = re.compile(r"/v\d+\.\d+(/.*)")
_TRACE_ALPHABET = string.ascii_letters + string.digits + "_-"
# The real traces are random; the fault replies are fixed answers.
FAULT_TRACE = "AbCdEfGhIjK"
_INVALID_TOKEN = "invalid"


def trace_id(rng: random.Random) -> str:
    """An ``fbtrace_id``: eleven characters, as Meta's look."""
    return "".join(rng.choice(_TRACE_ALPHABET) for _ in range(11))


@attrs.frozen(kw_only=True)
class GraphError:
    """One Graph error, before it becomes a response."""

    status: int = 400
    code: int
    message: str
    type: str = "OAuthException"
    subcode: int | None = None
    transient: bool = False
    user_title: str | None = None
    user_msg: str | None = None

    def response(self, trace: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        error: dict[str, object] = {"message": self.message, "type": self.type, "code": self.code}
        optional = {
            "error_subcode": self.subcode,
            "error_user_title": self.user_title,
            "error_user_msg": self.user_msg,
        }
        error.update((key, value) for key, value in optional.items() if value is not None)
        error.update(is_transient=self.transient, fbtrace_id=trace)
        return HttpResponse.json(self.status, {"error": error}, headers)


NO_TOKEN = GraphError(code=104, message="An access token is required to request this resource.")
BAD_TOKEN = GraphError(code=190, message="Invalid OAuth access token - Cannot parse access token")
UNKNOWN_ERROR = GraphError(
    status=500, code=1, message="An unknown error has occurred.", transient=True
)
SERVICE_DOWN = GraphError(
    status=503,
    code=2,
    message="An unexpected error has occurred. Please retry your request later.",
    transient=True,
)
EXPIRED_TOKEN = GraphError(
    code=190,
    subcode=463,
    message="Error validating access token: Session has expired on Friday, 01-Mar-24 "
    "08:00:00 PST. The current time is Friday, 01-Mar-24 09:00:00 PST.",
)


def unsupported(method: str, object_id: str) -> GraphError:
    """Graph's answer for an object that does not exist (or this method cannot reach)."""
    return GraphError(
        code=100,
        subcode=33,
        type="GraphMethodException",
        message=f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not "
        "exist, cannot be loaded due to missing permissions, or does not support this "
        "operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
    )


def usage_header(object_id: str, kind: str, wait_seconds: float) -> tuple[str, str]:
    """``X-Business-Use-Case-Usage`` for a throttled object, its wait rounded up to minutes."""
    minutes = max(1, math.ceil(wait_seconds / 60))
    entry = {
        "type": kind,
        "call_count": 100,
        "total_cputime": 12,
        "total_time": 15,
        "estimated_time_to_regain_access": minutes,
    }
    return "x-business-use-case-usage", json.dumps({object_id: [entry]}, separators=(",", ":"))


def replies(throttled: GraphError, object_id: str, usage_type: str) -> FaultReplies:
    """A Graph provider's fault replies: its own throttling error, the shared 5xx and token."""

    def rate_limited(retry_after: int) -> HttpResponse:
        header = usage_header(object_id, usage_type, retry_after)
        return throttled.response(FAULT_TRACE, (header,))

    return FaultReplies(
        error=UNKNOWN_ERROR.response(FAULT_TRACE),
        permanent=EXPIRED_TOKEN.response(FAULT_TRACE),
        outage=SERVICE_DOWN.response(FAULT_TRACE),
        rate_limited=rate_limited,
    )


def graph_path(path: str) -> str:
    """The path without its version prefix."""
    versioned = _VERSIONED.fullmatch(path)
    return versioned.group(1) if versioned else path


def params(request: HttpRequest) -> dict[str, str]:
    """The query's and the body's parameters (form or JSON), first value of each."""
    merged = {name: values[0] for name, values in request.query_params().items() if values}
    if not request.body:
        return merged
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "application/json":
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError("the JSON body is not an object")
        merged.update((str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in body.items())
    else:
        merged.update((name, values[0]) for name, values in request.form().items() if values)
    return merged


def token_problem(request: HttpRequest, fields: Mapping[str, str]) -> GraphError | None:
    """The error for a missing or unusable access token, None for a usable one."""
    token = fields.get("access_token")
    if token is None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() in ("bearer", "oauth") else None
    if not token:
        return NO_TOKEN
    if token == _INVALID_TOKEN:
        return BAD_TOKEN
    return None


def prune(times: deque[float], now: float, window: float = DAY) -> deque[float]:
    """Drop the times older than the rolling window; return the deque."""
    while times and times[0] <= now - window:
        times.popleft()
    return times
