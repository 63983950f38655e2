"""Slack: an incoming webhook and the Web API's chat.postMessage; neither has idempotency.

* ``slack-webhook``: ``POST /services/T/B/X``, plain-text answers;
* ``slack-chat``: ``POST /api/chat.postMessage`` with a bearer token; errors
  are ``{"ok": false, "error": word}`` with HTTP 200, except a rate limit (429).
  ``/api/auth.test`` (GET or POST) says whose the token is, posting nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

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


# --- chat.postMessage ----------------------------------------------------------

_CHAT_PATH = "/api/chat.postMessage"
_AUTH_TEST_PATH = "/api/auth.test"
_CHAT_JSON = (("content-type", "application/json; charset=utf-8"),)
_MAX_TEXT = 40_000
_FIRST_TS = 1_700_000_000  # a ts is seconds.micros; each post takes the next second
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
_CHANNEL_NAME = re.compile(r"#[a-z0-9_-]{1,80}")
_THREAD_TS = re.compile(r"[0-9]+\.[0-9]+")
# Channels that exist but refuse a post, and Slack's word for why.
CHANNEL_ERRORS = {"#archived": "is_archived", "#private": "not_in_channel"}


def _chat(
    status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode(), (*_CHAT_JSON, *headers))


def _no(error: str, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return _chat(status, {"ok": False, "error": error}, headers)


def _chat_rate_limited(retry_after: int) -> HttpResponse:
    return _no("ratelimited", 429, (("retry-after", str(retry_after)),))


CHAT_REPLIES = FaultReplies(
    error=_no("internal_error", 500),
    # Slack refuses a bad request with HTTP 200, so this one is a 200 too.
    permanent=_no("invalid_blocks"),
    outage=_no("service_unavailable", 503),
    rate_limited=_chat_rate_limited,
)


@attrs.define
class SlackChat:
    """chat.postMessage: a bot token, a channel, and a ``ts`` for every post."""

    posted: int = 0

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path == _AUTH_TEST_PATH:
            return Outcome(_auth_test(request), accepted=False)  # a read
        if path != _CHAT_PATH:
            return Outcome(_no("unknown_method", 404))
        message, problem = _chat_message(request)
        problem = _chat_auth(request.headers.get("authorization", "")) or problem
        if problem is not None:
            # HTTP 200, yet nothing was posted.
            return Outcome(_no(problem), accepted=False)
        self.posted += 1
        ts = f"{_FIRST_TS + self.posted}.{rng.randrange(1_000_000):06d}"
        return Outcome(_chat(200, _posted(message, ts)))


SANDBOX_TOKEN = "sandbox"


def _chat_auth(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return "not_authed"
    # Real tokens start xox (xoxb-, xoxp-); "sandbox" is the placeholder a
    # sandboxed daemon sends when no token is configured.
    return None if token.startswith("xox") or token == SANDBOX_TOKEN else "invalid_auth"


def _auth_test(request: HttpRequest) -> HttpResponse:
    problem = _chat_auth(request.headers.get("authorization", ""))
    if problem is not None:
        return _no(problem)
    identity = {
        "ok": True,
        "url": "https://sandbox.slack.com/",
        "team": "Sandbox",
        "user": "ringbearer",
        "team_id": "T0SANDBOX1",
        "user_id": "U0SIMBOT01",
        "bot_id": "B0SIMBOT01",
        "is_enterprise_install": False,
    }
    # Slack lists the token's scopes on every Web API answer.
    return _chat(200, identity, (("x-oauth-scopes", "chat:write"),))


def _chat_message(request: HttpRequest) -> tuple[dict[str, Any], str | None]:
    """The message and None, or what there is of it and the word for why it cannot be posted."""
    message, problem = _chat_fields(request)
    if problem is not None:
        return message, problem
    channel = message.get("channel")
    if not isinstance(channel, str) or not (
        _CHANNEL_ID.fullmatch(channel) or _CHANNEL_NAME.fullmatch(channel)
    ):
        return message, "channel_not_found"
    if channel in CHANNEL_ERRORS:
        return message, CHANNEL_ERRORS[channel]
    return message, _content_problem(message)


def _chat_fields(request: HttpRequest) -> tuple[dict[str, Any], str | None]:
    """The arguments, from a JSON body or a form (``blocks`` as a JSON string)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        try:
            form = {key: values[-1] for key, values in request.form().items()}
            if "blocks" in form:
                form["blocks"] = json.loads(form["blocks"])
        except ValueError:
            return {}, "invalid_form_data"
        return form, None
    try:
        message = request.json()
    except ValueError:
        return {}, "invalid_json"
    return (message, None) if isinstance(message, dict) else ({}, "json_not_object")


def _content_problem(message: dict[str, Any]) -> str | None:
    text, blocks = message.get("text"), message.get("blocks")
    if blocks is not None and not (
        isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks)
    ):
        return "invalid_blocks"
    if not isinstance(text, str | None) or (not text and not blocks):
        return "no_text"
    if text and len(text) > _MAX_TEXT:
        return "msg_too_long"
    thread_ts = message.get("thread_ts")
    if thread_ts is not None and not (
        isinstance(thread_ts, str) and _THREAD_TS.fullmatch(thread_ts)
    ):
        return "thread_not_found"
    return None


def _channel_id(channel: str) -> str:
    """A channel's id; a #name maps to the same id every time, as a real channel has one."""
    if not channel.startswith("#"):
        return channel
    return "C" + hashlib.blake2b(channel.encode(), digest_size=5).hexdigest().upper()


def _posted(message: dict[str, Any], ts: str) -> dict[str, Any]:
    channel = _channel_id(message["channel"])
    posted: dict[str, Any] = {"type": "message", "user": "U0SIMBOT01", "bot_id": "B0SIMBOT01"}
    posted.update({key: message[key] for key in ("text", "blocks", "thread_ts") if key in message})
    posted["ts"] = ts
    return {"ok": True, "channel": channel, "ts": ts, "message": posted}


CHAT_SPEC = ProviderSpec("slack-chat", SlackChat, CHAT_REPLIES)
