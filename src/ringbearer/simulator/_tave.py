"""Táve / VSCO Workspace Public API v2: contacts, jobs and the links between them.

``POST /api/v2/address-book``, ``/api/v2/job`` and ``/api/v2/job-contact``,
with the key in ``X-API-KEY`` (or ``Authorization: Bearer``). Each created
record is answered ``201`` with the record and a lowercase ULID ``id``, and
kept, so a link naming an unknown contact or job is refused. Errors are JSON
``{"type", "title", "detail", "status"}``; a validation error's ``detail`` is
an object of field -> messages (its exact wording, and the 404 for a link to
an unknown record, are this simulator's guess). The API has no idempotency:
each request is a new record, and only a link counts a key (its job id), so
``unique_keys`` is the number of leads completed.
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_ULID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}")
_EPOCH_MS = 1_700_000_000_000  # the time part of the first id; each id is 1 ms later
_KINDS = frozenset({"person", "company", "location"})
_STAGES = frozenset({"lead", "booked", "fulfillment", "completed"})
_NAME_MAX = 48
_E164 = re.compile(r"\+[1-9]\d{1,14}(x\d{1,6})?")
_FORMATTED = re.compile(r"[ -~]{1,24}")
_BLANK = "This value should not be blank."
Problems = dict[str, list[str]]


def new_ulid(ms: int, rng: random.Random) -> str:
    """A lowercase ULID: 48 bits of milliseconds, then 80 random bits from ``rng``."""
    n = (ms << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(n >> shift) & 31] for shift in range(125, -1, -5))


def _error(
    status: int,
    title: str,
    detail: str,
    kind: str = "unknown",
    headers: tuple[tuple[str, str], ...] = (),
) -> HttpResponse:
    body = {"type": kind, "title": title, "detail": detail, "status": status}
    return HttpResponse.json(status, body, headers)


def _invalid(problems: Problems) -> HttpResponse:
    body = {"type": "validation-error", "title": "Validation Error", "detail": problems}
    return HttpResponse.json(400, {**body, "status": 400})


def _rate_limited(retry_after: int) -> HttpResponse:
    headers = (("retry-after", str(retry_after)),)
    detail = "Exceeded request quota, see Retry-After header"
    return _error(429, "Too Many Requests", detail, "quota-limit", headers)


_UNAUTHORIZED = _error(401, "Unauthorized", "API key is missing or invalid")

REPLIES = FaultReplies(
    error=_error(500, "Internal Server Error", "An unexpected error occurred."),
    permanent=_invalid({"email": ["This value is not a valid email address."]}),
    outage=_error(503, "Service Unavailable", "VSCO Workspace is temporarily unavailable."),
    rate_limited=_rate_limited,
)

Create = Callable[["Workspace", dict[str, Any], random.Random], Outcome]


@attrs.define
class Workspace:
    """One studio's records, kept so links can refer to them."""

    contacts: dict[str, dict[str, Any]] = attrs.Factory(dict)
    jobs: dict[str, dict[str, Any]] = attrs.Factory(dict)
    links: dict[str, dict[str, Any]] = attrs.Factory(dict)
    made: int = 0  # ids handed out

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        create = _ROUTES.get(path)
        if create is None:
            return Outcome(_error(404, "Not Found", f"No route found for {path}"))
        if request.method != "POST":
            return Outcome(_error(405, "Method Not Allowed", f"{request.method} is not allowed"))
        if not _authorized(request.headers):
            return Outcome(_UNAUTHORIZED)
        try:
            body = request.json()
        except ValueError:
            return Outcome(_error(400, "Bad Request", "The request body is not valid JSON."))
        if not isinstance(body, dict):
            return Outcome(_error(400, "Bad Request", "The request body must be a JSON object."))
        return create(self, body, rng)

    def new_id(self, rng: random.Random) -> str:
        self.made += 1
        return new_ulid(_EPOCH_MS + self.made, rng)

    def create_contact(self, body: dict[str, Any], rng: random.Random) -> Outcome:
        problems = _contact_problems(body)
        if problems:
            return Outcome(_invalid(problems))
        record = {**body, "id": self.new_id(rng)}
        if body["kind"] == "person":
            names = (body.get("firstName"), body.get("lastName"))
            record["name"] = " ".join(name for name in names if name)
        self.contacts[record["id"]] = record
        return Outcome(HttpResponse.json(201, record))

    def create_job(self, body: dict[str, Any], rng: random.Random) -> Outcome:
        problems = _job_problems(body)
        if problems:
            return Outcome(_invalid(problems))
        record = {"stage": "lead", **body, "id": self.new_id(rng), "title": body.get("name")}
        self.jobs[record["id"]] = record
        return Outcome(HttpResponse.json(201, record))

    def create_link(self, body: dict[str, Any], rng: random.Random) -> Outcome:
        ids = ("contactId", "jobId")
        problems = {field: [_BLANK] for field in ids if not isinstance(body.get(field), str)}
        if problems:
            return Outcome(_invalid(problems))
        contact_id, job_id = body["contactId"], body["jobId"]
        if contact_id not in self.contacts:
            return Outcome(_error(404, "Not Found", f'Contact "{contact_id}" was not found.'))
        if job_id not in self.jobs:
            return Outcome(_error(404, "Not Found", f'Job "{job_id}" was not found.'))
        client = bool(body.get("client", False))
        record = {**body, "id": self.new_id(rng), "client": client}
        record["roleKinds"] = ["client"] if client else []
        self.links[record["id"]] = record
        return Outcome(HttpResponse.json(201, record), key=job_id)


