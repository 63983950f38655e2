"""Mailgun: ``POST /v3/{domain}/messages``, Basic auth as ``api``, form or multipart, no dedup."""

from __future__ import annotations

import base64
import random
import re

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

_ROUTE = re.compile(r"/v3/([^/]+)/messages")
_BODY_FIELDS = ("text", "html", "amp-html", "template")
# The official SDK stamps each message with this MIME header; Mailgun itself
# does not deduplicate on it, so the simulator only counts it.
_KEY_FIELD = "h:x-idempotency-key"


def _message(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse.json(status, {"message": message}, headers)


def _rate_limited(retry_after: int) -> HttpResponse:
    return _message(429, "Too many requests", (("retry-after", str(retry_after)),))


_FORBIDDEN = HttpResponse(
    401,
    b"Forbidden",
    (("content-type", "text/plain; charset=utf-8"), ("www-authenticate", 'Basic realm="MG API"')),
)

REPLIES = FaultReplies(
    error=_message(500, "Internal Server Error"),
    permanent=_message(400, "to parameter is not a valid address. please check documentation"),
    outage=HttpResponse.text(503, "Service Unavailable"),
    rate_limited=_rate_limited,
)


@attrs.define
class Mailgun:
    """Mailgun's send endpoint: every valid request is a new message."""

    queued: int = 0

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        route = _ROUTE.fullmatch(path)
        if route is None:
            return Outcome(_message(404, "Not Found"))
        if request.method != "POST":
            return Outcome(_message(405, "Method Not Allowed"))
        if not _authorized(request.headers.get("authorization", "")):
            return Outcome(_FORBIDDEN)
        try:
            form = request.form()
        except ValueError:
            return Outcome(_message(400, "Invalid form data"))
        problem = _problem(form)
        if problem is not None:
            return Outcome(_message(400, problem))
        self.queued += 1
        message_id = f"<{self.queued:010d}.{rng.getrandbits(48):012x}@{route[1]}>"
        body = {"id": message_id, "message": "Queued. Thank you."}
        return Outcome(HttpResponse.json(200, body), key=_idempotency_key(form))


def _authorized(header: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError both are
        return False
    user, _, password = decoded.partition(":")
    return user == "api" and password not in ("", "invalid")


def _problem(form: dict[str, list[str]]) -> str | None:
    for field in ("from", "to", "subject"):
        if not any(value.strip() for value in form.get(field, ())):
            return f"{field} parameter is missing"
    if not any(form.get(field) for field in _BODY_FIELDS):
        return "Need at least one of 'text', 'html' or 'template' parameters specified"
    return None


def _idempotency_key(form: dict[str, list[str]]) -> str | None:
    for name, values in form.items():
        if name.lower() == _KEY_FIELD and values:
            return values[0]
    return None


SPEC = ProviderSpec("mailgun", Mailgun, REPLIES)
