"""What a simulated provider saw: requests, accepted sends and idempotency keys."""

from __future__ import annotations

import attrs
import trio


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
