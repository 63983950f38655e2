"""What a simulated provider saw: requests, accepted sends, keys, recipients and events."""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Mapping, Sequence

import attrs
import trio

from .._httpserver import HttpRequest
from ._mail import Sent, SentMail

# Headers that carry a credential: kept out of the log (auth keeps its form).
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
SEEN_MAX = 50  # requests kept per provider for /_sim/requests
_BODY_MAX = 64 * 1024
RECIPIENTS_MAX = 100_000  # addresses counted per provider; later new ones are not


@attrs.frozen
class SeenRequest:
    """One request as received, for comparing clients: credentials reduced to their form.

    ``auth`` is the ``Authorization`` scheme ("Basic", "Bearer", "OAuth"),
    and for Basic the user name too ("Basic api"); no secret is kept.
    """

    method: str
    path: str
    query: str
    content_type: str
    auth: str | None
    headers: Mapping[str, str]
    body: str

    @classmethod
    def of(cls, request: HttpRequest, path: str) -> SeenRequest:
        headers = {k: v for k, v in request.headers.items() if k not in _CREDENTIAL_HEADERS}
        return cls(
            method=request.method,
            path=path,
            query=request.query,
            content_type=request.headers.get("content-type", ""),
            auth=_auth_form(request.headers.get("authorization")),
            headers=headers,
            body=request.body[:_BODY_MAX].decode("utf-8", "replace"),
        )


def _auth_form(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "basic":
        return scheme
    try:
        user = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return scheme
    return f"{scheme} {user}"


@attrs.frozen
class StatsSnapshot:
    """A provider's counters at one moment, as ``GET /_sim/stats`` shows them.

    The ``events_`` counters are the delivery events it sent back: ``sent``
    answered 2xx, ``failed`` given up after its retries, ``dropped`` never
    queued (the queue was full); ``event_retries`` counts repeated attempts.
    """

    requests: int
    accepted: int
    unique_keys: int
    duplicates: int
    status_counts: dict[str, int]
    events_sent: int = 0
    events_failed: int = 0
    events_dropped: int = 0
    event_retries: int = 0


@attrs.define
class Stats:
    """Counters of one provider, updated once per request and once per event it sends."""

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    # Keys only, never bodies: a long benchmark must not grow with payloads.
    # Each key maps to how many accepted requests carried it.
    keys: dict[str, int] = attrs.Factory(dict)
    status_counts: dict[str, int] = attrs.Factory(dict)
    seen: deque[SeenRequest] = attrs.Factory(lambda: deque(maxlen=SEEN_MAX))
    # Sends per recipient address (or phone number), up to RECIPIENTS_MAX addresses.
    recipients: dict[str, int] = attrs.Factory(dict)
    mails: deque[SentMail] = attrs.Factory(lambda: deque(maxlen=SEEN_MAX))
    events_sent: int = 0
    events_failed: int = 0
    events_dropped: int = 0
    event_retries: int = 0
    _changed: trio.Event = attrs.Factory(trio.Event)

    def record(
        self, label: str, accepted: bool, key: str | None, sent: Sequence[Sent] = ()
    ) -> None:
        """Count one request: its status (or "reset"/"hang") and, if accepted, its key.

        ``sent`` is what it made the provider send, counted per recipient.
        """
        self.requests += 1
        self.status_counts[label] = self.status_counts.get(label, 0) + 1
        self._changed_now()
        for item in sent:
            self._count_recipients(item)
        if not accepted:
            return
        self.accepted += 1
        if key is None:
            return
        seen = self.keys.get(key, 0)
        if seen:
            self.duplicates += 1
        self.keys[key] = seen + 1

    def _count_recipients(self, item: Sent) -> None:
        if isinstance(item, SentMail):
            self.mails.append(item)
        counts = self.recipients
        for address in item.recipients:
            seen = counts.get(address)
            if seen is not None:
                counts[address] = seen + 1
            elif len(counts) < RECIPIENTS_MAX:  # bounded: a long run stops adding addresses
                counts[address] = 1

    def event_settled(self, delivered: bool) -> None:
        """One event was answered 2xx, or given up."""
        if delivered:
            self.events_sent += 1
        else:
            self.events_failed += 1
        self._changed_now()

    def event_retried(self) -> None:
        self.event_retries += 1

    def events_dropped_now(self, count: int) -> None:
        """``count`` events were never queued: the relay's queue was full."""
        self.events_dropped += count
        self._changed_now()

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_accepted(self, count: int) -> None:
        """Return once at least ``count`` requests were accepted (tests wait on this)."""
        while self.accepted < count:
            await self._changed.wait()

    async def wait_events(self, count: int) -> None:
        """Return once at least ``count`` events were sent or given up (tests wait on this)."""
        while self.events_sent + self.events_failed < count:
            await self._changed.wait()

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            requests=self.requests,
            accepted=self.accepted,
            unique_keys=len(self.keys),
            duplicates=self.duplicates,
            status_counts=dict(sorted(self.status_counts.items())),
            events_sent=self.events_sent,
            events_failed=self.events_failed,
            events_dropped=self.events_dropped,
            event_retries=self.event_retries,
        )
