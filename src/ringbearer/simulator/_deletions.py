"""The analytics providers' deletion APIs: Mixpanel's GDPR API and Amplitude's User Privacy API.

* ``mixpanel-deletion``: ``POST /data-deletions/v3.0/?token=<project token>``
  with ``Authorization: Bearer <GDPR OAuth token>`` and ``{"distinct_ids":
  [...], "compliance_type": "GDPR" | "CCPA"}`` (at most 2,000 ids, else
  400) answers ``201 {"status": "ok", "results": {"task_id"}}``;
  ``GET /data-deletions/v3.0/<task_id>?token=…`` shows the task.
* ``amplitude-deletion``: ``POST /api/2/deletions/users`` with HTTP Basic
  ``api_key:secret_key`` and ``{"user_ids": [...], "amplitude_ids"?: [...],
  "requester"?, "ignore_invalid_id(s)"?}`` (at most 100 ids, else 400)
  answers ``200 {"day", "status": "staging", "amplitude_ids": [...],
  "invalid_ids": []}``. The simulator keeps no table of users, so no id is
  ever invalid.

A credential that is empty or ``invalid`` is refused (401), as the other
simulated providers do. Neither API sends a wait with its 429 (both allow
one request a second); the fault layer's 429 is each one's own body.

Every accepted request is recorded as a :class:`Deletion` (its ids, when,
and the job it started): ``SimulatorState.deletions("mixpanel")`` in
process, ``GET /_sim/deletions?provider=mixpanel`` over HTTP (a JSON list;
without ``provider``, an object of both lists by provider name).
"""

from __future__ import annotations

import datetime
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._ids import new_uuid
from ._provider import FaultReplies, Outcome, ProviderSpec

MIXPANEL_MAX_IDS = 2000  # "up to 2000" (End User Data Management); the API reference says 1999
AMPLITUDE_MAX_IDS = 100
_MIXPANEL_PATH = "/data-deletions/v3.0"
_AMPLITUDE_PATH = "/api/2/deletions/users"
_COMPLIANCE_TYPES = frozenset({"GDPR", "CCPA"})
_JOB_DELAY_DAYS = 30  # Amplitude runs a deletion job within 30 days: the simulator, at the last
_REFUSED = frozenset({"", "invalid"})
# The short names /_sim/deletions and SimulatorState.deletions take, beside each provider's own.
ALIASES = {"mixpanel": "mixpanel-deletion", "amplitude": "amplitude-deletion"}


@attrs.frozen
class Deletion:
    """One accepted deletion request: the ids it named, when (wall clock), the job it started."""

    ids: tuple[str, ...]
    at: float
    job: str  # Mixpanel's task id, Amplitude's job day

    def shown(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "at": self.at, "job": self.job}


