"""LinkedIn's Posts API: ``POST /rest/posts``, a versioned Rest.li endpoint, no idempotency.

* ``Authorization: Bearer``; none is 401 "Empty oauth2_access_token",
  ``invalid`` is 401 ``INVALID_ACCESS_TOKEN``;
* ``LinkedIn-Version: YYYYMM`` (or ``YYYYMM.RR``): a malformed one is ``426
  NONEXISTENT_VERSION`` "Requested version X is not active", as LinkedIn
  answers for a version it does not serve; a missing one is ``400
  VERSION_MISSING`` (that code and wording are not confirmed by a source);
* the JSON body needs ``author``, ``commentary``, ``visibility``,
  ``distribution`` and ``lifecycleState``: a missing or bad field is a 422
  naming it, in LinkedIn's "ERROR :: /field :: ..." form;
* the same commentary from the same author again is ``422 DUPLICATE_POST``,
  naming the post it duplicates;
* a member's posts can be capped per UTC day (``daily_limit``, off by
  default): past it, a 429 with no Retry-After, until midnight UTC;
* success: ``201``, an empty body, the post's URN in ``x-restli-id``.

Every answer carries a ``Date`` header, as LinkedIn's do.

Programmatic refresh (``POST /oauth/v2/accessToken``, a form with
``grant_type=refresh_token``, ``refresh_token``, ``client_id`` and
``client_secret``, each required: a missing one is ``400 invalid_request``
naming it) answers ``{"access_token", "expires_in": 5184000,
"refresh_token", "refresh_token_expires_in", "scope"}``: the **same**
refresh token string, whose life runs a year from the authorization and is
not extended (an access token never outlives it). An unknown or expired
refresh token is ``400 invalid_request`` "The provided authorization grant
or refresh token is invalid, expired or revoked". An issued access token is
401 ``EXPIRED_ACCESS_TOKEN`` on ``/rest/posts`` once it has expired
(``access_lifetime`` seconds, on ``clock``; that code is not confirmed by a
source); a bearer token the simulator did not issue is taken as before.
:data:`SANDBOX_SEED` (the sandbox's placeholder secret) is a refresh token
whose year starts when it is first used; :meth:`LinkedIn.authorize` makes
another, as after a member authorized the app.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

_VERSION = re.compile(r"\d{4}(0[1-9]|1[0-2])(\.\d{2})?")
_AUTHOR = re.compile(r"urn:li:(person|organization):[\w-]+")
_VISIBILITY = frozenset({"PUBLIC", "CONNECTIONS", "LOGGED_IN"})
_LIFECYCLE = frozenset({"PUBLISHED", "DRAFT"})
_REQUIRED = ("author", "commentary", "visibility", "distribution", "lifecycleState")
_DAY = 86_400
ACCESS_LIFETIME = 60 * _DAY  # 5,184,000 seconds
REFRESH_LIFETIME = 365 * _DAY  # from the authorization; refreshing does not extend it
SANDBOX_SEED = "sandbox"
_TOKEN_PATH = "/oauth/v2/accessToken"
_TOKEN_FIELDS = ("grant_type", "client_id", "client_secret", "refresh_token")
_BAD_GRANT = "The provided authorization grant or refresh token is invalid, expired or revoked"


def _date(now: float) -> tuple[str, str]:
    return "date", email.utils.formatdate(now, usegmt=True)


def _error(status: int, body: dict[str, Any], now: float | None = None) -> HttpResponse:
    headers = () if now is None else (_date(now),)  # the fault replies are fixed answers
    return HttpResponse.json(status, {**body, "status": status}, headers)


def _coded(status: int, code: str, message: str, now: float) -> HttpResponse:
    return _error(status, {"code": code, "message": message}, now)


def _field_errors(problems: list[str], now: float) -> HttpResponse:
    return _error(422, {"message": "".join(f"ERROR :: {p}\n" for p in problems)}, now)


_DAILY_LIMIT = {
    "message": "Resource level throttle APPLICATION DAY limit for calls to this resource "
    "is reached.",
}


def _rate_limited(_retry_after: int) -> HttpResponse:
    # LinkedIn sends no Retry-After: its daily limits reset at midnight UTC.
    return _error(429, _DAILY_LIMIT, time.time())


REPLIES = FaultReplies(
    error=_error(500, {"message": "Internal Server Error"}),
    permanent=_error(
        403,
        {
            "serviceErrorCode": 100,
            "code": "ACCESS_DENIED",
            "message": "Not enough permissions to access: partnerApiPostsExternal.CREATE.20240101",
        },
    ),
    outage=_error(503, {"message": "Service Unavailable"}),
    rate_limited=_rate_limited,
)


def _oauth_error(description: str, now: float) -> HttpResponse:
    body = {"error": "invalid_request", "error_description": description}
    return HttpResponse.json(400, body, (_date(now),))


@attrs.define
class LinkedIn:
    """Posts by URN, each author's commentaries (for duplicates) and daily counts, and tokens."""

    daily_limit: int | None = None  # posts per member per UTC day
    clock: Callable[[], float] = time.time
    access_lifetime: int = ACCESS_LIFETIME
    posts: dict[str, tuple[str, str]] = attrs.Factory(dict)  # urn -> (author, commentary)
    by_content: dict[tuple[str, str], str] = attrs.Factory(dict)  # -> urn
    today: dict[str, tuple[int, int]] = attrs.Factory(dict)  # token -> (day, posts)
    refresh_tokens: dict[str, float] = attrs.Factory(dict)  # token -> when it expires
    access_tokens: dict[str, float] = attrs.Factory(dict)  # token -> when it expires

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        now = self.clock()
        if path == _TOKEN_PATH and request.method == "POST":
            return Outcome(self._token(request, now), accepted=False)  # no post made
        if path != "/rest/posts":
            return Outcome(_coded(404, "RESOURCE_NOT_FOUND", f"No resource found at {path}", now))
        if request.method != "POST":
            return Outcome(_coded(405, "METHOD_NOT_ALLOWED", "Method not allowed", now))
        refusal = (
            _refuse(request, now) or self._expired(request, now) or self._over_limit(request, now)
        )
        if refusal is not None:
            return Outcome(refusal)
        try:
            post = request.json()
        except ValueError:
            message = "Request body could not be converted to data map"
            return Outcome(_coded(400, "ILLEGAL_ARGUMENT", message, now))
        problems = _problems(post)
        if problems:
            return Outcome(_field_errors(problems, now))
        return Outcome(self._create(post["author"], post["commentary"], rng, now))

    def authorize(self) -> str:
        """A new refresh token with a year to live, as after a member authorized the app."""
        token = "simli-rt-" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = self.clock() + REFRESH_LIFETIME
        return token

    def _token(self, request: HttpRequest, now: float) -> HttpResponse:
        try:
            form = {key: values[0] for key, values in request.form().items() if values[0]}
        except ValueError:
            form = {}
        missing = next((key for key in _TOKEN_FIELDS if key not in form), None)
        if missing is not None:
            return _oauth_error(f'A required parameter "{missing}" is missing', now)
        if form["grant_type"] != "refresh_token":
            return _oauth_error(_BAD_GRANT, now)
        token = form["refresh_token"]
        if token == SANDBOX_SEED:
            self.refresh_tokens.setdefault(token, now + REFRESH_LIFETIME)
        expires_at = self.refresh_tokens.get(token)
        if expires_at is None or now >= expires_at:
            return _oauth_error(_BAD_GRANT, now)
        return HttpResponse.json(200, self._issue(token, expires_at, now), (_date(now),))

    def _issue(self, refresh: str, refresh_expires_at: float, now: float) -> dict[str, Any]:
        access = "simli-at-" + secrets.token_urlsafe(24)
        lifetime = max(1, int(min(self.access_lifetime, refresh_expires_at - now)))
        self.access_tokens[access] = now + lifetime
        return {
            "access_token": access,
            "expires_in": lifetime,
            "refresh_token": refresh,
            "refresh_token_expires_in": int(refresh_expires_at - now),
            "scope": "w_member_social",
        }

    def _expired(self, request: HttpRequest, now: float) -> HttpResponse | None:
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        expires_at = self.access_tokens.get(token)
        if expires_at is None or now < expires_at:
            return None
        body = {"serviceErrorCode": 65602, "code": "EXPIRED_ACCESS_TOKEN"}
        return _error(401, {**body, "message": "The token used in the request has expired"}, now)

    def _over_limit(self, request: HttpRequest, now: float) -> HttpResponse | None:
        if self.daily_limit is None:
            return None
        token = request.headers["authorization"].partition(" ")[2].strip()
        day, count = self.today.get(token, (int(now // _DAY), 0))
        if day != int(now // _DAY):
            day, count = int(now // _DAY), 0
        if count >= self.daily_limit:
            return _error(429, _DAILY_LIMIT, now)
        self.today[token] = (day, count + 1)
        return None

    def _create(self, author: str, commentary: str, rng: random.Random, now: float) -> HttpResponse:
        earlier = self.by_content.get((author, commentary))
        if earlier is not None:
            return _error(422, _duplicate(earlier), now)
        urn = f"urn:li:share:{rng.randrange(7 * 10**18, 8 * 10**18)}"
        self.posts[urn] = (author, commentary)
        self.by_content[(author, commentary)] = urn
        headers = (("x-restli-id", urn), _date(now))
        return HttpResponse(201, b"", headers)


def _duplicate(urn: str) -> dict[str, Any]:
    return {
        "errorDetailType": "com.linkedin.common.error.BadRequest",
        "message": "com.linkedin.content.common.exception.BadRequestResponseException: "
        f"Content is a duplicate of {urn}",
        "errorDetails": {
            "inputErrors": [
                {"description": "Duplicate post is detected", "input": {}, "code": "DUPLICATE_POST"}
            ]
        },
    }


def _refuse(request: HttpRequest, now: float) -> HttpResponse | None:
    """The auth or version error for ``request``, if it has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        body = {"serviceErrorCode": 401, "message": "Empty oauth2_access_token"}
        return _error(401, body, now)
    if token.strip() == "invalid":
        body = {"serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN"}
        return _error(401, {**body, "message": "Invalid access token"}, now)
    version = request.headers.get("linkedin-version")
    if version is None:
        message = "A version must be present. Please specify a version by adding the "
        return _coded(400, "VERSION_MISSING", message + "LinkedIn-Version header.", now)
    if not _VERSION.fullmatch(version):
        message = f"Requested version {version} is not active"
        return _coded(426, "NONEXISTENT_VERSION", message, now)
    return None


def _problems(post: Any) -> list[str]:
    """LinkedIn's validation messages for ``post``; empty when it is valid."""
    if not isinstance(post, dict):
        return ["/ :: expected a record"]
    missing = [
        f"/{name} :: field is required but not found and has no default value"
        for name in _REQUIRED
        if name not in post
    ]
    if missing:
        return missing
    checks = (
        ("author", isinstance(post["author"], str) and _AUTHOR.fullmatch(post["author"])),
        ("commentary", isinstance(post["commentary"], str)),
        ("visibility", post["visibility"] in _VISIBILITY),
        ("distribution", isinstance(post["distribution"], dict)),
        ("lifecycleState", post["lifecycleState"] in _LIFECYCLE),
    )
    return [
        f"/{name} :: {json.dumps(post[name])} is not a valid value"
        for name, good in checks
        if not good
    ]


SPEC = ProviderSpec("linkedin", LinkedIn, REPLIES)
