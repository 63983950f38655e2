"""Mixpanel ingestion: ``POST /import`` (strict JSON, or the SDK's legacy form) and ``/track``.

* ``/import?strict=1`` with a JSON array (or NDJSON, optionally gzip): HTTP
  Basic as a service account (with ``project_id``) or the project token as
  user name; each event is checked, the valid ones are imported even when
  others fail (a 400 listing ``failed_records``).
* The official python SDK's form: ``data=<JSON object or array>&verbose=1``
  to ``/import`` (same auth) or ``/track`` (the token inside each event):
  invalid events are dropped and the answer is ``{"status":1,"error":null}``
  (``1`` as text without ``verbose``).

Events are deduplicated as Mixpanel does, on (event, time, distinct_id,
``$insert_id``); :meth:`Mixpanel.copies` counts how often one insert id was
accepted. A batch request names no single idempotency key, so the stats'
per-request key is None: duplicates are counted per event here.

Mixpanel geolocates each event it takes (``$city``, ``$region``,
``mp_country_code``): by the event's own ``ip`` property when it has one
(``"0"`` there: not at all), else by the address that sent the request,
unless the request says ``ip=0`` (query string, or the SDK's form field).
Nothing is refused for it, so :attr:`Mixpanel.located` records, per stored
event, where its location would come from; :attr:`Mixpanel.sender_located`
counts the events that would get the sending host's city.
"""

from __future__ import annotations

import base64
import binascii
import enum
import gzip
import json
import random
import re
import time
import zlib
from collections.abc import Callable, Collection
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._provider import FaultReplies, Outcome, ProviderSpec

MAX_EVENTS = 2000
MAX_BYTES = 2_097_152  # uncompressed, as Mixpanel's own 413 message says
_EARLIEST = 31_536_000  # 1971-01-01
_LEEWAY = 3600  # an event may be at most an hour in the future
_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
_PLACEHOLDERS = frozenset({"null", "undefined", "0"})
_STRICT = frozenset({"time", "distinct_id", "$insert_id"})
_LEGACY_IMPORT = frozenset({"time", "distinct_id"})
_TRACK = frozenset({"token"})
_ROUTES = ("/import", "/track")


def _error(status: int, error: str, status_text: str) -> HttpResponse:
    return HttpResponse.json(status, {"code": status, "error": error, "status": status_text})


def _rate_limited(_retry_after: int) -> HttpResponse:
    # Mixpanel sends no Retry-After or rate-limit headers: the body is all there is.
    message = "Project exceeded rate limits. Please retry the request with exponential backoff."
    return _error(429, message, "Too Many Requests")


_UNAUTHORIZED = _error(401, "Invalid credentials", "Unauthorized")
_TOO_LARGE = _error(
    413, f"request exceeds max limit of {MAX_BYTES} bytes", "Request Entity Too Large"
)

REPLIES = FaultReplies(
    error=_error(500, "Internal server error", "Internal Server Error"),
    permanent=_UNAUTHORIZED,
    outage=_error(502, "Bad gateway", "Bad Gateway"),
    rate_limited=_rate_limited,
)

DedupKey = tuple[str, int, str, str]  # event, time in ms, distinct_id, $insert_id


class GeoSource(enum.Enum):
    """Where Mixpanel would take an event's location from."""

    SENDER = "the sender's address"  # the request's own IP: the sending host's city
    EVENT = "the event's ip"  # the event's ``ip`` property (the end user's address)
    NONE = "none"  # not geolocated


@attrs.frozen
class Geolocation:
    """The location Mixpanel would give one event; ``ip`` is the event's own, if used."""

    source: GeoSource
    ip: str | None = None


@attrs.frozen
class _Batch:
    """A request's events, and how it wants its answer."""

    events: list[Any]
    legacy: bool  # the SDK's form-encoded post
    verbose: bool
    strict: bool
    ip: str | None = None  # the request's ``ip`` parameter ("0": not by the sender's address)


