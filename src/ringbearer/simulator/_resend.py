"""Resend: ``POST /emails`` and ``/emails/batch``, Bearer auth, ``Idempotency-Key`` replay.

``GET /domains`` lists the team's one domain (``example.com``, verified), for
a read-only check of a key. A key with sending access only may not list
domains: the key ``send-only`` stands for one (401 ``restricted_api_key``).
Creating or changing domains is not simulated (404, as any unknown route).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._ids import new_uuid
from ._mail import SentMail, bare, bare_all
from ._provider import FaultReplies, Outcome, ProviderSpec

_MAX_TO = 50
_MAX_BATCH = 100
_MAX_KEY = 256
_REQUIRED = ("from", "to", "subject")
_ROUTES = ("/emails", "/emails/batch")
_DOMAINS = "/domains"
SEND_ONLY_KEY = "send-only"
_JSON = (("content-type", "application/json"),)
# ``email@example.com`` or ``Name <email@example.com>``: Resend's two accepted forms.
_RECIPIENT = re.compile(r"[^@\s<>]+@[^@\s<>]+|[^<>]*<[^@\s<>]+@[^@\s<>]+>")


def _error(
    status: int, name: str, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    body = {"statusCode": status, "name": name, "message": message}
    return HttpResponse.json(status, body, headers)


def _rate_limited(retry_after: int) -> HttpResponse:
    seconds = str(retry_after)
    headers = (
        ("ratelimit-limit", "2"),
        ("ratelimit-remaining", "0"),
        ("ratelimit-reset", seconds),
        ("retry-after", seconds),
    )
    message = "Too many requests. You can only make 2 requests per second."
    return _error(429, "rate_limit_exceeded", message, headers)


REPLIES = FaultReplies(
    error=_error(500, "application_error", "An unexpected error occurred."),
    permanent=_error(
        403,
        "validation_error",
        "You can only send testing emails to your own email address.",
    ),
    outage=_error(503, "internal_server_error", "Service unavailable. Try again later."),
    rate_limited=_rate_limited,
)


@attrs.frozen
class _Sent:
    """What an idempotency key remembers: a digest of the request, and the answer."""

    digest: bytes
    response: HttpResponse


@attrs.define
class Resend:
    """Resend's send endpoints; a key is remembered for the simulator's lifetime (24 h real)."""

    sent: dict[str, _Sent] = attrs.Factory(dict)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path == _DOMAINS and request.method == "GET":
            # A read: never counted as accepted work.
            return Outcome(_domains(request), accepted=False)
        refusal = _refuse(request, path)
        if refusal is not None:
            return Outcome(refusal)
        key = request.headers.get("idempotency-key")
        if key is None:
            return _send(request, path, rng)
        if not 1 <= len(key) <= _MAX_KEY:
            message = f"The idempotency key must be 1 to {_MAX_KEY} characters long."
            return Outcome(_error(400, "invalid_idempotency_key", message))
        return attrs.evolve(self._send_once(request, path, key, rng), key=key)

    def _send_once(self, request: HttpRequest, path: str, key: str, rng: random.Random) -> Outcome:
        digest = hashlib.blake2b(path.encode() + b"\0" + _canonical(request.body), digest_size=16)
        digest_bytes = digest.digest()
        earlier = self.sent.get(key)
        if earlier is None:
            outcome = _send(request, path, rng)
            if outcome.response.status == 200:
                self.sent[key] = _Sent(digest_bytes, outcome.response)
            return outcome
        if earlier.digest == digest_bytes:
            return Outcome(earlier.response)  # the same answer, and nothing is sent again
        message = "Same idempotency key used with a different request payload."
        return Outcome(_error(409, "invalid_idempotent_request", message))


def _canonical(body: bytes) -> bytes:
    """The request as Resend compares it: its JSON value, not its spacing or key order."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


def _refuse(request: HttpRequest, path: str) -> HttpResponse | None:
    """The routing or auth error for ``request``, if it has one."""
    if path not in _ROUTES:
        return _error(404, "not_found", "The requested endpoint does not exist.")
    if request.method != "POST":
        return _error(405, "method_not_allowed", "Method is not allowed for the requested path.")
    return _auth_refusal(request)


def _api_key(request: HttpRequest) -> str:
    scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
    return api_key.strip() if scheme.lower() == "bearer" else ""


def _auth_refusal(request: HttpRequest) -> HttpResponse | None:
    api_key = _api_key(request)
    if not api_key:
        message = "Missing API key in the authorization header."
        return _error(401, "missing_api_key", message)
    if api_key == "invalid":
        return _error(403, "invalid_api_key", "API key is invalid")
    return None


