"""The analytics family: Mixpanel and Amplitude, both batching (one event a message).

The actor gathers messages into batches (``batch_size`` events or
``batch_wait_ms``); each provider sends a batch as one request and still
answers one outcome per message.

Mixpanel (``POST {base_url}/import?strict=1&ip=0[&project_id=…]``, a JSON
array, HTTP Basic: a service account with ``project_id``, or the project token
as user name with an empty password). Hosts: ``https://api.mixpanel.com`` (US),
``https://api-eu.mixpanel.com`` (EU residency), ``https://api-in.mixpanel.com``
(India residency, which such projects must use). ``ip=0``: events are not
geolocated to the daemon's host; an event's own ``ip`` property (the end
user's address) is sent as given and still geolocates it. The payload::

    {"event": str (<= 255), "distinct_id": str (<= 255),
     "properties"?: {str: any} (<= 251 keys; not time, distinct_id or $insert_id),
     "time"?: number (seconds since the epoch, 1971 on; default: the message's created_at)}

is sent as ``{"event", "properties": {..., "time": <ms>, "distinct_id", "$insert_id"}}``.

Amplitude (``POST {base_url}/2/httpapi``, or ``/batch`` with ``endpoint =
"batch"``; the API key in the body). Hosts: ``https://api2.amplitude.com``,
``https://api.eu.amplitude.com`` (EU residency). The payload::

    {"event_type": str, "user_id"?: str, "device_id"?: str
     (at least one; each at least min_id_length characters, 5 by default),
     "event_properties"?: {...}, "user_properties"?: {...},
     "time"?: int (milliseconds since the epoch; default: the message's created_at)}

is sent as one of ``{"api_key", "events": [...], "options"?: {"min_id_length"}}``.

Both dedup on an id derived from the message's idempotency key (Mixpanel's
``$insert_id``, Amplitude's ``insert_id``), so resending a batch whose answer
was lost is safe. ``Delivered.provider_id`` is that id: neither provider
returns an id per event, and it is what finds the event in their UIs.

How the answers map, per message::

    Mixpanel                                  outcome
    200                                       Delivered(insert id)
    400 with failed_records                   listed: Permanent(field: message);
                                              the rest Delivered (they were imported)
    400 without, 401, 403, other 4xx          Permanent (every one)
    413                                       split (below)
    429 (no Retry-After is sent)              Retry(taken=NO), policy backoff
    5xx                                       Retry(taken=MAYBE); the insert id dedups

    Amplitude                                 outcome
    200                                       Delivered(insert id)
    400 "Invalid API key: …" / missing_field  Permanent (every one)
    400 with per-event index maps             listed: Permanent(naming the field);
                                              the rest Retry(NO, MESSAGE, after=0):
                                              the request was refused whole
    413                                       split (below)
    429 with throttled_events                 throttled, user/device over its daily
                                              quota: Permanent("exceeded daily quota");
                                              other throttled: Retry(NO, MESSAGE, 30 s);
                                              the rest Retry(NO, MESSAGE, after=0)
    429 without                               Retry(NO, after=30 s), the whole integration
    5xx                                       Retry(taken=MAYBE); the insert id dedups

A 413 (request too large) of one event is Permanent. Of several, every event
is Retry(NO, MESSAGE, after=0) and the provider halves how many events it
puts in a request (as Amplitude's SDK does); envelopes over that cap are
settled unsent as Retry(NO, MESSAGE, after=0), so the actor hands them to
the next batch. Each accepted request doubles the cap back until it no
longer binds.

Amplitude throttles single users and devices (30 events/s), and asks that
only they pause for 30 s: the provider keeps a table of paused user and
device ids, and ``build_batch`` settles their events unsent as
Retry(NO, MESSAGE, after=<seconds left>) while every other event goes out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import attrs
import httpx
import trio
from attrs import validators as v

from .._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Scope, Taken
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from ._base import (
    CONNECT_TO_BASE_URL,
    AdapterContext,
    BatchCall,
    BatchLimits,
    HttpCall,
    ProviderKind,
    basic_auth,
    batch_kind,
    classify_status,
    conforming_id,
    detail,
    fields,
    json_object,
    malformed,
    optional_mapping,
    optional_str,
    parse_all,
    required_str,
    status_reason,
)

T = TypeVar("T")

MAX_EVENTS = 2000  # events a request, the documented cap of both providers
_BATCH_SIZE = [v.instance_of(int), v.ge(1), v.le(MAX_EVENTS)]
_BATCH_WAIT_MS = [v.instance_of(int), v.ge(0), v.le(60_000)]
_EARLIEST_SECONDS = 31_536_000  # 1971-01-01, Mixpanel's floor for an event's time


def _limits(batch_size: int, batch_wait_ms: int) -> BatchLimits:
    return BatchLimits(max_size=batch_size, max_wait=batch_wait_ms / 1000)


@attrs.define
class SizeCap:
    """How many events a request may carry since the provider last answered 413."""

    limit: int  # the configured batch size
    cap: int | None = None  # None: the configured size binds

    def split(self, ready: Sequence[T]) -> tuple[Sequence[T], Sequence[T]]:
        """The events to send now, and those held back for the next batch."""
        if self.cap is None:
            return ready, ()
        return ready[: self.cap], ready[self.cap :]

    def refused(self, count: int) -> None:
        # Neither provider says by how much a request was too large: halve, as
        # Amplitude's SDK does. min() keeps a later, smaller refusal's cap when
        # an older, larger batch from another lane is refused after it.
        half = max(1, count // 2)
        self.cap = half if self.cap is None else min(self.cap, half)

    def accepted(self) -> None:
        if self.cap is not None:
            self.cap = None if self.cap * 2 >= self.limit else self.cap * 2


def _held(cap: int | None) -> Retry:
    reason = f"held back: the provider refused a larger request (HTTP 413); at most {cap} a request"
    return Retry(reason, taken=Taken.NO, after=0.0, scope=Scope.MESSAGE)


def _too_large(sent: Sequence[Envelope], response: httpx.Response, cap: SizeCap) -> list[Outcome]:
    words = detail(response, "error")
    if len(sent) == 1:
        reason = status_reason(response, f"the event alone is over the size limit: {words}")
        return [Permanent(reason, status=413)]
    cap.refused(len(sent))
    reason = status_reason(response, f"{words}; resending in smaller requests")
    retry = Retry(reason, taken=Taken.NO, after=0.0, status=413, scope=Scope.MESSAGE)
    return [retry] * len(sent)


def _whole_request(response: httpx.Response, words: str, wait_429: float | None = None) -> Outcome:
    """The default table, but any 5xx may have been ingested: the insert ids make resending safe."""
    return classify_status(response, words, any_5xx_maybe_taken=True, wait_429=wait_429)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# --- Mixpanel ------------------------------------------------------------------

_MIXPANEL_FIELDS = frozenset({"event", "distinct_id", "properties", "time"})
_MIXPANEL_OWN = {
    "time": "use the top-level 'time' field",
    "distinct_id": "use the top-level 'distinct_id' field",
    "$insert_id": "it is derived from the message's idempotency key",
}
MIXPANEL_MAX_PROPERTIES = 251  # Mixpanel takes < 255 a event, with our own three
_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
_PLACEHOLDER_IDS = frozenset({"null", "undefined", "0"})  # refused by Mixpanel
_SERVICE_ACCOUNT = ("service_account_username", "service_account_secret", "project_id")


def _fits_insert_id(key: str) -> bool:
    return _INSERT_ID.fullmatch(key) is not None and key.lower() not in _PLACEHOLDER_IDS


def mixpanel_insert_id(key: str) -> str:
    """``$insert_id``: the key if it fits Mixpanel's rule (<= 36 of A-Z a-z 0-9 -), else a hash."""
    return conforming_id(key, _fits_insert_id)


