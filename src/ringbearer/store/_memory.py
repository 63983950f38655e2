"""An in-memory store with the SQLite store's semantics, for fast tests.

Every operation "commits" at once; listeners are told after each one, as the
SQLite store tells them after each commit. tests/test_store_contract.py holds
it to the SQLite store's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from .._delivery import Priority
from ._forward_core import ForwardsCore
from ._forward_deliverability import ForwardsDeliverability
from ._forward_growth import ForwardsGrowth
from ._forward_privacy import ForwardsPrivacy
from ._forward_templates import ForwardsTemplates
from ._keys import KeyHolder, admit
from ._memory_alerts import MemoryAlerts, MemoryControls
from ._memory_deliverability import MemoryDeliverability
from ._memory_growth import MemoryExperiments, MemoryGrowthRecords
from ._memory_privacy import MemoryPrivacy
from ._memory_reads import MemoryDeadLetters, MemoryQueries
from ._memory_tables import Row, Tables, new_row, settled, submitted
from ._memory_templates import MemoryTemplates
from ._model import (
    ALL_PRIORITIES,
    HELD_UNTIL,
    Accepted,
    Claimed,
    Event,
    MessageStatus,
    NewMessage,
    Settle,
    SettleKind,
    Span,
    check_transition,
)
from ._protocol import StoreListener, StoreStatistics
from ._safe import safe_settle

Handoff = Callable[[list[Claimed]], None]
_RECOVERED = {"reason": "in flight at the last stop; counted as an attempt"}


class MemoryStore(
    ForwardsCore, ForwardsDeliverability, ForwardsPrivacy, ForwardsTemplates, ForwardsGrowth
):
    """A fake :class:`~ringbearer.store.Store`; ``rows`` and ``event_log`` are there for tests.

    The deliverability, privacy, templates and growth roles' methods are those of
    their ``Forwards*`` classes.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._t = Tables(clock)
        self.rows = self._t.rows
        self.event_log = self._t.event_log
        self.counters = self._t.counters
        self._next_id = 1
        self._parked: dict[str, tuple[int, Handoff, Span]] = {}
        self._reads = MemoryQueries(self._t)
        self._controls = MemoryControls()
        self._dead = MemoryDeadLetters(self._t)
        self._alerts = MemoryAlerts()
        self._deliverability = MemoryDeliverability(self._t)
        self._privacy = MemoryPrivacy(self._t, self._deliverability)
        self._templates = MemoryTemplates(self._t)
        self._growth_records = MemoryGrowthRecords(self._t)
        self._experiments = MemoryExperiments(self._t)

    @property
    def listener(self) -> StoreListener:
        return self._t.listener

    @listener.setter
    def listener(self, listener: StoreListener) -> None:
        self._t.listener = listener

    # -- Intake, Dispatch, Settling -------------------------------------------------------

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        await trio.lowlevel.checkpoint()
        now = self._t.clock()
        admission = admit(messages, self._t.keys, self._next_id)
        for fresh in admission.fresh:
            m, row = fresh.message, new_row(fresh, now)
            self.rows[row.id] = row
            self._t.keys[fresh.key] = KeyHolder(row.id, m.target, m.payload)
            self.counters.queued(m.target, m.priority, 1)
            self._t.log(submitted(row))
        self._next_id += len(admission.fresh)
        targets = {f.message.target for f in admission.fresh}
        for target in targets:
            self._serve_parked(target)
        if targets:
            self._t.listener.submitted(targets)
        return admission.accepted

    def _serve_parked(self, target: str) -> None:
        parked = self._parked.pop(target, None)
        if parked is not None:
            claimed = self._take(target, parked[0], parked[2])
            if claimed:
                parked[1](claimed)
            else:
                self._parked[target] = parked

    async def claim(self, target: str, limit: int, span: Span = ALL_PRIORITIES) -> list[Claimed]:
        await trio.lowlevel.checkpoint()
        return self._take(target, limit, span)

    def _take(self, target: str, limit: int, span: Span) -> list[Claimed]:
        now = self._t.clock()
        due = sorted(
            (
                r
                for r in self.rows.values()
                if r.target == target
                and r.status is MessageStatus.QUEUED
                and span[0] <= r.priority <= span[1]
                and r.next_attempt_at <= now
            ),
            key=_claim_order,
        )[:limit]
        for r in due:
            check_transition(r.status, MessageStatus.INFLIGHT)
            r.status, r.updated_at = MessageStatus.INFLIGHT, now
            self.counters.queued(target, r.priority, -1)
            self.counters.inflight(target, 1)
        return [_claimed(r) for r in due]

    def park_claim(
        self, target: str, limit: int, handoff: Handoff, span: Span = ALL_PRIORITIES
    ) -> None:
        self._parked[target] = (limit, handoff, span)

    def unpark_claim(self, target: str) -> None:
        self._parked.pop(target, None)

    async def record(self, settles: Sequence[Settle]) -> None:
        await trio.lowlevel.checkpoint()
        now = self._t.clock()
        settles = [safe_settle(s) for s in settles]  # as the SQLite store keeps them
        for s in settles:
            self._settle(s, now)
        if settles:
            self._t.listener.settled(settles)

    def _settle(self, s: Settle, now: float) -> None:
        r = self.rows[s.message_id]
        check_transition(r.status, s.kind.status)
        r.status, r.updated_at = s.kind.status, now
        held = s.kind is SettleKind.HELD  # due never, until its hold is released
        r.attempts, r.next_attempt_at = s.attempts, HELD_UNTIL if held else s.next_attempt_at
        r.held = (s.held or "") if held else None
        r.route_index, r.member_attempts = s.route_index, s.member_attempts
        r.integration, r.last_error = s.integration, s.reason
        r.provider_id = r.provider_id if s.provider_id is None else s.provider_id
        if r.status is MessageStatus.DELIVERED:
            r.delivered_at = now
        # As in SQLite, the settle says where the message was: its target and priority.
        self.counters.inflight(s.target, -1)
        if r.status is MessageStatus.QUEUED:
            self.counters.queued(s.target, s.priority, 1)
        for event in settled(s, r, now):
            self._t.log(event)

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        await trio.lowlevel.checkpoint()
        self.rows[message_id].progress[integration] = dict(progress)
        detail = {"progress": dict(progress)}
        self._t.log(Event("progressed", self._t.clock(), message_id, integration, detail))

    # -- Lifecycle ------------------------------------------------------------------------

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(commits=0, committed_ops=0, pending_ops=0)

    async def recover_inflight(self) -> int:
        await trio.lowlevel.checkpoint()
        now = self._t.clock()
        stuck = [r for r in self.rows.values() if r.status is MessageStatus.INFLIGHT]
        for r in stuck:
            r.status, r.updated_at = MessageStatus.QUEUED, now
            r.attempts += 1  # an ambiguous attempt, as in the SQLite store
            r.member_attempts += 1
            self.counters.inflight(r.target, -1)
            self.counters.queued(r.target, r.priority, 1)
            self._t.log(Event("recovered", now, r.id, None, dict(_RECOVERED)))
        return len(stuck)

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()

    # -- AuditLog (controls, queries, dead letters, alerts: ForwardsCore) -----------------

    def append_event(self, event: Event) -> None:
        self._t.log(event)

    async def wait_for_event(self, kind: str) -> Event:
        """Tests: wait until an event of ``kind`` is in the log."""
        while True:
            for event in self.event_log:
                if event.kind == kind:
                    return event
            await self._t.appended.wait()

    def by_status(self, status: MessageStatus) -> list[int]:
        """Tests: the ids of the messages in ``status``."""
        return [r.id for r in self.rows.values() if r.status is status]


def _claim_order(r: Row) -> tuple[Priority, bool, float, int]:
    """Priority; then those with a deadline, nearest first; then the rest by due time; then id."""
    if r.deliver_by is not None:
        return (r.priority, False, r.deliver_by, r.id)
    return (r.priority, True, r.next_attempt_at, r.id)


def _claimed(r: Row) -> Claimed:
    return Claimed(
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
        r.category,
        r.recipient,
        r.domain,
    )