@attrs.define
class Mixpanel:
    """Mixpanel's ingestion endpoints, with its dedup table."""

    stored: dict[DedupKey, int] = attrs.Factory(dict)  # event -> copies accepted
    # Event -> where its location would come from (the latest copy's, as
    # Mixpanel surfaces the latest of duplicates).
    located: dict[DedupKey, Geolocation] = attrs.Factory(dict)
    clock: Callable[[], float] = time.time  # wall clock: times over an hour ahead are refused

    def copies(self, insert_id: str) -> int:
        """How many events with this ``$insert_id`` were accepted, duplicates included."""
        return sum(count for key, count in self.stored.items() if key[3] == insert_id)

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.stored.values())

    def location(self, insert_id: str) -> Geolocation | None:
        """Where the stored event with this ``$insert_id`` would be located; None if none is."""
        found = [where for key, where in self.located.items() if key[3] == insert_id]
        return found[-1] if found else None

    @property
    def sender_located(self) -> int:
        """Stored events Mixpanel would geolocate to whoever sent them (the sending host)."""
        return sum(1 for where in self.located.values() if where.source is GeoSource.SENDER)

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path not in _ROUTES:
            return Outcome(_error(404, "Not found", "Not Found"))
        if request.method != "POST":
            return Outcome(_error(405, "Method not allowed", "Method Not Allowed"))
        if path == "/import" and not _authorized(request):
            return Outcome(_UNAUTHORIZED)
        try:
            batch = _batch(request)
        except _TooLarge:
            return Outcome(_TOO_LARGE)
        except ValueError as exc:
            return Outcome(_error(400, str(exc), "Bad Request"))
        if path == "/track":
            return self._legacy(batch, _TRACK)
        if batch.legacy:
            return self._legacy(batch, _LEGACY_IMPORT)
        return self._import(batch)

    def _import(self, batch: _Batch) -> Outcome:
        required = _STRICT if batch.strict else _LEGACY_IMPORT
        failed = []
        imported = 0
        for index, event in enumerate(batch.events):
            problem = _problem(event, required, self.clock())
            if problem is None:
                self._store(event, batch.ip)
                imported += 1
            elif batch.strict:
                failed.append(_failed_record(index, event, *problem))
        if not failed:
            body = {"code": 200, "num_records_imported": imported, "status": "OK"}
            return Outcome(HttpResponse.json(200, body))
        body = {
            "code": 400,
            "error": "some data points in the request failed validation",
            "status": "Bad Request",
            "num_records_imported": imported,
            "failed_records": failed,
        }
        # The valid events were imported: the request did work.
        return Outcome(HttpResponse.json(400, body), accepted=imported > 0)

    def _legacy(self, batch: _Batch, required: Collection[str]) -> Outcome:
        problems = []
        for event in batch.events:
            problem = _problem(event, required, self.clock())
            if problem is None:
                self._store(event, batch.ip)
            else:
                problems.append(problem[1])
        if len(problems) == len(batch.events):
            error = problems[0] if problems else "no events"
            if batch.verbose:
                return Outcome(HttpResponse.json(400, {"status": 0, "error": error}))
            return Outcome(HttpResponse.text(200, "0"), accepted=False)
        if batch.verbose:
            return Outcome(HttpResponse.json(200, {"status": 1, "error": None}))
        return Outcome(HttpResponse.text(200, "1"))

    def _store(self, event: dict[str, Any], ip: str | None) -> None:
        properties = event["properties"]
        when = properties.get("time", self.clock())
        key = (
            event["event"],
            _milliseconds(when),
            str(properties.get("distinct_id", "")),
            str(properties.get("$insert_id", "")),
        )
        self.stored[key] = self.stored.get(key, 0) + 1
        self.located[key] = _geolocation(properties, ip)


def _geolocation(properties: dict[str, Any], ip: str | None) -> Geolocation:
    """As Mixpanel decides: the event's own ``ip`` wins; else the sender's, unless ``ip=0``."""
    if "ip" in properties:
        own = properties["ip"]
        # "0" is the documented way to turn geolocation off for one event.
        if own is None or str(own) in ("", "0"):
            return Geolocation(GeoSource.NONE)
        return Geolocation(GeoSource.EVENT, str(own))
    if ip == "0":
        return Geolocation(GeoSource.NONE)
    return Geolocation(GeoSource.SENDER)


class _TooLarge(Exception):
    pass


def _authorized(request: HttpRequest) -> bool:
    """A service account (user and secret) with ``project_id``, else a token as user name."""
    credentials = request.basic_auth()
    if credentials is None:
        return False
    user, password = credentials
    if "project_id" in request.query_params():
        return bool(user) and password not in ("", "invalid")
    return user not in ("", "invalid")


