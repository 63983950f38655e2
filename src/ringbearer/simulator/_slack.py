"""Slack incoming webhook: ``POST /services/T/B/X``, plain-text answers, no idempotency."""

from __future__ import annotations

import random

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec


def _plain(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    # Slack labels its one-word answers text/html.
    return HttpResponse(status, text.encode(), (("content-type", "text/html"), *headers))


def _rate_limited(retry_after: int) -> HttpResponse:
    return _plain(429, "rate_limited", (("retry-after", str(retry_after)),))


_OK = _plain(200, "ok")

REPLIES = FaultReplies(
    error=_plain(500, "rollup_error"),
    permanent=_plain(400, "invalid_payload"),
    outage=_plain(500, "rollup_error"),
    rate_limited=_rate_limited,
)


@attrs.define
class SlackWebhook:
    """An incoming webhook: the URL is the secret; the answer is ``ok`` or an error word."""

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        segments = path.split("/")
        if len(segments) != 5 or segments[1] != "services" or not all(segments[2:]):
            return Outcome(_plain(404, "no_service"))
        if request.method != "POST":
            return Outcome(_plain(405, "invalid_method"))
        if segments[4] == "invalid":
            return Outcome(_plain(403, "invalid_token"))
        return Outcome(_check(request))


def _check(request: HttpRequest) -> HttpResponse:
    try:
        message = request.json()
    except ValueError:
        return _plain(400, "invalid_payload")
    if not isinstance(message, dict):
        return _plain(400, "invalid_payload")
    blocks = message.get("blocks")
    if blocks is not None and not isinstance(blocks, list):
        return _plain(400, "invalid_blocks")
    if not message.get("text") and not blocks:
        return _plain(400, "no_text")
    return _OK


SPEC = ProviderSpec("slack-webhook", SlackWebhook, REPLIES)
