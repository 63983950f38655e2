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
from ._mail import SentMail, bare_all
from ._provider import FaultReplies, Outcome, ProviderSpec

_ROUTE = re.compile(r"/v3/([^/]+)/messages")
_DOMAIN = re.compile(r"/v3/domains/([^/]+)")
_BODY_FIELDS = ("text", "html", "amp-html", "template")
# Where a client carries its idempotency key: ringbearer as a custom variable,
# which Mailgun echoes in its events; the official SDK as a MIME header.
# Mailgun itself deduplicates on neither, so the simulator only counts them.
_KEY_VARIABLE = "ringbearer-key"
_KEY_HEADER = "X-Idempotency-Key"


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
        mail = _mail(message_id, form)
        return Outcome(HttpResponse.json(200, body), key=_idempotency_key(mail), sent=(mail,))


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


def _idempotency_key(mail: SentMail) -> str | None:
    return mail.variables.get(_KEY_VARIABLE) or mail.header(_KEY_HEADER)


def _mail(message_id: str, form: dict[str, list[str]]) -> SentMail:
    """The email a valid form asks for: ``h:`` fields are its headers, ``v:`` its variables."""
    prefixed: dict[str, dict[str, str]] = {"h:": {}, "v:": {}}
    for name, values in form.items():
        found = prefixed.get(name[:2].lower())
        if found is not None and values:
            found[name[2:]] = values[0]
    copied = form.get("cc", []) + form.get("bcc", [])
    return SentMail(
        provider_id=message_id,
        sender=form["from"][0],
        to=bare_all(form["to"]),
        subject=form["subject"][0],
        headers=prefixed["h:"],
        variables=prefixed["v:"],
        copies=bare_all(copied) if copied else (),
    )


SPEC = ProviderSpec("mailgun", Mailgun, REPLIES)
