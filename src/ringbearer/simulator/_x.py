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
* ``POST /2/oauth2/token`` (a form: ``grant_type=refresh_token``,
  ``refresh_token``, ``client_id``; HTTP Basic ``client_id:secret`` from a
  confidential client, whose id must match) answers ``200 {"token_type":
  "bearer", "expires_in": 7200, "access_token", "scope", "refresh_token"}``
  with a **new** refresh token each time. A refresh token is good once:
  presented again, it revokes its whole family (every access and refresh
  token descended from the same authorization) and is answered ``400
  {"error": "invalid_request", "error_description": "Value passed for the
  token was invalid."}``, as is any token of a revoked family or one never
  issued. An issued access token is refused (401) once it has expired
  (``token_lifetime`` seconds, on ``clock``) or its family was revoked; a
  bearer token the simulator did not issue is taken as before. A family
  starts from :data:`SANDBOX_SEED` (the sandbox's placeholder secret, never
  spent: each use starts a new family), from :meth:`X.authorize` (a test's
  fresh authorization), or from a refresh token shaped like the
  simulator's that it does not know (one it issued before it restarted).
  These rules follow client reports, not X's documentation (UNCONFIRMED).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import random
import secrets
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
TOKEN_LIFETIME = 7200  # seconds an access token lives, as X's do
SANDBOX_SEED = "sandbox"  # a refresh token always honoured, each time for a new family
_ACCESS_PREFIX, _REFRESH_PREFIX = "simx-at-", "simx-rt-"
_SCOPE = "tweet.read tweet.write users.read offline.access"
_TOKEN_PATH = "/2/oauth2/token"


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
_BAD_TOKEN = {
    "error": "invalid_request",
    "error_description": "Value passed for the token was invalid.",
}
_NO_CLIENT = {
    "error": "unauthorized_client",
    "error_description": "Missing valid authorization header",
}


def _oauth_error(description: str) -> dict[str, str]:
    return {"error": "invalid_request", "error_description": description}


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
class _Family:
    """The tokens descended from one authorization of one client."""

    client_id: str
    revoked: bool = False


@attrs.define
class _Refresh:
    family: int
    spent: bool = False


@attrs.frozen
class _Access:
    family: int
    expires_at: float


@attrs.define
class X:
    """Posts by id, each user's recent texts and rate-limit window, and OAuth 2.0 tokens."""

    limit: int = 200
    clock: Callable[[], float] = time.time
    token_lifetime: int = TOKEN_LIFETIME
    posts: dict[str, str] = attrs.Factory(dict)  # id -> text
    recent: dict[str, dict[str, None]] = attrs.Factory(dict)  # user -> texts, oldest first
    windows: dict[str, _Window] = attrs.Factory(dict)
    families: list[_Family] = attrs.Factory(list)  # a family's id is its index
    refresh_tokens: dict[str, _Refresh] = attrs.Factory(dict)
    access_tokens: dict[str, _Access] = attrs.Factory(dict)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        now = self.clock()
        if path == _TOKEN_PATH and request.method == "POST":
            return Outcome(self._token(request, now), accepted=False)  # no post made
        if path == "/2/users/me" and request.method == "GET":
            return Outcome(_me(*self._who(request, path, now)), accepted=False)  # a read
        if path != "/2/tweets" or request.method != "POST":
            body = _problem(404, "Not Found Error", f"Could not find {request.method} {path}")
            return Outcome(HttpResponse.json(404, body))
        user, refusal = self._who(request, path, now)
        if user is None:
            return Outcome(HttpResponse.json(refusal["status"], refusal))
        window = self._window(user, now)
        if window.used >= self.limit:
            return Outcome(self._answer(_TOO_MANY, window, now))
        window.used += 1
        answer = self._post(request, user, rng)
        return Outcome(self._answer(answer, window, now))

    def authorize(self, client_id: str) -> str:
        """A new family's first refresh token, as after a user authorized ``client_id``."""
        token = _REFRESH_PREFIX + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = _Refresh(self._new_family(client_id))
        return token

    def _new_family(self, client_id: str) -> int:
        self.families.append(_Family(client_id))
        return len(self.families) - 1

    def _who(
        self, request: HttpRequest, path: str, now: float
    ) -> tuple[str | None, dict[str, Any]]:
        """As :func:`_user`, except that an issued token is checked and names its family."""
        issued = self.access_tokens.get(_bearer(request))
        if issued is None:
            return _user(request, path)
        if now >= issued.expires_at or self.families[issued.family].revoked:
            return None, _UNAUTHORIZED
        return f"family:{issued.family}", {}

    def _token(self, request: HttpRequest, now: float) -> HttpResponse:
        try:
            form = {key: values[0] for key, values in request.form().items()}
        except (ValueError, UnicodeDecodeError):
            return HttpResponse.json(400, _oauth_error("The request body is not a form."))
        basic = request.basic_auth()
        client_id = form.get("client_id") or (basic[0] if basic else "")
        if form.get("grant_type") != "refresh_token":
            return HttpResponse.json(
                400, _oauth_error("Value passed for the grant type was invalid.")
            )
        if not client_id:
            return HttpResponse.json(400, _oauth_error("Missing required parameter [client_id]."))
        if basic is not None and (basic[0] != client_id or not basic[1]):
            return HttpResponse.json(401, _NO_CLIENT)
        family = self._redeem(form.get("refresh_token", ""), client_id)
        if family is None:
            return HttpResponse.json(400, _BAD_TOKEN)
        return HttpResponse.json(200, self._issue(family, now))

    def _redeem(self, token: str, client_id: str) -> int | None:
        """The family whose refresh token ``token`` is spent now; None if it cannot be."""
        if token == SANDBOX_SEED:
            return self._new_family(client_id)
        if token.startswith(_REFRESH_PREFIX) and token not in self.refresh_tokens:
            # Issued before the simulator restarted: adopted, and spent now as any other.
            self.refresh_tokens[token] = _Refresh(self._new_family(client_id), spent=True)
            return self.refresh_tokens[token].family
        found = self.refresh_tokens.get(token)
        if found is None:
            return None
        family = self.families[found.family]
        if family.revoked or family.client_id != client_id:
            return None
        if found.spent:
            family.revoked = True  # a spent token again: the whole family goes
            return None
        found.spent = True
        return found.family

    def _issue(self, family: int, now: float) -> dict[str, Any]:
        access = _ACCESS_PREFIX + secrets.token_urlsafe(24)
        refresh = _REFRESH_PREFIX + secrets.token_urlsafe(24)
        self.access_tokens[access] = _Access(family, now + self.token_lifetime)
        self.refresh_tokens[refresh] = _Refresh(family)
        return {
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "access_token": access,
            "scope": _SCOPE,
            "refresh_token": refresh,
        }

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


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _me(user: str | None, refusal: dict[str, Any]) -> HttpResponse:
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