_ROUTES: dict[str, Create] = {
    "/api/v2/address-book": Workspace.create_contact,
    "/api/v2/job": Workspace.create_job,
    "/api/v2/job-contact": Workspace.create_link,
}


def _authorized(headers: Mapping[str, str]) -> bool:
    key = headers.get("x-api-key")
    if key is None:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
    key = key.strip()
    return bool(key) and key != "invalid"


def _contact_problems(body: dict[str, Any]) -> Problems:
    kind = body.get("kind")
    if kind not in _KINDS:
        return {"kind": [f"The value must be one of: {', '.join(sorted(_KINDS))}."]}
    problems: Problems = {}
    if kind == "person":
        for field in ("firstName", "lastName"):
            _check_text(problems, body, field, _NAME_MAX)
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        problems["email"] = ["This value is not a valid email address."]
    for field in ("cellPhone", "homePhone", "workPhone"):
        problem = _phone_problem(body.get(field))
        if problem is not None:
            problems[field] = [problem]
    return problems


def _phone_problem(phone: object) -> str | None:
    """What is wrong with a phone number object (``formatted`` or ``e164``), if anything."""
    if phone is None:
        return None
    if not isinstance(phone, dict):
        return "This value should be of type object."
    e164, formatted = phone.get("e164"), phone.get("formatted")
    if e164 is not None and not (isinstance(e164, str) and _E164.fullmatch(e164)):
        return "This value is not a valid E.164 phone number."
    if formatted is not None and not (
        isinstance(formatted, str) and _FORMATTED.fullmatch(formatted)
    ):
        return "This value should be at most 24 printable ASCII characters."
    return None


def _job_problems(body: dict[str, Any]) -> Problems:
    problems: Problems = {}
    if body.get("stage", "lead") not in _STAGES:
        problems["stage"] = [f"The value must be one of: {', '.join(sorted(_STAGES))}."]
    for field in ("jobTypeId", "leadSourceId", "leadStatusId", "brandId"):
        value = body.get(field)
        if value is not None and not (isinstance(value, str) and _ULID.fullmatch(value)):
            problems[field] = ["This value is not a valid ULID."]
    event_date = body.get("eventDate")
    if event_date is not None and not _is_date(event_date):
        problems["eventDate"] = ["This value is not a valid date."]
    _check_text(problems, body, "name", 255)
    return problems


def _check_text(problems: Problems, body: dict[str, Any], field: str, max_len: int) -> None:
    value = body.get(field)
    if value is None:
        return
    if not isinstance(value, str):
        problems[field] = ["This value should be of type string."]
    elif len(value) > max_len:
        message = f"This value is too long. It should have {max_len} characters or less."
        problems[field] = [message]


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


SPEC = ProviderSpec("tave", Workspace, REPLIES)