@attrs.frozen
class ProjectToken:
    token: SecretRef


@attrs.frozen
class ServiceAccount:
    username: str
    secret: SecretRef
    project_id: str


@attrs.frozen
class MixpanelSettings:
    """Either ``project_token``, or all of ``service_account_username``,
    ``service_account_secret`` and ``project_id``."""

    project_token: SecretRef | None = None
    service_account_username: str | None = attrs.field(
        default=None, validator=v.optional(v.min_len(1))
    )
    service_account_secret: SecretRef | None = None
    project_id: str | None = attrs.field(default=None, validator=v.optional(v.matches_re(r"\d+")))
    base_url: str = "https://api.mixpanel.com"
    batch_size: int = attrs.field(default=1000, validator=_BATCH_SIZE)
    batch_wait_ms: int = attrs.field(default=1000, validator=_BATCH_WAIT_MS)

    def __attrs_post_init__(self) -> None:
        self.auth()  # a ValueError names the keys that do not fit together

    def auth(self) -> ProjectToken | ServiceAccount:
        user, secret, project = account = (
            self.service_account_username,
            self.service_account_secret,
            self.project_id,
        )
        named = [key for key, value in zip(_SERVICE_ACCOUNT, account, strict=True) if value]
        if self.project_token is not None:
            if named:
                raise ValueError(
                    "set either project_token or a service account, not both "
                    f"(remove {', '.join(named)}: with a project token Mixpanel "
                    "authenticates by the token alone)"
                )
            return ProjectToken(self.project_token)
        if user is None or secret is None or project is None:
            if not named:
                raise ValueError(
                    "Mixpanel needs credentials: project_token, or service_account_username, "
                    "service_account_secret and project_id"
                )
            missing = [key for key in _SERVICE_ACCOUNT if key not in named]
            raise ValueError(f"a Mixpanel service account also needs {', '.join(missing)}")
        return ServiceAccount(user, secret, project)


