"""An in-memory store with the SQLite store's semantics, for fast tests.

Every operation "commits" at once; listeners are told after each one, as the
SQLite store tells them after each commit.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from .._delivery import Priority
from ._model import (
    ALL_PRIORITIES,
    Accepted,
    BreakerRecord,
    Claimed,
    Counters,
    DeadLetter,
    Event,
    MessageStatus,
    NewMessage,
    Settle,
    Span,
    check_transition,
)
from ._protocol import NullListener, StoreListener, StoreStatistics


@attrs.define
class _Row:
    id: int
    target: str
    priority: Priority
    payload: dict[str, Any]
    key: str
    created_at: float
    status: MessageStatus = MessageStatus.QUEUED
    attempts: int = 0
    route_index: int = 0
    member_attempts: int = 0
    next_attempt_at: float = 0.0
    integration: str | None = None
    last_error: str | None = None
    provider_id: str | None = None
    progress: dict[str, dict[str, Any]] = attrs.Factory(dict)
    deliver_by: float | None = None


class MemoryStore:
    """A fake :class:`~ringbearer.store.Store`; ``rows`` is there for tests to inspect."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self.rows: dict[int, _Row] = {}
        self._keys: dict[tuple[str, str], int] = {}
        self.event_log: list[Event] = []
        self._breakers: dict[str, BreakerRecord] = {}
        self._paused: set[str] = set()
        self.counters = Counters()
        self.listener: StoreListener = NullListener()
        self._appended = trio.Event()
        self._parked: dict[str, tuple[int, Callable[[list[Claimed]], None], Span]] = {}

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        await trio.lowlevel.checkpoint()
        now, accepted, targets = self._clock(), [], set()
        for m in messages:
            key = m.idempotency_key or uuid.uuid4().hex
            earlier = self._keys.get((m.target, key))
            if earlier is not None:
                accepted.append(Accepted(earlier, key, duplicate=True))
                continue
            row = _Row(
                next(self._ids),
                m.target,
                m.priority,
                m.payload,
                key,
                now,
                next_attempt_at=now,
                deliver_by=m.deliver_by,
            )
            self.rows[row.id] = row
            self._keys[(m.target, key)] = row.id
            self.counters.queued(m.target, m.priority, 1)
            self.event_log.append(Event("submitted", now, row.id))
            accepted.append(Accepted(row.id, key))
            targets.add(m.target)
        for target in targets:
            parked = self._parked.pop(target, None)
            if parked is not None:
                claimed = await self.claim(target, parked[0], parked[2])
                if claimed:
                    parked[1](claimed)
                else:
                    self._parked[target] = parked
        self.listener.submitted(targets)
        return accepted

    async def claim(self, target: str, limit: int, span: Span = ALL_PRIORITIES) -> list[Claimed]:
        await trio.lowlevel.checkpoint()
        now = self._clock()
        due = sorted(
            (
                r
                for r in self.rows.values()
                if r.target == target
                and r.status is MessageStatus.QUEUED
                and span[0] <= r.priority <= span[1]
                and r.next_attempt_at <= now
            ),
            key=lambda r: (
                r.priority,
                r.deliver_by is None,
                r.deliver_by or 0.0,
                r.next_attempt_at,
                r.id,
            ),
        )[:limit]
        for r in due:
            check_transition(r.status, MessageStatus.INFLIGHT)
            r.status = MessageStatus.INFLIGHT
            self.counters.queued(target, r.priority, -1)
            self.counters.inflight(target, 1)
        return [
            Claimed(
                r.id,
                r.target,
                r.priority,
                r.payload,
                r.key,
                r.attempts,
                r.created_at,
                r.route_index,
                r.member_attempts,
                {name: dict(steps) for name, steps in r.progress.items()},
                r.deliver_by,
            )
            for r in due
        ]

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        await trio.lowlevel.checkpoint()
        return {i: self.rows[i].status.value for i in ids if i in self.rows}

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        await trio.lowlevel.checkpoint()
        open_ = (MessageStatus.QUEUED, MessageStatus.INFLIGHT)
        found = [
            (r.id, r.target, r.deliver_by)
            for r in self.rows.values()
            if r.deliver_by is not None and r.status in open_ and r.deliver_by < wall
        ]
        return sorted(found, key=lambda f: f[2])

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        await trio.lowlevel.checkpoint()
        oldest: dict[tuple[str, Priority], float] = {}
        for r in self.rows.values():
            if r.status is MessageStatus.QUEUED:
                key = (r.target, r.priority)
                oldest[key] = min(oldest.get(key, r.created_at), r.created_at)
        return oldest

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        await trio.lowlevel.checkpoint()
        times = [
            e.at
            for e in self.event_log
            if e.kind == "attempted" and e.integration == integration and e.at >= since
        ]
        return sorted(times, reverse=True)[:limit]

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        await trio.lowlevel.checkpoint()
        self.rows[message_id].progress[integration] = dict(progress)
        detail = {"progress": dict(progress)}
        self.append_event(Event("progressed", self._clock(), message_id, integration, detail))

    async def record(self, settles: Sequence[Settle]) -> None:
        await trio.lowlevel.checkpoint()
        for s in settles:
            r = self.rows[s.message_id]
            check_transition(r.status, s.kind.status)
            r.status = s.kind.status
            r.attempts, r.next_attempt_at = s.attempts, s.next_attempt_at
            r.route_index, r.member_attempts = s.route_index, s.member_attempts
            r.integration, r.last_error = s.integration, s.reason
            r.provider_id = s.provider_id or r.provider_id
            self.counters.inflight(s.target, -1)
            if s.kind.status is MessageStatus.QUEUED:
                self.counters.queued(s.target, r.priority, 1)
            if s.attempt is not None:
                self.event_log.append(
                    Event("attempted", s.attempt.started_at, s.message_id, s.attempt.integration)
                )
            self.event_log.append(
                Event(
                    s.kind.value,
                    self._clock(),
                    s.message_id,
                    s.integration,
                    {"reason": s.reason} if s.reason else None,
                )
            )
        self.listener.settled(settles)

    def park_claim(
        self,
        target: str,
        limit: int,
        handoff: Callable[[list[Claimed]], None],
        span: Span = ALL_PRIORITIES,
    ) -> None:
        self._parked[target] = (limit, handoff, span)

    def unpark_claim(self, target: str) -> None:
        self._parked.pop(target, None)

    async def next_due(self, target: str) -> float | None:
        times = [
            r.next_attempt_at
            for r in self.rows.values()
            if r.target == target and r.status is MessageStatus.QUEUED
        ]
        return min(times) if times else None

    async def recover_inflight(self) -> int:
        stuck = [r for r in self.rows.values() if r.status is MessageStatus.INFLIGHT]
        for r in stuck:
            r.status = MessageStatus.QUEUED
            r.attempts += 1  # an ambiguous attempt, as in the SQLite store
            r.member_attempts += 1
            self.counters.inflight(r.target, -1)
            self.counters.queued(r.target, r.priority, 1)
        return len(stuck)

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()

    def append_event(self, event: Event) -> None:
        self.event_log.append(event)
        self._appended.set()
        self._appended = trio.Event()

    async def wait_for_event(self, kind: str) -> Event:
        """Tests: wait until an event of ``kind`` is in the log."""
        while True:
            for event in self.event_log:
                if event.kind == kind:
                    return event
            await self._appended.wait()

    def save_breaker(self, record: BreakerRecord) -> None:
        self._breakers[record.integration] = record

    async def breakers(self) -> dict[str, BreakerRecord]:
        return dict(self._breakers)

    async def set_paused(self, name: str, paused: bool) -> None:
        (self._paused.add if paused else self._paused.discard)(name)

    async def paused(self) -> set[str]:
        return set(self._paused)

    async def events(
        self, *, since: float | None = None, message_id: int | None = None, limit: int = 1000
    ) -> list[Event]:
        found = [
            e
            for e in self.event_log
            if (since is None or e.at >= since)
            and (message_id is None or e.message_id == message_id)
        ]
        return found[:limit]

    async def dead_letters(self, *, limit: int = 1000) -> list[DeadLetter]:
        dead = [r for r in self.rows.values() if r.status is MessageStatus.DEAD]
        return [
            DeadLetter(
                r.id, r.target, r.integration, r.last_error or "", 0.0, r.attempts, r.payload
            )
            for r in dead[:limit]
        ]

    async def message(self, message_id: int) -> dict[str, Any] | None:
        r = self.rows.get(message_id)
        return None if r is None else attrs.asdict(r)

    async def find_events(
        self,
        *,
        since: float | None = None,
        message_id: int | None = None,
        kinds: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[Event]:
        found = await self.events(since=since, message_id=message_id, limit=len(self.event_log))
        return [e for e in found if not kinds or e.kind in kinds][:limit]

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        await trio.lowlevel.checkpoint()
        r = self.rows.get(message_id)
        return None if r is None or r.status is not MessageStatus.DEAD else self._letter(r)

    async def find_dead(self, *, target: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        await trio.lowlevel.checkpoint()
        return [self._letter(r) for r in self._dead(None, target, 0, None)[:limit]]

    async def count_dead(
        self, *, target: str | None = None, after: int = 0, dead_before: float | None = None
    ) -> int:
        await trio.lowlevel.checkpoint()
        return len(self._dead(None, target, after, dead_before))

    async def replay_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        await trio.lowlevel.checkpoint()
        now, chosen = self._clock(), self._dead(ids, target, after, None)[:limit]
        for r in chosen:
            self.append_event(Event("replayed", now, r.id, r.integration, self._detail(r, by)))
            check_transition(r.status, MessageStatus.QUEUED)
            r.status, r.attempts, r.member_attempts, r.route_index = MessageStatus.QUEUED, 0, 0, 0
            r.next_attempt_at, r.last_error = now, None
            self.counters.queued(r.target, r.priority, 1)
        if chosen:
            self.listener.submitted({r.target for r in chosen})
        return [r.id for r in chosen]

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
        await trio.lowlevel.checkpoint()
        now, chosen = self._clock(), self._dead(ids, target, after, dead_before)[:limit]
        for r in chosen:
            self.append_event(Event("purged", now, r.id, r.integration, self._detail(r, by)))
            del self.rows[r.id], self._keys[(r.target, r.key)]
        return [r.id for r in chosen]

    def _dead(
        self, ids: Sequence[int] | None, target: str | None, after: int, dead_before: float | None
    ) -> list[_Row]:
        """Dead letters by id, selected as the SQLite store's ``_dead_where`` selects them."""
        return [
            r
            for r in sorted(self.rows.values(), key=lambda r: r.id)
            if r.status is MessageStatus.DEAD
            and r.id > after
            and (ids is None or r.id in ids)
            and (target is None or r.target == target)
            and (dead_before is None or self._dead_at(r.id) <= dead_before)
        ]

    def _dead_at(self, message_id: int) -> float:
        """When a message was last dead-lettered, from the audit log (rows keep no time)."""
        return max(
            (
                e.at
                for e in self.event_log
                if e.message_id == message_id and e.kind == "dead_lettered"
            ),
            default=0.0,
        )

    def _letter(self, r: _Row) -> DeadLetter:
        at = self._dead_at(r.id)
        return DeadLetter(
            r.id, r.target, r.integration, r.last_error or "", at, r.attempts, r.payload
        )

    @staticmethod
    def _detail(r: _Row, by: str) -> dict[str, Any]:
        return {"by": by, "target": r.target, "reason": r.last_error, "attempts": r.attempts}

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(commits=0, committed_ops=0, pending_ops=0)

    def by_status(self, status: MessageStatus) -> list[int]:
        return [r.id for r in self.rows.values() if r.status is status]
