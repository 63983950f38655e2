"""The core roles' face on a store: controls, queries, dead-letter tools and alert state,
each method handing over to the part that does it (as ``_forward_*`` do for the others).

Every store (in memory, SQLite, PostgreSQL) presents these roles the same way; what
differs is the parts it composes, so the forwarding is written once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._delivery import Priority
from ._alert_model import AlertRecord
from ._model import BreakerRecord, DeadLetter, Event, MessageRecord, OverrideRecord
from ._protocol import AlertState


class ControlsPart(Protocol):
    """The part that keeps breakers, pauses and the wedding-day override."""

    def save_breaker(self, record: BreakerRecord) -> None: ...

    async def breakers(self) -> dict[str, BreakerRecord]: ...

    async def set_paused(self, name: str, paused: bool) -> None: ...

    async def paused(self) -> set[str]: ...

    async def set_mode_override(self, override: OverrideRecord | None) -> None: ...

    async def mode_override(self) -> OverrideRecord | None: ...


class ReadsPart(Protocol):
    """The part that answers the reads (each argument given: the store's methods default them)."""

    async def events(
        self,
        *,
        since: float | None,
        message_id: int | None,
        kinds: Sequence[str],
        before: int | None,
        limit: int,
    ) -> list[Event]: ...

    async def dead_letters(
        self, *, target: str | None, before: int | None, limit: int
    ) -> list[DeadLetter]: ...

    async def dead_letter(self, message_id: int) -> DeadLetter | None: ...

    async def message(self, message_id: int) -> MessageRecord | None: ...

    async def holding_key(self, key: str) -> int | None: ...

    async def states(self, ids: Sequence[int]) -> dict[int, str]: ...

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]: ...

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]: ...

    async def next_due(self, target: str) -> float | None: ...

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]: ...


class DeadPart(Protocol):
    """The part with the dead-letter tools (each argument given, as for ``ReadsPart``)."""

    async def count_dead(
        self, *, target: str | None, after: int, dead_before: float | None
    ) -> int: ...

    async def replay_dead(
        self, ids: Sequence[int] | None, *, target: str | None, after: int, limit: int, by: str
    ) -> list[int]: ...

    async def purge_dead(
        self,
        ids: Sequence[int] | None,
        *,
        target: str | None,
        after: int,
        dead_before: float | None,
        limit: int,
        by: str,
    ) -> list[int]: ...


class ForwardsControls:
    """A store's :class:`Controls` methods, forwarded to ``_controls`` (attempts: ``_reads``)."""

    _controls: ControlsPart
    _reads: ReadsPart

    def save_breaker(self, record: BreakerRecord) -> None:
        self._controls.save_breaker(record)

    async def breakers(self) -> dict[str, BreakerRecord]:
        return await self._controls.breakers()

    async def set_paused(self, name: str, paused: bool) -> None:
        await self._controls.set_paused(name, paused)

    async def paused(self) -> set[str]:
        return await self._controls.paused()

    async def set_mode_override(self, override: OverrideRecord | None) -> None:
        await self._controls.set_mode_override(override)

    async def mode_override(self) -> OverrideRecord | None:
        return await self._controls.mode_override()

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        return await self._reads.attempt_times(integration, since=since, limit=limit)


class ForwardsQueries:
    """A store's :class:`Queries` methods (and ``next_due``), forwarded to ``_reads``."""

    _reads: ReadsPart

    async def next_due(self, target: str) -> float | None:
        return await self._reads.next_due(target)

    async def events(
        self,
        *,
        since: float | None = None,
        message_id: int | None = None,
        kinds: Sequence[str] = (),
        before: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        return await self._reads.events(
            since=since, message_id=message_id, kinds=kinds, before=before, limit=limit
        )

    async def dead_letters(
        self, *, target: str | None = None, before: int | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        return await self._reads.dead_letters(target=target, before=before, limit=limit)

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        return await self._reads.dead_letter(message_id)

    async def message(self, message_id: int) -> MessageRecord | None:
        return await self._reads.message(message_id)

    async def holding_key(self, key: str) -> int | None:
        return await self._reads.holding_key(key)

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        return await self._reads.states(ids)

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        return await self._reads.deadlines_before(wall)

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        return await self._reads.oldest_queued()


class ForwardsDeadLetters:
    """A store's :class:`DeadLetterOps` methods, forwarded to ``_dead``."""

    _dead: DeadPart

    async def count_dead(
        self, *, target: str | None = None, after: int = 0, dead_before: float | None = None
    ) -> int:
        return await self._dead.count_dead(target=target, after=after, dead_before=dead_before)

    async def replay_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        return await self._dead.replay_dead(ids, target=target, after=after, limit=limit, by=by)

    async def purge_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        dead_before: float | None = None,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        return await self._dead.purge_dead(
            ids, target=target, after=after, dead_before=dead_before, limit=limit, by=by
        )


class ForwardsAlerts:
    """A store's :class:`AlertState` methods, forwarded to ``_alerts``."""

    _alerts: AlertState

    async def save_alert(self, alert: AlertRecord) -> None:
        await self._alerts.save_alert(alert)

    async def open_alerts(self) -> list[AlertRecord]:
        return await self._alerts.open_alerts()

    async def last_alert_id(self) -> int:
        return await self._alerts.last_alert_id()


class ForwardsCore(ForwardsControls, ForwardsQueries, ForwardsDeadLetters, ForwardsAlerts):
    """Every core role above, for a store to inherit at once."""