@attrs.frozen
class MixpanelEvent:
    """A checked Mixpanel payload; ``time`` None means the message's creation time."""

    event: str
    distinct_id: str
    properties: Mapping[str, Any]
    time: float | None

    @classmethod
    def parse(cls, raw: object) -> MixpanelEvent:
        payload = fields(raw, _MIXPANEL_FIELDS)
        return cls(
            event=required_str(payload, "event", max_len=255),
            distinct_id=required_str(payload, "distinct_id", max_len=255),
            properties=_mixpanel_properties(payload),
            time=_epoch_seconds(payload),
        )

    def wire(self, envelope: Envelope) -> dict[str, Any]:
        seconds = self.time if self.time is not None else envelope.created_at
        properties = {
            **self.properties,
            # Milliseconds: /import takes them, and they keep the order of
            # events made within one second.
            "time": round(seconds * 1000),
            "distinct_id": self.distinct_id,
            "$insert_id": mixpanel_insert_id(envelope.idempotency_key),
        }
        return {"event": self.event, "properties": properties}


def _mixpanel_properties(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = optional_mapping(payload, "properties") or {}
    for key, why in _MIXPANEL_OWN.items():
        if key in properties:
            raise InvalidPayload(f"'properties' may not set {key!r}: {why}")
    if len(properties) > MIXPANEL_MAX_PROPERTIES:
        raise InvalidPayload(
            f"'properties' has {len(properties)} keys, at most {MIXPANEL_MAX_PROPERTIES}"
        )
    return properties


def _epoch_seconds(payload: Mapping[str, Any]) -> float | None:
    if payload.get("time") is None:
        return None
    seconds = _number(payload["time"])
    # The upper bound catches milliseconds given where seconds are expected.
    if seconds is None or not _EARLIEST_SECONDS <= seconds < 10**11:
        raise InvalidPayload(
            f"'time' must be seconds since the epoch, from 1971 on; got {payload['time']!r}"
        )
    return seconds


@attrs.define
class Mixpanel:
    """``POST /import?strict=1&ip=0``: a JSON array of events, HTTP Basic auth."""

    authorization: Secret  # the whole header value: it holds the token or secret
    url: str
    limits: BatchLimits
    cap: SizeCap

    @classmethod
    def from_settings(cls, settings: MixpanelSettings, ctx: AdapterContext) -> Mixpanel:
        # Mixpanel geolocates an event by the IP address that sent the request
        # unless told otherwise: without ip=0 every event would get this host's
        # city. An event's own "ip" property still wins (Mixpanel geolocates by
        # it when present; "0" there means none), so a producer that knows the
        # end user's address sets it. The SDK sends ip=0 as a form field beside
        # its data; our body is JSON, so it goes in the query string.
        url = f"{ctx.base_url(settings.base_url)}/import?strict=1&ip=0"
        match settings.auth():
            case ProjectToken(token=token):
                authorization = basic_auth(ctx.secrets(token).reveal(), Secret(""))
            case ServiceAccount(username=username, secret=secret, project_id=project_id):
                authorization = basic_auth(username, ctx.secrets(secret))
                url += f"&project_id={quote(project_id)}"
        limits = _limits(settings.batch_size, settings.batch_wait_ms)
        return cls(Secret(authorization), url, limits, SizeCap(settings.batch_size))

    def validate(self, payload: Mapping[str, Any]) -> None:
        MixpanelEvent.parse(payload)

    def build_batch(self, envelopes: Sequence[Envelope]) -> BatchCall:
        ready, settled = parse_all(envelopes, lambda env: MixpanelEvent.parse(env.payload))
        send, held = self.cap.split(ready)
        settled.update((env.id, _held(self.cap.cap)) for env, _ in held)
        if not send:
            return BatchCall(None, (), settled)
        headers = {"Authorization": self.authorization.reveal(), "Accept": "application/json"}
        body = [event.wire(env) for env, event in send]
        call = HttpCall("POST", self.url, headers=headers, json=body)
        return BatchCall(call, tuple(env for env, _ in send), settled)

    def classify_batch(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        status = response.status_code
        if response.is_success:
            return self._imported(sent, response)
        if status == 413:
            return _too_large(sent, response, self.cap)
        words = detail(response, "error")
        if status == 400:
            return _mixpanel_refused(sent, response, words)
        return [_whole_request(response, words)] * len(sent)

    def _imported(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        body = json_object(response) or {}
        if not isinstance(body.get("num_records_imported"), int):
            return [malformed(response, "a JSON object with 'num_records_imported'")] * len(sent)
        self.cap.accepted()
        return [_mixpanel_delivered(env) for env in sent]


def _mixpanel_delivered(envelope: Envelope) -> Delivered:
    return Delivered(provider_id=mixpanel_insert_id(envelope.idempotency_key))


def _mixpanel_refused(
    sent: Sequence[Envelope], response: httpx.Response, words: str
) -> list[Outcome]:
    """A strict 400: the failed records are refused, and the others WERE imported."""
    failures = _failed_records(sent, json_object(response) or {})
    if not failures:
        return [Permanent(status_reason(response, words), status=400)] * len(sent)
    return [
        Permanent(status_reason(response, failures[i]), status=400)
        if i in failures
        else _mixpanel_delivered(env)
        for i, env in enumerate(sent)
    ]


def _failed_records(sent: Sequence[Envelope], body: Mapping[str, Any]) -> dict[int, str]:
    """Index into ``sent`` -> Mixpanel's ``field: message`` for each failed record."""
    records = body.get("failed_records")
    if not isinstance(records, list):
        return {}
    by_insert_id = {mixpanel_insert_id(env.idempotency_key): i for i, env in enumerate(sent)}
    failures: dict[int, str] = {}
    for record in records:
        if not isinstance(record, dict):
            continue
        index = record.get("index")
        if not isinstance(index, int) or not 0 <= index < len(sent):
            index = by_insert_id.get(str(record.get("insert_id")))
        if index is not None:
            failures[index] = f"{record.get('field')}: {record.get('message')}"
    return failures


# --- Amplitude -----------------------------------------------------------------

_AMPLITUDE_FIELDS = frozenset(
    {"event_type", "user_id", "device_id", "event_properties", "user_properties", "time"}
)
_AMPLITUDE_PATHS = {"httpapi": "/2/httpapi", "batch": "/batch"}
AMPLITUDE_MIN_ID_LENGTH = 5  # Amplitude's default
_EARLIEST_MS = _EARLIEST_SECONDS * 1000
# Not documented; Amplitude's SDK cuts strings at 1024. Longer keys are hashed.
_AMPLITUDE_INSERT_ID = re.compile(r"[!-~]{1,64}")
PAUSE_SECONDS = 30.0  # how long Amplitude asks a throttled user or device to pause
_INDEX_MAPS = {
    "events_with_missing_fields": "missing",
    "events_with_invalid_fields": "invalid",
    "events_with_invalid_id_lengths": "too short",
}

Who = tuple[str, str]  # ("user_id" | "device_id", the id)


def amplitude_insert_id(key: str) -> str:
    """``insert_id``: the key when it is 1 to 64 visible ASCII characters, else a hash."""
    return conforming_id(key, _AMPLITUDE_INSERT_ID)


@attrs.frozen
class AmplitudeSettings:
    api_key: SecretRef
    endpoint: Literal["httpapi", "batch"] = "httpapi"
    base_url: str = "https://api2.amplitude.com"
    min_id_length: int | None = attrs.field(
        default=None, validator=v.optional([v.instance_of(int), v.ge(1)])
    )
    batch_size: int = attrs.field(default=200, validator=_BATCH_SIZE)  # the SDK's flush size
    batch_wait_ms: int = attrs.field(default=1000, validator=_BATCH_WAIT_MS)


@attrs.frozen
class AmplitudeEvent:
    """A checked Amplitude payload; ``time`` None means the message's creation time."""

    event_type: str
    user_id: str | None
    device_id: str | None
    event_properties: Mapping[str, Any] | None
    user_properties: Mapping[str, Any] | None
    time: int | None

    @classmethod
    def parse(cls, raw: object, min_id_length: int) -> AmplitudeEvent:
        payload = fields(raw, _AMPLITUDE_FIELDS)
        user_id = _amplitude_id(payload, "user_id", min_id_length)
        device_id = _amplitude_id(payload, "device_id", min_id_length)
        if user_id is None and device_id is None:
            raise InvalidPayload("one of 'user_id' or 'device_id' is required")
        if device_id is not None and set(device_id) <= {"0", "-"}:
            raise InvalidPayload("'device_id' of all zeros is dropped by Amplitude")
        return cls(
            event_type=required_str(payload, "event_type", max_len=1024),
            user_id=user_id,
            device_id=device_id,
            event_properties=optional_mapping(payload, "event_properties"),
            user_properties=optional_mapping(payload, "user_properties"),
            time=_epoch_ms(payload),
        )

    @property
    def who(self) -> tuple[Who, ...]:
        """The user and device the event is about, as the pause table keys them."""
        pairs = (("user_id", self.user_id), ("device_id", self.device_id))
        return tuple((kind, value) for kind, value in pairs if value is not None)

    def wire(self, envelope: Envelope) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_type": self.event_type,
            "time": self.time if self.time is not None else round(envelope.created_at * 1000),
            "insert_id": amplitude_insert_id(envelope.idempotency_key),
        }
        optional = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "event_properties": self.event_properties,
            "user_properties": self.user_properties,
        }
        event.update((key, value) for key, value in optional.items() if value is not None)
        return event


def _amplitude_id(payload: Mapping[str, Any], key: str, min_length: int) -> str | None:
    value = optional_str(payload, key, max_len=1024)
    if value is not None and len(value) < min_length:
        raise InvalidPayload(
            f"{key!r} is {len(value)} characters long, at least {min_length} (min_id_length)"
        )
    return value


def _epoch_ms(payload: Mapping[str, Any]) -> int | None:
    value = payload.get("time")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < _EARLIEST_MS:
        # The lower bound catches seconds given where milliseconds are expected.
        raise InvalidPayload(
            f"'time' must be integer milliseconds since the epoch, from 1971 on; got {value!r}"
        )
    return value


@attrs.define
class Pauses:
    """Users and devices Amplitude throttled, each with the monotonic time it may resume."""

    until: dict[Who, float] = attrs.Factory(dict)

    def hold(self, who: Iterable[Who], until: float) -> None:
        for key in who:
            self.until[key] = max(until, self.until.get(key, until))

    def expire(self, now: float) -> None:
        if self.until:
            self.until = {key: at for key, at in self.until.items() if at > now}

    def longest(self, who: Iterable[Who], now: float) -> tuple[float, Who] | None:
        """The longest wait left among ``who``, and whose it is; None when none is paused."""
        waits = [(self.until[key] - now, key) for key in who if key in self.until]
        wait = max(waits, default=None)
        return wait if wait is not None and wait[0] > 0 else None


@attrs.define
class Amplitude:
    """HTTP V2 (or Batch) upload: the API key and the events in one JSON body."""

    api_key: Secret
    url: str
    min_id_length: int | None  # sent as options.min_id_length when set
    limits: BatchLimits
    cap: SizeCap
    pauses: Pauses = attrs.Factory(Pauses)
    clock: Callable[[], float] = trio.current_time

    @classmethod
    def from_settings(cls, settings: AmplitudeSettings, ctx: AdapterContext) -> Amplitude:
        url = ctx.base_url(settings.base_url) + _AMPLITUDE_PATHS[settings.endpoint]
        limits = _limits(settings.batch_size, settings.batch_wait_ms)
        api_key = ctx.secrets(settings.api_key)
        return cls(api_key, url, settings.min_id_length, limits, SizeCap(settings.batch_size))

    def parse(self, payload: object) -> AmplitudeEvent:
        return AmplitudeEvent.parse(payload, self.min_id_length or AMPLITUDE_MIN_ID_LENGTH)

    def validate(self, payload: Mapping[str, Any]) -> None:
        self.parse(payload)

    def build_batch(self, envelopes: Sequence[Envelope]) -> BatchCall:
        ready, settled = parse_all(envelopes, lambda env: self.parse(env.payload))
        free = self._unpaused(ready, settled)
        send, held = self.cap.split(free)
        settled.update((env.id, _held(self.cap.cap)) for env, _ in held)
        if not send:
            return BatchCall(None, (), settled)
        body: dict[str, Any] = {
            "api_key": self.api_key.reveal(),
            "events": [event.wire(env) for env, event in send],
        }
        if self.min_id_length is not None:
            body["options"] = {"min_id_length": self.min_id_length}
        call = HttpCall("POST", self.url, json=body)
        return BatchCall(call, tuple(env for env, _ in send), settled)

    def _unpaused(
        self, ready: list[tuple[Envelope, AmplitudeEvent]], settled: dict[int, Outcome]
    ) -> list[tuple[Envelope, AmplitudeEvent]]:
        """The events whose user and device may be sent; the others settled to wait."""
        now = self.clock()
        self.pauses.expire(now)
        free = []
        for env, event in ready:
            paused = self.pauses.longest(event.who, now)
            if paused is None:
                free.append((env, event))
                continue
            wait, (kind, value) = paused
            reason = f"paused: Amplitude throttled {kind} {value!r} (HTTP 429); {wait:.1f} s left"
            settled[env.id] = Retry(reason, taken=Taken.NO, after=wait, scope=Scope.MESSAGE)
        return free

    def classify_batch(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        status = response.status_code
        if response.is_success:
            return self._ingested(sent, response)
        if status == 413:
            return _too_large(sent, response, self.cap)
        body = json_object(response) or {}
        if status == 400:
            return _amplitude_refused(sent, response, body)
        if status == 429 and _indexes(body.get("throttled_events")):
            return self._throttled(sent, response, body)
        # A 429 that names no event: the whole integration pauses as a throttled user would.
        words = detail(response, "error")
        return [_whole_request(response, words, wait_429=PAUSE_SECONDS)] * len(sent)

    def _ingested(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        body = json_object(response) or {}
        if not isinstance(body.get("events_ingested"), int):
            return [malformed(response, "a JSON object with 'events_ingested'")] * len(sent)
        self.cap.accepted()
        return [_amplitude_delivered(env) for env in sent]

    def _throttled(
        self, sent: Sequence[Envelope], response: httpx.Response, body: Mapping[str, Any]
    ) -> list[Outcome]:
        """Pause the throttled users and devices alone; nothing of this request was ingested."""
        over_quota = _who(body, "exceeded_daily_quota_users", "user_id") | _who(
            body, "exceeded_daily_quota_devices", "device_id"
        )
        throttled = _who(body, "throttled_users", "user_id") | _who(
            body, "throttled_devices", "device_id"
        )
        # Over-quota ids pause too: else each of their new events would get
        # every request they ride in refused.
        self.pauses.hold(throttled | over_quota, self.clock() + PAUSE_SECONDS)
        listed = _indexes(body.get("throttled_events"))
        return [
            self._one_throttled(env, response, over_quota) if i in listed else _bystander(response)
            for i, env in enumerate(sent)
        ]

    def _one_throttled(
        self, envelope: Envelope, response: httpx.Response, over_quota: set[Who]
    ) -> Outcome:
        who = set(self.parse(envelope.payload).who)
        if who & over_quota:
            names = ", ".join(f"{kind} {value!r}" for kind, value in sorted(who & over_quota))
            return Permanent(status_reason(response, f"exceeded daily quota ({names})"), status=429)
        reason = status_reason(response, "user or device throttled; pausing it")
        return Retry(reason, taken=Taken.NO, after=PAUSE_SECONDS, status=429, scope=Scope.MESSAGE)


def _amplitude_delivered(envelope: Envelope) -> Delivered:
    return Delivered(provider_id=amplitude_insert_id(envelope.idempotency_key))


def _bystander(response: httpx.Response) -> Retry:
    """An event refused only because its request was: it goes again at once."""
    reason = status_reason(response, "refused with the request for other events in it")
    status = response.status_code
    return Retry(reason, taken=Taken.NO, after=0.0, status=status, scope=Scope.MESSAGE)


def _amplitude_refused(
    sent: Sequence[Envelope], response: httpx.Response, body: Mapping[str, Any]
) -> list[Outcome]:
    words = detail(response, "error", "missing_field")
    error = body.get("error")
    listed = {} if body.get("missing_field") else _listed_events(body, len(sent))
    if not listed or (isinstance(error, str) and error.startswith("Invalid API key")):
        return [Permanent(status_reason(response, words), status=400)] * len(sent)
    return [
        Permanent(status_reason(response, listed[i]), status=400)
        if i in listed
        else _bystander(response)
        for i in range(len(sent))
    ]


def _listed_events(body: Mapping[str, Any], count: int) -> dict[int, str]:
    """Index -> why, from Amplitude's per-field index maps and ``silenced_events``."""
    listed: dict[int, str] = {}
    for key, problem in _INDEX_MAPS.items():
        by_field = body.get(key)
        if not isinstance(by_field, dict):
            continue
        for field, indexes in by_field.items():
            for index in _indexes(indexes):
                listed.setdefault(index, f"{problem} {field!r} ({key})")
    for index in _indexes(body.get("silenced_events")):
        listed.setdefault(index, "silenced event (its device is silenced)")
    return {index: why for index, why in listed.items() if 0 <= index < count}


def _indexes(value: object) -> set[int]:
    if not isinstance(value, list):
        return set()
    return {i for i in value if isinstance(i, int) and not isinstance(i, bool)}


def _who(body: Mapping[str, Any], key: str, kind: str) -> set[Who]:
    ids = body.get(key)
    return {(kind, value) for value in ids} if isinstance(ids, dict) else set()


KINDS: tuple[ProviderKind, ...] = (
    batch_kind(
        "mixpanel",
        "analytics",
        MixpanelSettings,
        Mixpanel.from_settings,
        probe=CONNECT_TO_BASE_URL,
    ),
    batch_kind(
        "amplitude",
        "analytics",
        AmplitudeSettings,
        Amplitude.from_settings,
        probe=CONNECT_TO_BASE_URL,
    ),
)
