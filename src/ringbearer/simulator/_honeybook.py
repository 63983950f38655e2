"""HoneyBook through Zapier: a Zap's catch hook, ``POST /hooks/catch/<account>/<hook>/``.

HoneyBook has no public API; the user's Zap catches the request and creates
the HoneyBook project. Zapier catches any body (it validates nothing: a bad
project fails later, in Zap history) and answers ``200 {"attempt", "id",
"request_id", "status": "success"}``. A hook whose Zap was turned off or
deleted answers ``410 Gone``; here that is the hook named ``gone``. Zapier
has no idempotency: each request is a new Zap run, and the simulator counts
the body's ``idempotency_key``, so a repeat shows as a duplicate. The error
bodies and a 429 without ``Retry-After`` (Zapier asks for exponential
backoff and documents no header) are this simulator's guess.
"""

from __future__ import annotations

import random
import re
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._ids import new_uuid
from ._provider import FaultReplies, Outcome, ProviderSpec

_ROUTE = re.compile(r"/hooks/catch/(\d+)/([A-Za-z0-9]+)/?")
GONE_HOOK = "gone"


def _failure(status: int, message: str) -> HttpResponse:
    return HttpResponse.json(status, {"status": "error", "message": message})


def _rate_limited(_retry_after: int) -> HttpResponse:
    return _failure(429, "Too many requests for this hook. Retry with exponential backoff.")


_GONE = _failure(410, "This hook is gone: its Zap was turned off or deleted.")

REPLIES = FaultReplies(
    error=HttpResponse.text(500, "Internal Server Error"),
    permanent=_GONE,
    outage=HttpResponse.text(503, "Service Unavailable"),
    rate_limited=_rate_limited,
)


@attrs.define
class CatchHook:
    """Zapier's catch hooks: every request caught, in order, as the Zaps would see them."""

    caught: list[Any] = attrs.Factory(list)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        route = _ROUTE.fullmatch(path)
        if route is None:
            return Outcome(HttpResponse.text(404, "Not Found"))
        if request.method != "POST":
            return Outcome(HttpResponse.text(405, "Method Not Allowed"))
        if route[2] == GONE_HOOK:
            return Outcome(_GONE)
        body = _parsed(request)
        self.caught.append(body)
        answer = {
            "attempt": new_uuid(rng),
            "id": new_uuid(rng),
            "request_id": new_uuid(rng),
            "status": "success",
        }
        key = body.get("idempotency_key") if isinstance(body, dict) else None
        return Outcome(HttpResponse.json(200, answer), key=key if isinstance(key, str) else None)


def _parsed(request: HttpRequest) -> Any:
    """The body as the Zap sees it: JSON when it parses, else the raw text."""
    try:
        return request.json()
    except ValueError:
        return request.body.decode("utf-8", "replace")


SPEC = ProviderSpec("honeybook", CatchHook, REPLIES)
