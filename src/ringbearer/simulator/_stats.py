"""What a simulated provider saw: requests, accepted sends and idempotency keys."""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Mapping

import attrs
import trio

from .._httpserver import HttpRequest

# Headers that carry a credential: kept out of the log (auth keeps its form).
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
SEEN_MAX = 50  # requests kept per provider for /_sim/requests
_BODY_MAX = 64 * 1024


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
    """A provider's counters at one moment, as ``GET /_sim/stats`` shows them."""

    requests: int
    accepted: int
    unique_keys: int
    duplicates: int
    status_counts: dict[str, int]


@attrs.define
class Stats:
    """Counters of one provider, updated once per request."""

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    # Keys only, never bodies: a long benchmark must not grow with payloads.
    # Each key maps to how many accepted requests carried it.
    keys: dict[str, int] = attrs.Factory(dict)
    status_counts: dict[str, int] = attrs.Factory(dict)
    seen: deque[SeenRequest] = attrs.Factory(lambda: deque(maxlen=SEEN_MAX))
    _changed: trio.Event = attrs.Factory(trio.Event)

    def record(self, label: str, accepted: bool, key: str | None) -> None:
        """Count one request: its status (or "reset"/"hang") and, if accepted, its key."""
        self.requests += 1
        self.status_counts[label] = self.status_counts.get(label, 0) + 1
        self._changed.set()
        self._changed = trio.Event()
        if not accepted:
            return
        self.accepted += 1
        if key is None:
            return
        seen = self.keys.get(key, 0)
        if seen:
            self.duplicates += 1
        self.keys[key] = seen + 1

    async def wait_accepted(self, count: int) -> None:
        """Return once at least ``count`` requests were accepted (tests wait on this)."""
        while self.accepted < count:
            await self._changed.wait()

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            requests=self.requests,
            accepted=self.accepted,
            unique_keys=len(self.keys),
            duplicates=self.duplicates,
            status_counts=dict(sorted(self.status_counts.items())),
        )