class _Refusal(Exception):
    """The request is refused with ``response``."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _json_object(request: HttpRequest, refuse: Callable[[str], HttpResponse]) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise _Refusal(refuse("the body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise _Refusal(refuse("the body must be a JSON object"))
    return body


def _strings(value: object) -> list[str] | None:
    """``value`` as a list of non-empty strings, None when it is anything else."""
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        return None
    return list(value)


# --- Mixpanel ------------------------------------------------------------------------


def _mixpanel_error(status: int, error: str) -> HttpResponse:
    return HttpResponse.json(status, {"error": error, "status": "error"})


def _mixpanel_rate_limited(_retry_after: int) -> HttpResponse:
    return _mixpanel_error(429, "Too many requests: the GDPR API allows 1 request a second")


def _mixpanel_bad(error: str) -> HttpResponse:
    return _mixpanel_error(400, error)


MIXPANEL_REPLIES = FaultReplies(
    error=_mixpanel_error(500, "Internal server error"),
    permanent=_mixpanel_error(401, "Invalid OAuth token"),
    outage=_mixpanel_error(503, "Service unavailable"),
    rate_limited=_mixpanel_rate_limited,
)


@attrs.define
class MixpanelDeletions:
    """Mixpanel's data deletion tasks, each recorded as it was asked for."""

    deletions: list[Deletion] = attrs.Factory(list)
    clock: Callable[[], float] = time.time

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        route = path.rstrip("/")
        if route != _MIXPANEL_PATH and not route.startswith(_MIXPANEL_PATH + "/"):
            return Outcome(_mixpanel_error(404, "Not found"))
        wanted = "POST" if route == _MIXPANEL_PATH else "GET"
        if request.method != wanted:
            return Outcome(_mixpanel_error(405, "Method not allowed"))
        try:
            _mixpanel_auth(request)
            if wanted == "GET":
                return Outcome(self._task(route.rpartition("/")[2]))
            return Outcome(self._create(request, rng))
        except _Refusal as refusal:
            return Outcome(refusal.response)

    def _create(self, request: HttpRequest, rng: random.Random) -> HttpResponse:
        body = _json_object(request, _mixpanel_bad)
        ids = _strings(body.get("distinct_ids"))
        if not ids:
            return _mixpanel_bad("'distinct_ids' must be a non-empty list of strings")
        if len(ids) > MIXPANEL_MAX_IDS:
            return _mixpanel_bad(
                f"at most {MIXPANEL_MAX_IDS} distinct_ids a request, got {len(ids)}"
            )
        compliance = body.get("compliance_type", "GDPR")
        if not isinstance(compliance, str) or compliance.upper() not in _COMPLIANCE_TYPES:
            return _mixpanel_bad("'compliance_type' must be GDPR or CCPA")
        task_id = new_uuid(rng)
        self.deletions.append(Deletion(tuple(ids), self.clock(), task_id))
        return HttpResponse.json(201, {"status": "ok", "results": {"task_id": task_id}})

    def _task(self, task_id: str) -> HttpResponse:
        found = [d for d in self.deletions if d.job == task_id]
        if not found:
            return _mixpanel_error(404, "Task not found")
        results = {"status": "PENDING", "result": "", "distinct_ids": list(found[0].ids)}
        return HttpResponse.json(200, {"status": "ok", "results": results})


def _mixpanel_auth(request: HttpRequest) -> None:
    """The GDPR OAuth token as a bearer token, and the project token in the query string."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() in _REFUSED:
        raise _Refusal(_mixpanel_error(401, "Invalid OAuth token"))
    project = request.query_params().get("token", [""])[0]
    if project in _REFUSED:
        raise _Refusal(_mixpanel_error(401, "Invalid project token"))


# --- Amplitude -----------------------------------------------------------------------


def _amplitude_error(status: int, error: str) -> HttpResponse:
    return HttpResponse.json(status, {"error": error})


def _amplitude_rate_limited(_retry_after: int) -> HttpResponse:
    return _amplitude_error(429, "Too many requests: at most 1 request a second")


def _amplitude_bad(error: str) -> HttpResponse:
    return _amplitude_error(400, error)


AMPLITUDE_REPLIES = FaultReplies(
    error=_amplitude_error(500, "Internal server error"),
    permanent=_amplitude_error(401, "Invalid API key or secret key"),
    outage=_amplitude_error(503, "Service unavailable"),
    rate_limited=_amplitude_rate_limited,
)


@attrs.define
class AmplitudeDeletions:
    """Amplitude's deletion jobs, each request recorded as it was asked for."""

    deletions: list[Deletion] = attrs.Factory(list)
    clock: Callable[[], float] = time.time

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path.rstrip("/") != _AMPLITUDE_PATH:
            return Outcome(_amplitude_error(404, "Not found"))
        if request.method != "POST":
            return Outcome(_amplitude_error(405, "Method not allowed"))
        credentials = request.basic_auth()
        if credentials is None or _REFUSED.intersection(credentials):
            return Outcome(_amplitude_error(401, "Invalid API key or secret key"))
        try:
            return Outcome(self._create(_json_object(request, _amplitude_bad)))
        except _Refusal as refusal:
            return Outcome(refusal.response)

    def _create(self, body: dict[str, Any]) -> HttpResponse:
        user_ids, amplitude_ids = _amplitude_ids(body)
        count = len(user_ids) + len(amplitude_ids)
        if count > AMPLITUDE_MAX_IDS:
            return _amplitude_bad(f"at most {AMPLITUDE_MAX_IDS} ids a request, got {count}")
        requester = body.get("requester", "")
        if not isinstance(requester, str):
            return _amplitude_bad("'requester' must be a string")
        for flag in ("ignore_invalid_id", "ignore_invalid_ids", "delete_from_org"):
            if not isinstance(body.get(flag, False), bool):
                return _amplitude_bad(f"{flag!r} must be true or false")
        now = self.clock()
        today = _day(now)
        job = (today + datetime.timedelta(days=_JOB_DELAY_DAYS)).isoformat()
        ids = (*user_ids, *(str(n) for n in amplitude_ids))
        self.deletions.append(Deletion(ids, now, job))
        listed = [_listed(user, requester, today.isoformat()) for user in user_ids]
        listed += [_listed(n, requester, today.isoformat()) for n in amplitude_ids]
        body = {"day": job, "status": "staging", "amplitude_ids": listed, "invalid_ids": []}
        return HttpResponse.json(200, body)


