"""Amplitude ingestion: ``POST /2/httpapi`` and ``/batch``, the API key in the JSON body.

A request is taken or refused whole: a 400 lists the invalid events by index
(``events_with_missing_fields`` and the like), a 429 lists the events of
throttled users and devices (``throttled_events``), and in both cases
nothing of it is ingested. Throttling is Amplitude's: a user or device may
average ``eps_threshold`` (30) events a second over ``window`` (30) seconds;
optionally a ``daily_quota`` per user or device. Events are deduplicated on
``insert_id`` (per device when the event has one); :meth:`Amplitude.copies`
counts how often one insert id was accepted. A batch request names no single
idempotency key, so the stats' per-request key is None.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

MAX_EVENTS = 2000
_MAX_BYTES = {"/2/httpapi": 1_048_576, "/batch": 20 * 1_048_576}
_DEFAULT_MIN_ID_LENGTH = 5
_SWEEP_EVERY = 1024  # requests between sweeps of idle users and devices

Who = tuple[str, str]  # ("user_id" | "device_id", the id)


def _error(status: int, error: str, **extra: Any) -> HttpResponse:
    return HttpResponse.json(status, {"code": status, "error": error, **extra})


def _rate_limited(_retry_after: int) -> HttpResponse:
    # No headers: Amplitude signals throttling in the body alone. A storm
    # names no events, so the whole request is to be retried.
    body = {
        "eps_threshold": 30,
        "throttled_devices": {},
        "throttled_users": {},
        "throttled_events": [],
    }
    return _error(429, "Too many requests for some devices and users", **body)


def _missing(field: str) -> HttpResponse:
    return _error(400, "Request missing required field", missing_field=field)


REPLIES = FaultReplies(
    error=_error(500, "Internal server error"),
    permanent=_missing("api_key"),
    outage=_error(503, "Service unavailable"),
    rate_limited=_rate_limited,
)


@attrs.define
class Activity:
    """Events ingested per second over the last ``window`` seconds, for one user or device."""

    seconds: deque[list[int]] = attrs.Factory(deque)  # [second, events], oldest first

    def count(self, now: int, window: int) -> int:
        while self.seconds and self.seconds[0][0] <= now - window:
            self.seconds.popleft()
        return sum(events for _, events in self.seconds)

    def add(self, now: int, events: int) -> None:
        if self.seconds and self.seconds[-1][0] == now:
            self.seconds[-1][1] += events
        else:
            self.seconds.append([now, events])


@attrs.define
class Amplitude:
    """Amplitude's upload endpoints, its per-user throttle and its dedup table."""

    eps_threshold: int = 30
    window: int = 30  # seconds the events-per-second average is taken over
    daily_quota: int | None = None  # events a user or device may send a day
    clock: Callable[[], float] = trio.current_time  # monotonic, for the throttle
    wall: Callable[[], float] = time.time  # for server_upload_time
    stored: dict[tuple[str, str], int] = attrs.Factory(dict)  # (device, insert_id) -> copies
    activity: dict[Who, Activity] = attrs.Factory(dict)
    daily: dict[Who, tuple[int, int]] = attrs.Factory(dict)  # -> (day, events)
    requests: int = 0

    def copies(self, insert_id: str) -> int:
        """How many events with this ``insert_id`` were accepted, duplicates included."""
        return sum(count for key, count in self.stored.items() if key[1] == insert_id)

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.stored.values())

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path not in _MAX_BYTES:
            return Outcome(_error(404, "Not found"))
        if request.method != "POST":
            return Outcome(_error(405, "Method not allowed"))
        if len(request.body) > _MAX_BYTES[path]:
            return Outcome(_error(413, "Payload too large"))
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if path == "/batch" and media != "application/json":
            return Outcome(_error(400, "Content-Type must be application/json"))
        try:
            upload = json.loads(request.body)
        except ValueError:
            return Outcome(_error(400, "Invalid JSON request body"))
        refusal = _refuse(upload)
        if refusal is not None:
            return Outcome(refusal)
        return Outcome(self._upload(upload["events"], _min_id_length(upload), len(request.body)))

    def _upload(self, events: list[Any], min_id_length: int, size: int) -> HttpResponse:
        if len(events) > MAX_EVENTS:
            return _error(413, "Payload too large")
        invalid = _invalid(events, min_id_length)
        if invalid:
            return _error(400, "Invalid field values on some events", **invalid)
        throttled = self._throttled(events)
        if throttled is not None:
            return throttled
        for event in events:
            self._ingest(event)
        body = {
            "code": 200,
            "events_ingested": len(events),
            "payload_size_bytes": size,
            "server_upload_time": int(self.wall() * 1000),
        }
        return HttpResponse.json(200, body)

    def _throttled(self, events: list[dict[str, Any]]) -> HttpResponse | None:
        """The 429 for a request whose users or devices would go over their rate or quota."""
        now = math.floor(self.clock())
        self._sweep(now)
        ahead: dict[Who, int] = {}
        for event in events:
            for who in _who(event):
                ahead[who] = ahead.get(who, 0) + 1
        over_rate = {who: eps for who, n in ahead.items() if (eps := self._eps(who, n, now))}
        over_quota = {who: day for who, n in ahead.items() if (day := self._over_quota(who, n))}
        if not over_rate and not over_quota:
            return None
        held = over_rate.keys() | over_quota.keys()
        listed = [i for i, event in enumerate(events) if held.intersection(_who(event))]
        body: dict[str, Any] = {
            "eps_threshold": self.eps_threshold,
            "throttled_devices": _named(over_rate, "device_id"),
            "throttled_users": _named(over_rate, "user_id"),
            "throttled_events": listed,
        }
        if over_quota:
            body["exceeded_daily_quota_users"] = _named(over_quota, "user_id")
            body["exceeded_daily_quota_devices"] = _named(over_quota, "device_id")
        return _error(429, "Too many requests for some devices and users", **body)

    def _eps(self, who: Who, extra: int, now: int) -> int:
        """The rate ``who`` would reach with ``extra`` more events, if over the limit, else 0."""
        activity = self.activity.get(who)
        total = extra + (activity.count(now, self.window) if activity is not None else 0)
        eps = math.ceil(total / self.window)
        return eps if total > self.eps_threshold * self.window else 0

    def _over_quota(self, who: Who, extra: int) -> int:
        """Events ``who`` would reach today, if over the daily quota, else 0."""
        if self.daily_quota is None:
            return 0
        day, count = self.daily.get(who, (self._day(), 0))
        total = extra + (count if day == self._day() else 0)
        return total if total > self.daily_quota else 0

    def _day(self) -> int:
        return math.floor(self.clock() // 86_400)

    def _ingest(self, event: dict[str, Any]) -> None:
        now = math.floor(self.clock())
        for who in _who(event):
            self.activity.setdefault(who, Activity()).add(now, 1)
            if self.daily_quota is not None:
                day, count = self.daily.get(who, (self._day(), 0))
                self.daily[who] = (self._day(), (count if day == self._day() else 0) + 1)
        insert_id = event.get("insert_id")
        if isinstance(insert_id, str):
            key = (str(event.get("device_id") or ""), insert_id)
            self.stored[key] = self.stored.get(key, 0) + 1

    def _sweep(self, now: int) -> None:
        """Forget users and devices idle for a whole window, so the table stays bounded."""
        self.requests += 1
        if self.requests % _SWEEP_EVERY:
            return
        self.activity = {w: a for w, a in self.activity.items() if a.count(now, self.window)}


def _refuse(upload: Any) -> HttpResponse | None:
    """The request-level 400 for an upload, if it has one."""
    if not isinstance(upload, dict):
        return _error(400, "Invalid JSON request body")
    api_key = upload.get("api_key")
    if not isinstance(api_key, str) or not api_key:
        return _missing("api_key")
    if api_key == "invalid":
        return _error(400, f"Invalid API key: {api_key}")
    events = upload.get("events")
    if not isinstance(events, list) or not events:
        return _missing("events")
    return None


def _min_id_length(upload: dict[str, Any]) -> int:
    options = upload.get("options")
    value = options.get("min_id_length") if isinstance(options, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return _DEFAULT_MIN_ID_LENGTH


def _invalid(events: list[Any], min_id_length: int) -> dict[str, Any]:
    """Amplitude's index maps for the invalid events; empty when all are valid."""
    maps: dict[str, dict[str, list[int]]] = {
        "events_with_missing_fields": {},
        "events_with_invalid_fields": {},
        "events_with_invalid_id_lengths": {},
    }
    for index, event in enumerate(events):
        for key, field in _problems(event, min_id_length):
            maps[key].setdefault(field, []).append(index)
    return {key: by_field for key, by_field in maps.items() if by_field}


def _problems(event: Any, min_id_length: int) -> list[tuple[str, str]]:
    """(index map, field) for each problem of one event."""
    missing, invalid = "events_with_missing_fields", "events_with_invalid_fields"
    if not isinstance(event, dict):
        return [(missing, "event_type")]
    problems = []
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        problems.append((missing, "event_type"))
    if not event.get("user_id") and not event.get("device_id"):
        problems += [(missing, "user_id"), (missing, "device_id")]
    for field in ("user_id", "device_id"):
        value = event.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or (field == "device_id" and set(value) <= {"0", "-"}):
            problems.append((invalid, field))
        elif len(value) < min_id_length:
            problems.append(("events_with_invalid_id_lengths", field))
    problems += [(invalid, field) for field in _badly_typed(event)]
    return problems


def _badly_typed(event: dict[str, Any]) -> list[str]:
    fields = []
    time_ms = event.get("time")
    if time_ms is not None and (not isinstance(time_ms, int) or isinstance(time_ms, bool)):
        fields.append("time")
    if "insert_id" in event and not isinstance(event["insert_id"], str):
        fields.append("insert_id")
    for name in ("event_properties", "user_properties"):
        if name in event and not isinstance(event[name], dict):
            fields.append(name)
    return fields


def _who(event: dict[str, Any]) -> list[Who]:
    return [(kind, event[kind]) for kind in ("user_id", "device_id") if event.get(kind)]


def _named(values: dict[Who, int], kind: str) -> dict[str, int]:
    return {name: value for (of, name), value in values.items() if of == kind}


SPEC = ProviderSpec("amplitude", Amplitude, REPLIES)
