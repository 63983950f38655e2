"""X API v2: ``POST /2/tweets`` as a user (OAuth 1.0a or OAuth 2), no idempotency.

* OAuth 1.0a: the header must carry ``oauth_consumer_key``, ``oauth_nonce``,
  ``oauth_signature``, ``oauth_signature_method="HMAC-SHA1"``,
  ``oauth_timestamp`` and ``oauth_token`` (and ``oauth_version="1.0"`` if
  any). The simulator cannot know real secrets, but the daemon's sandbox
  resolves every missing secret to the placeholder ``sandbox``: when the
  consumer key and the token are both ``sandbox``, the secrets are too, and
  the signature is verified — against the URL as received and against the
  real API's URL for the path (``https://api.x.com``, or
  ``https://api.twitter.com`` where tweepy sends), which is what a client
  redirected here signed. Other keys get the shape check alone.
* OAuth 2: ``Authorization: Bearer``; ``invalid`` is refused (401), and
  ``app-only`` stands for an app-only token, which may not post (403).
* The JSON body needs a ``text`` string; the same text again from the same
  user is ``403`` "You are not allowed to create a Tweet with duplicate
  content."
* Each user has ``limit`` requests per 15-minute window (200, as X documents
  for this endpoint; lower it for tests); every answer carries
  ``x-rate-limit-limit/-remaining/-reset`` (epoch seconds) and ``Date``, and
  past the limit the answer is 429.
* Success: ``201 {"data": {"edit_history_tweet_ids": [id], "id", "text"}}``.
* ``GET /2/users/me`` says who the user is (``{"data": {"id", "name",
  "username"}}``), with the same auth checks; it posts nothing and is not
  counted against the posting window.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ..integrations import _oauth1
from ._provider import FaultReplies, Outcome, ProviderSpec

WINDOW = 900  # seconds: X's 15-minute rate-limit window
_SANDBOX = "sandbox"
_REAL_HOSTS = ("https://api.x.com", "https://api.twitter.com")
_REQUIRED_OAUTH = (
    "oauth_consumer_key",
    "oauth_nonce",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_token",
)
_RECENT_MAX = 10_000  # texts remembered per user, for duplicates


def _problem(
    status: int, title: str, detail: str, kind: str = "about:blank", **extra: Any
) -> dict[str, Any]:
    return {"title": title, "detail": detail, "type": kind, "status": status, **extra}


_UNAUTHORIZED = _problem(401, "Unauthorized", "Unauthorized")
_APP_ONLY = _problem(
    403,
    "Unsupported Authentication",
    "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  "
    "Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
    "https://api.twitter.com/2/problems/unsupported-authentication",
)
_DUPLICATE = _problem(
    403, "Forbidden", "You are not allowed to create a Tweet with duplicate content."
)
_TOO_MANY = _problem(429, "Too Many Requests", "Too Many Requests")


def _invalid(message: str) -> dict[str, Any]:
    return _problem(
        400,
        "Invalid Request",
        "One or more parameters to your request was invalid.",
        "https://api.twitter.com/2/problems/invalid-request",
        errors=[{"parameters": {}, "message": message}],
    )


def _limit_headers(
    limit: int, remaining: int, reset: int, now: float
) -> tuple[tuple[str, str], ...]:
    return (
        ("x-rate-limit-limit", str(limit)),
        ("x-rate-limit-remaining", str(remaining)),
        ("x-rate-limit-reset", str(reset)),
        ("date", email.utils.formatdate(now, usegmt=True)),
    )


def _rate_limited(retry_after: int) -> HttpResponse:
    now = int(time.time())  # the reset and the Date from one reading: exactly retry_after apart
    return HttpResponse.json(429, _TOO_MANY, _limit_headers(200, 0, now + retry_after, now))


REPLIES = FaultReplies(
    error=HttpResponse.json(500, _problem(500, "Internal Server Error", "Internal Server Error")),
    permanent=HttpResponse.json(
        403, _problem(403, "Forbidden", "You are not permitted to perform this action.")
    ),
    outage=HttpResponse.json(503, _problem(503, "Service Unavailable", "Service Unavailable")),
    rate_limited=_rate_limited,
)


@attrs.define
class _Window:
    reset: int  # epoch seconds
    used: int = 0


@attrs.define
class X:
    """Posts by id, each user's recent texts and rate-limit window."""

    limit: int = 200
    clock: Callable[[], float] = time.time
    posts: dict[str, str] = attrs.Factory(dict)  # id -> text
    recent: dict[str, dict[str, None]] = attrs.Factory(dict)  # user -> texts, oldest first
    windows: dict[str, _Window] = attrs.Factory(dict)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        now = self.clock()
        if path == "/2/users/me" and request.method == "GET":
            return Outcome(_me(request, path), accepted=False)  # a read
        if path != "/2/tweets" or request.method != "POST":
            body = _problem(404, "Not Found Error", f"Could not find {request.method} {path}")
            return Outcome(HttpResponse.json(404, body))
        user, refusal = _user(request, path)
        if user is None:
            return Outcome(HttpResponse.json(refusal["status"], refusal))
        window = self._window(user, now)
        if window.used >= self.limit:
            return Outcome(self._answer(_TOO_MANY, window, now))
        window.used += 1
        answer = self._post(request, user, rng)
        return Outcome(self._answer(answer, window, now))

    def _window(self, user: str, now: float) -> _Window:
        window = self.windows.get(user)
        if window is None or now >= window.reset:
            window = self.windows[user] = _Window(reset=int(now) + WINDOW)
        return window

    def _answer(self, body: dict[str, Any], window: _Window, now: float) -> HttpResponse:
        remaining = max(0, self.limit - window.used)
        headers = _limit_headers(self.limit, remaining, window.reset, now)
        status = body.get("status", 201)
        return HttpResponse.json(status, body, headers)

    def _post(self, request: HttpRequest, user: str, rng: random.Random) -> dict[str, Any]:
        if "json" not in request.headers.get("content-type", ""):
            return _invalid("Requests with bodies must have content-type of application/json.")
        try:
            post = request.json()
        except ValueError:
            return _invalid("The request body is not valid JSON.")
        text = post.get("text") if isinstance(post, dict) else None
        if not isinstance(text, str) or not text:
            return _invalid("$.text: is missing but it is required")
        recent = self.recent.setdefault(user, {})
        if text in recent:
            return _DUPLICATE
        recent[text] = None
        if len(recent) > _RECENT_MAX:
            del recent[next(iter(recent))]
        post_id = str(rng.randrange(10**18, 2 * 10**18))
        self.posts[post_id] = text
        return {"data": {"edit_history_tweet_ids": [post_id], "id": post_id, "text": text}}