def _domains(request: HttpRequest) -> HttpResponse:
    refusal = _auth_refusal(request)
    if refusal is not None:
        return refusal
    if _api_key(request) == SEND_ONLY_KEY:
        message = "This API key is restricted to only send emails."
        return _error(401, "restricted_api_key", message)
    domain = {
        "id": "4dd369bc-aa82-4ff3-97de-514ae3000ee0",
        "name": "example.com",
        "status": "verified",
        "created_at": "2024-01-01T00:00:00.000000+00:00",
        "region": "us-east-1",
    }
    return HttpResponse.json(200, {"object": "list", "has_more": False, "data": [domain]})


def _send(request: HttpRequest, path: str, rng: random.Random) -> Outcome:
    try:
        body = request.json()
    except ValueError:
        return Outcome(_error(400, "validation_error", "The request body is not valid JSON."))
    if path == "/emails":
        problem = _problem(body)
        if problem is not None:
            return Outcome(_error(422, *problem))
        email_id = new_uuid(rng)
        return Outcome(_sent(email_id), sent=(_mail(email_id, body),))
    return _send_batch(request, body, rng)


def _sent(email_id: str) -> HttpResponse:
    # The hot path of every benchmark: formatting the known shape directly
    # costs a fifth of a JSON encoder's call.
    return HttpResponse(200, b'{"id":"%s"}' % email_id.encode(), _JSON)


def _mail(email_id: str, email: dict[str, Any]) -> SentMail:
    """What the relay and the read-outs need of an email ``_problem`` found valid."""
    to = email["to"]
    headers = email.get("headers")
    copies = () if "cc" not in email and "bcc" not in email else _copies(email)
    return SentMail(
        provider_id=email_id,
        sender=email["from"],
        to=bare(to) if isinstance(to, str) else bare_all(to),
        subject=email["subject"],
        headers=headers if isinstance(headers, dict) else {},
        copies=copies,
    )


def _copies(email: dict[str, Any]) -> tuple[str, ...]:
    return bare_all(_strings(email.get("cc")) + _strings(email.get("bcc")))


def _strings(value: Any) -> list[str]:
    """The addresses of a field that may be one string or a list (anything else: none)."""
    items = [value] if isinstance(value, str) else value
    return [item for item in items if isinstance(item, str)] if isinstance(items, list) else []


def _send_batch(request: HttpRequest, emails: Any, rng: random.Random) -> Outcome:
    if not isinstance(emails, list) or not 1 <= len(emails) <= _MAX_BATCH:
        message = f"The batch must be an array of 1 to {_MAX_BATCH} emails."
        return Outcome(_error(422, "validation_error", message))
    problems = {i: p for i, email in enumerate(emails) if (p := _problem(email)) is not None}
    permissive = request.headers.get("x-batch-validation", "").lower() == "permissive"
    if problems and not permissive:
        index, (name, message) = next(iter(problems.items()))
        return Outcome(_error(422, name, f"emails[{index}]: {message}"))
    sent = tuple(_mail(new_uuid(rng), email) for i, email in enumerate(emails) if i not in problems)
    data = [{"id": mail.provider_id} for mail in sent]
    if not permissive:
        return Outcome(HttpResponse.json(200, {"data": data}), sent=sent)
    errors = [{"index": i, "message": message} for i, (_, message) in problems.items()]
    return Outcome(HttpResponse.json(200, {"data": data, "errors": errors}), sent=sent)


def _problem(email: Any) -> tuple[str, str] | None:
    """The error name and message for an invalid email, None for a valid one."""
    if not isinstance(email, dict):
        return "validation_error", "Each email must be a JSON object."
    for field in _REQUIRED:
        if email.get(field) is None:
            return "missing_required_field", f"Missing `{field}` field."
    to = email["to"]
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        return "validation_error", "Invalid `to` field: expected a string or an array."
    if not 1 <= len(recipients) <= _MAX_TO:
        return "validation_error", f"The `to` field must have 1 to {_MAX_TO} addresses."
    if not all(_RECIPIENT.fullmatch(r.strip()) for r in recipients):
        return "validation_error", _BAD_TO
    sender = email["from"]
    if not isinstance(sender, str) or "@" not in sender:
        message = "Invalid `from` field. Use `email@example.com` or `Name <email@example.com>`."
        return "invalid_from_address", message
    if not isinstance(email["subject"], str):
        return "validation_error", "Invalid `subject` field: expected a string."
    return None


_BAD_TO = (
    "Invalid `to` field. The email address needs to follow the "
    "`email@example.com` or `Name <email@example.com>` format."
)

SPEC = ProviderSpec("resend", Resend, REPLIES)
