"""Light Blue: ``POST /api.php``, a form with ``key`` and ``type``; ``ID`` + ``Source`` dedup.

Every answer the API documents is HTTP 200 whose body is a status code and,
after an error, a carriage return and a summary (the form Light Blue's own
plugins read from ``apiCheck.php``; for ``api.php`` it is UNCONFIRMED):
``0`` success, ``-3`` invalid request type or no valid parameters, ``-4``
duplicate request (``-20``, HTTPS required, cannot happen here). Guesses of
this simulator: a missing or bad key is ``-1 Invalid API key``; parameter
names are matched case-insensitively for ``key`` and ``type`` (the plugins send
``Key`` and ``Type``); any ``Contact*``/``Shoot*`` name or ``Message`` is a
valid parameter; a rate limit, which Light Blue does not document, is the
front end's HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import random

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

_ROUTE = "/api.php"
_TYPE = "contact form"
_HTML = (("content-type", "text/html; charset=UTF-8"),)  # PHP's default label


def _reply(code: int, summary: str = "") -> HttpResponse:
    text = f"{code}\r{summary}" if summary else str(code)
    return HttpResponse(200, text.encode(), _HTML)


def _rate_limited(retry_after: int) -> HttpResponse:
    return HttpResponse.text(429, "Too Many Requests", (("retry-after", str(retry_after)),))


_OK = _reply(0)
_BAD_KEY = _reply(-1, "Invalid API key")
_BAD_TYPE = _reply(-3, "Invalid API request type")
_NO_PARAMETERS = _reply(-3, "No valid parameters were supplied")
_DUPLICATE = _reply(-4, "Duplicate API request")

REPLIES = FaultReplies(
    error=HttpResponse.text(500, "Internal Server Error"),
    permanent=_BAD_KEY,
    outage=HttpResponse.text(503, "Service Unavailable"),
    rate_limited=_rate_limited,
)


@attrs.define
class LightBlue:
    """The API and the studio's Inbox: what it took, and the (ID, Source) pairs it saw."""

    inbox: list[dict[str, str]] = attrs.Factory(list)
    seen: set[tuple[str, str]] = attrs.Factory(set)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path != _ROUTE:
            return Outcome(HttpResponse.text(404, "Not Found"))
        if request.method != "POST":
            return Outcome(HttpResponse.text(405, "Method Not Allowed"))
        try:
            form = {name: values[-1] for name, values in request.form().items()}
        except ValueError:
            form = {}  # PHP sees no fields in a body that is not a form
        refusal = _refuse(form)
        if refusal is not None:
            return Outcome(refusal, accepted=False)
        return self._take(form)

    def _take(self, form: dict[str, str]) -> Outcome:
        item_id = form.get("ID")
        if item_id is None:
            self.inbox.append(form)
            return Outcome(_OK)
        pair = (item_id, form.get("Source", ""))
        key = "/".join(reversed(pair))
        if pair in self.seen:
            return Outcome(_DUPLICATE, key=key, accepted=False)
        self.seen.add(pair)
        self.inbox.append(form)
        return Outcome(_OK, key=key)


def _refuse(form: dict[str, str]) -> HttpResponse | None:
    """The error code for a request Light Blue will not take, if any."""
    fields = {name.lower(): value for name, value in form.items()}
    if fields.get("key", "").strip() in ("", "invalid"):
        return _BAD_KEY
    if fields.get("type", "").strip().lower() != _TYPE:
        return _BAD_TYPE
    if not any(_is_parameter(name) for name in form):
        return _NO_PARAMETERS
    return None


def _is_parameter(name: str) -> bool:
    return name == "Message" or name.startswith(("Contact", "Shoot"))


SPEC = ProviderSpec("light-blue", LightBlue, REPLIES)
