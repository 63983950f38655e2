"""Mailgun: ``POST /v3/{domain}/messages``, Basic auth as ``api``, form or multipart, no dedup.

``GET /v3/domains/{domain}`` shows a domain, for a read-only check of a key
and its domain. Every domain exists and is active, except those under the
reserved top-level domain ``.invalid``: 404 "Domain not found".
"""

from __future__ import annotations

import hashlib
import random
import re

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

_ROUTE = re.compile(r"/v3/([^/]+)/messages")
_DOMAIN = re.compile(r"/v3/domains/([^/]+)")
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
        domain = _DOMAIN.fullmatch(path)
        if domain is not None and request.method == "GET":
            # A read: never counted as accepted work.
            return Outcome(_show_domain(request, domain[1]), accepted=False)
        route = _ROUTE.fullmatch(path)
        if route is None:
            return Outcome(_message(404, "Not Found"))
        if request.method != "POST":
            return Outcome(_message(405, "Method Not Allowed"))
        if not _authorized(request.basic_auth()):
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


def _authorized(credentials: tuple[str, str] | None) -> bool:
    if credentials is None:
        return False
    user, password = credentials
    return user == "api" and password not in ("", "invalid")


def _show_domain(request: HttpRequest, name: str) -> HttpResponse:
    if not _authorized(request.basic_auth()):
        return _FORBIDDEN
    if name.lower().rstrip(".").endswith(".invalid"):
        return _message(404, "Domain not found")
    domain = {
        "created_at": "Mon, 01 Jan 2024 00:00:00 GMT",
        "id": hashlib.blake2b(name.encode(), digest_size=12).hexdigest(),
        "is_disabled": False,
        "name": name,
        "require_tls": False,
        "skip_verification": False,
        "smtp_login": f"postmaster@{name}",
        "spam_action": "disabled",
        "state": "active",
        "type": "custom",
        "web_prefix": "email",
        "web_scheme": "https",
        "wildcard": False,
    }
    body = {"domain": domain, "receiving_dns_records": [], "sending_dns_records": []}
    return HttpResponse.json(200, body)


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