def _amplitude_ids(body: dict[str, Any]) -> tuple[list[str], list[int]]:
    """The request's user ids and Amplitude ids; a _Refusal when they are not lists of them."""
    user_ids = _strings(body.get("user_ids", []))
    if user_ids is None:
        raise _Refusal(_amplitude_bad("'user_ids' must be a list of non-empty strings"))
    amplitude_ids = body.get("amplitude_ids", [])
    if not isinstance(amplitude_ids, list) or not all(_is_int(n) for n in amplitude_ids):
        raise _Refusal(_amplitude_bad("'amplitude_ids' must be a list of integers"))
    if not user_ids and not amplitude_ids:
        raise _Refusal(_amplitude_bad("one of 'user_ids' or 'amplitude_ids' is required"))
    return user_ids, amplitude_ids


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _day(wall: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).date()


def _listed(who: str | int, requester: str, day: str) -> dict[str, Any]:
    """One user in the job, as Amplitude lists it; a user id gets a stable made-up Amplitude id."""
    amplitude_id = who if isinstance(who, int) else _stable_number(who)
    entry: dict[str, Any] = {
        "amplitude_id": amplitude_id,
        "requester": requester,
        "requested_on_day": day,
    }
    if isinstance(who, str):
        entry["user_id"] = who
    return entry


def _stable_number(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=5).digest(), "big")


# --- the read-out ---------------------------------------------------------------------

DeletionsOf = Callable[[str], Sequence[Deletion]]


def show_deletions(request: HttpRequest, deletions_of: DeletionsOf) -> HttpResponse:
    """``GET /_sim/deletions[?provider=mixpanel]``: one provider's list, or both by name."""
    if request.method != "GET":
        return HttpResponse.json(
            405, {"error": f"{request.method} is not allowed on /_sim/deletions"}
        )
    asked = request.query_params().get("provider")
    try:
        if asked:
            return HttpResponse.json(200, [d.shown() for d in deletions_of(asked[0])])
        shown = {name: [d.shown() for d in deletions_of(name)] for name in ALIASES.values()}
    except KeyError as exc:
        return HttpResponse.json(400, {"error": str(exc.args[0])})
    return HttpResponse.json(200, shown)


def recorded(logic: object, provider: str) -> Sequence[Deletion]:
    """The deletions a simulated provider's logic recorded; KeyError if it records none."""
    if not isinstance(logic, MixpanelDeletions | AmplitudeDeletions):
        known = ", ".join([*ALIASES, *ALIASES.values()])
        raise KeyError(f"{provider!r} records no deletions; ask one of {known}")
    return tuple(logic.deletions)


MIXPANEL_SPEC = ProviderSpec("mixpanel-deletion", MixpanelDeletions, MIXPANEL_REPLIES)
AMPLITUDE_SPEC = ProviderSpec("amplitude-deletion", AmplitudeDeletions, AMPLITUDE_REPLIES)
SPECS: tuple[ProviderSpec, ...] = (MIXPANEL_SPEC, AMPLITUDE_SPEC)