def _batch(request: HttpRequest) -> _Batch:
    """The request's events; ValueError for a body Mixpanel cannot read."""
    body = _inflate(request)
    if len(body) > MAX_BYTES:
        raise _TooLarge
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    query = request.query_params()
    if media == "application/x-www-form-urlencoded":
        form = attrs.evolve(request, body=body).form()
        events = _decode_data(form.get("data", [""])[0])
        verbose = _flag(form, "verbose") or _flag(query, "verbose")
        ip = _param(form, "ip")  # the SDK's place for it; the query string's is read below
        batch = _Batch(events, legacy=True, verbose=verbose, strict=False, ip=ip)
    elif media == "application/x-ndjson":
        lines = body.decode("utf-8", "replace").splitlines()
        batch = _Batch([_json(line) for line in lines if line.strip()], False, False, True)
    else:
        batch = _Batch(_as_list(_json(body)), legacy=False, verbose=False, strict=True)
    if len(batch.events) > MAX_EVENTS:
        raise _TooLarge
    strict = batch.strict and _flag(query, "strict")
    return attrs.evolve(batch, strict=strict, ip=batch.ip or _param(query, "ip"))


def _inflate(request: HttpRequest) -> bytes:
    if request.headers.get("content-encoding", "").lower() != "gzip":
        return request.body
    try:
        return gzip.decompress(request.body)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError("unable to decompress the gzip body") from exc


def _decode_data(data: str) -> list[Any]:
    """The legacy ``data`` field: JSON, or base64-encoded JSON."""
    try:
        return _as_list(json.loads(data))
    except ValueError:
        pass
    try:
        return _as_list(json.loads(base64.b64decode(data, validate=True)))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("'data' is neither JSON nor base64-encoded JSON") from exc


def _json(text: bytes | str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError("unable to parse the body as JSON") from exc


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return params.get(name, ["0"])[0] == "1"


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _problem(event: Any, required: Collection[str], now: float) -> tuple[str, str] | None:
    """The failing field and Mixpanel's message for an invalid event, None for a valid one."""
    if not isinstance(event, dict):
        return "event", "each event must be a JSON object"
    if not isinstance(event.get("event"), str) or not event["event"]:
        return "event", "'event' must be a non-empty string"
    properties = event.get("properties")
    if not isinstance(properties, dict):
        return "properties", "'properties' must be an object"
    # The token is /track's credential; /import ignores it.
    checked = ("time", "distinct_id", "$insert_id", *(("token",) if "token" in required else ()))
    for name in checked:
        field = f"properties.{name}"
        if name not in properties:
            if name in required:
                return field, f"'{field}' is required"
            continue
        message = _property_problem(name, properties[name], now)
        if message is not None:
            return field, f"'{field}' is invalid: {message}"
    return None


def _property_problem(name: str, value: Any, now: float) -> str | None:
    match name:
        case "time":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "must be specified as seconds since epoch"
            seconds = _milliseconds(value) / 1000
            if not _EARLIEST <= seconds <= now + _LEEWAY:
                return "must be after 1971-01-01 and no more than 1 hour in the future"
        case "distinct_id":
            if not isinstance(value, str | int) or isinstance(value, bool):
                return "must be a string"
        case "$insert_id":
            if not isinstance(value, str) or not _INSERT_ID.fullmatch(value):
                return "must be 1 to 36 alphanumeric characters or '-'"
            if value.lower() in _PLACEHOLDERS:
                return "must not be a placeholder value"
        case "token":
            if not isinstance(value, str) or value in ("", "invalid"):
                return "is not a valid project token"
    return None


def _milliseconds(value: float) -> int:
    """Mixpanel takes seconds or milliseconds; large values are milliseconds."""
    return round(value) if value >= 10**11 else round(value * 1000)


def _failed_record(index: int, event: Any, field: str, message: str) -> dict[str, Any]:
    properties = event.get("properties") if isinstance(event, dict) else None
    insert_id = properties.get("$insert_id") if isinstance(properties, dict) else None
    return {
        "index": index,
        "insert_id": insert_id if isinstance(insert_id, str) else "",
        "field": field,
        "message": message,
    }


SPEC = ProviderSpec("mixpanel", Mixpanel, REPLIES)
