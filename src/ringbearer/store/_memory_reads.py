"""The in-memory store's queries and dead-letter tools, over its tables."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .._delivery import Priority
from ._memory_tables import Tables, operator_detail
from ._model import DeadLetter, Event, MessageRecord, MessageStatus, check_transition

_OPEN = (MessageStatus.QUEUED, MessageStatus.INFLIGHT)


class MemoryQueries:
    """Reads, answered as the SQLite store's reader answers them."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def events(
        self,
        *,
        since: float | None,
        message_id: int | None,
        kinds: Sequence[str],
        before: int | None,
        limit: int,
    ) -> list[Event]:
        await trio.lowlevel.checkpoint()
        found = [
            e
            for e in reversed(self._t.event_log)
            if (since is None or e.at >= since)
            and (message_id is None or e.message_id == message_id)
            and (not kinds or e.kind in kinds)
            and (before is None or (e.id or 0) < before)
        ]
        return found[:limit]

    async def dead_letters(
        self, *, target: str | None, before: int | None, limit: int
    ) -> list[DeadLetter]:
        await trio.lowlevel.checkpoint()
        dead = self._t.dead(None, target, 0, None)
        return [r.letter() for r in reversed(dead) if before is None or r.id < before][:limit]

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        await trio.lowlevel.checkpoint()
        r = self._t.rows.get(message_id)
        return None if r is None or r.status is not MessageStatus.DEAD else r.letter()

    async def message(self, message_id: int) -> MessageRecord | None:
        await trio.lowlevel.checkpoint()
        r = self._t.rows.get(message_id)
        return None if r is None else r.record()

    async def holding_key(self, key: str) -> int | None:
        await trio.lowlevel.checkpoint()
        holder = self._t.keys.get(key)
        return None if holder is None else holder.id

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        await trio.lowlevel.checkpoint()
        return {i: self._t.rows[i].status.value for i in ids if i in self._t.rows}

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        await trio.lowlevel.checkpoint()
        found = [
            (r.id, r.target, r.deliver_by)
            for r in self._t.rows.values()
            if r.deliver_by is not None and r.status in _OPEN and r.deliver_by < wall
        ]
        return sorted(found, key=lambda f: (f[2], f[0]))

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        await trio.lowlevel.checkpoint()
        oldest: dict[tuple[str, Priority], float] = {}
        for r in self._t.rows.values():
            if r.status is MessageStatus.QUEUED and r.held is None:  # held: waits on purpose
                key = (r.target, r.priority)
                # Never attempted: waiting since it was due (scheduled), as SQLite reads it.
                since = max(r.created_at, r.next_attempt_at) if r.attempts == 0 else r.created_at
                oldest[key] = min(oldest.get(key, since), since)
        return oldest

    async def next_due(self, target: str) -> float | None:
        await trio.lowlevel.checkpoint()
        times = [
            r.next_attempt_at
            for r in self._t.rows.values()
            if r.target == target and r.status is MessageStatus.QUEUED and r.held is None
        ]
        return min(times) if times else None

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        await trio.lowlevel.checkpoint()
        times = [
            e.at
            for e in self._t.event_log
            if e.kind == "attempted" and e.integration == integration and e.at >= since
        ]
        return sorted(times, reverse=True)[:limit]


class MemoryDeadLetters:
    """Count, replay and purge, selecting as the SQLite store selects."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def count_dead(self, *, target: str | None, after: int, dead_before: float | None) -> int:
        await trio.lowlevel.checkpoint()
        return len(self._t.dead(None, target, after, dead_before))

    async def replay_dead(
        self, ids: Sequence[int] | None, *, target: str | None, after: int, limit: int, by: str
    ) -> list[int]:
        await trio.lowlevel.checkpoint()
        now, chosen = self._t.clock(), self._t.dead(ids, target, after, None)[:limit]
        for r in chosen:
            self._t.log(Event("replayed", now, r.id, r.integration, operator_detail(r, by)))
            check_transition(r.status, MessageStatus.QUEUED)
            r.status, r.attempts, r.member_attempts, r.route_index = MessageStatus.QUEUED, 0, 0, 0
            r.next_attempt_at, r.updated_at, r.last_error = now, now, None
            self._t.counters.queued(r.target, r.priority, 1)
        if chosen:
            self._t.listener.submitted({r.target for r in chosen})
        return [r.id for r in chosen]

    async def purge_dead(
        self,
        ids: Sequence[int] | None,
        *,
        target: str | None,
        after: int,
        dead_before: float | None,
        limit: int,
        by: str,
    ) -> list[int]:
        await trio.lowlevel.checkpoint()
        now, chosen = self._t.clock(), self._t.dead(ids, target, after, dead_before)[:limit]
        for r in chosen:
            self._t.log(Event("purged", now, r.id, r.integration, operator_detail(r, by)))
            del self._t.rows[r.id]
            self._t.keys.pop(r.key, None)  # a purged message's key is free again, as in SQLite
        return [r.id for r in chosen]