def _me(request: HttpRequest, path: str) -> HttpResponse:
    user, refusal = _user(request, path)
    if user is None:
        return HttpResponse.json(refusal["status"], refusal)
    # The same user has the same id every time, as on the real API.
    user_id = str(int.from_bytes(hashlib.blake2b(user.encode(), digest_size=7).digest()))
    return HttpResponse.json(
        200, {"data": {"id": user_id, "name": "Ringbearer", "username": "ringbearer"}}
    )


def _user(request: HttpRequest, path: str) -> tuple[str | None, dict[str, Any]]:
    """Who is posting (a key for their limits and texts), or the problem to answer."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        token = token.strip()
        if token == "invalid":
            return None, _UNAUTHORIZED
        if token == "app-only":
            return None, _APP_ONLY
        return f"bearer:{token}", {}
    oauth = _oauth1.parse_authorization(header)
    if oauth is None or not _well_formed(oauth) or not _signed(request, path, oauth):
        return None, _UNAUTHORIZED
    return f"oauth:{oauth['oauth_token']}", {}


def _well_formed(oauth: dict[str, str]) -> bool:
    return (
        all(oauth.get(name) for name in _REQUIRED_OAUTH)
        and oauth["oauth_signature_method"] == _oauth1.SIGNATURE_METHOD
        and oauth["oauth_timestamp"].isdigit()
        and oauth.get("oauth_version", _oauth1.VERSION) == _oauth1.VERSION
    )


def _signed(request: HttpRequest, path: str, oauth: dict[str, str]) -> bool:
    """The signature checks out with the sandbox secrets; True when they are not in use."""
    if (oauth["oauth_consumer_key"], oauth["oauth_token"]) != (_SANDBOX, _SANDBOX):
        return True
    params = [(k, v) for k, v in oauth.items() if k not in ("oauth_signature", "realm")]
    params += _oauth1.query_parameters("?" + request.query)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params += [(k, v) for k, values in request.form().items() for v in values]
    target = request.target.partition("?")[0]
    if not target.startswith(("http://", "https://")):  # not the absolute form proxies get
        target = f"http://{request.headers.get('host', '')}{target}"
    for url in (target, *(host + path for host in _REAL_HOSTS)):
        base = _oauth1.signature_base_string(request.method, url, params)
        expected = _oauth1.signature(base, _SANDBOX, _SANDBOX)
        if hmac.compare_digest(expected, oauth["oauth_signature"]):
            return True
    return False


SPEC = ProviderSpec("x", X, REPLIES)
