"""What the in-memory store keeps: its rows, keys and audit log, written as SQLite writes them.

The audit events of a message's life are those the SQLite schema's triggers
write, with the same details, so a test reads the same log from either store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from .._delivery import Priority
from ._keys import Fresh, KeyHolder
from ._model import Counters, DeadLetter, Event, MessageRecord, MessageStatus, Settle
from ._protocol import NullListener, StoreListener


@attrs.define
class Row:
    """One message, as the SQLite store's ``messages`` table keeps it."""

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
    updated_at: float = 0.0
    delivered_at: float | None = None
    category: str | None = None
    recipient: str | None = None
    domain: str | None = None
    held: str | None = None  # the key of the hold it waits under
    subjects: tuple[str, ...] = ()

    def record(self) -> MessageRecord:
        return MessageRecord(
            id=self.id,
            target=self.target,
            integration=self.integration,
            priority=self.priority.label,
            idempotency_key=self.key,
            status=self.status.value,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            provider_id=self.provider_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            delivered_at=self.delivered_at,
        )

    def letter(self) -> DeadLetter:
        return DeadLetter(
            self.id,
            self.target,
            self.integration,
            self.last_error or "",
            self.updated_at,
            self.attempts,
            self.payload,
        )


@attrs.define
class Tables:
    """The in-memory store's state, shared by its parts."""

    clock: Callable[[], float]
    rows: dict[int, Row] = attrs.Factory(dict)
    keys: dict[str, KeyHolder] = attrs.Factory(dict)
    event_log: list[Event] = attrs.Factory(list)
    counters: Counters = attrs.Factory(Counters)
    listener: StoreListener = attrs.Factory(NullListener)
    appended: trio.Event = attrs.Factory(trio.Event)

    def log(self, event: Event) -> None:
        """Append to the audit log, numbering the event as SQLite numbers its rows."""
        self.event_log.append(attrs.evolve(event, id=len(self.event_log) + 1))
        self.appended.set()
        self.appended = trio.Event()

    def dead(
        self, ids: Sequence[int] | None, target: str | None, after: int, dead_before: float | None
    ) -> list[Row]:
        """Dead letters by id, selected as the SQLite store's ``dead_where`` selects them."""
        wanted = None if ids is None else set(ids)
        return [
            r
            for r in sorted(self.rows.values(), key=lambda r: r.id)
            if r.status is MessageStatus.DEAD
            and r.id > after
            and (wanted is None or r.id in wanted)
            and (target is None or r.target == target)
            and (dead_before is None or r.updated_at <= dead_before)
        ]


def new_row(fresh: Fresh, now: float) -> Row:
    """A submitted message's row: queued, due now or when it is scheduled."""
    m = fresh.message
    row = Row(fresh.id, m.target, m.priority, m.payload, fresh.key, now)
    row.next_attempt_at = now if m.not_before is None else max(now, m.not_before)
    row.updated_at, row.deliver_by = now, m.deliver_by
    row.category, row.recipient, row.domain = m.category, m.recipient, m.domain
    row.subjects = m.subjects
    return row


def submitted(row: Row) -> Event:
    """The ``submitted`` event, as the SQLite trigger writes it."""
    detail: dict[str, Any] = {"target": row.target, "key": row.key, "priority": row.priority.label}
    if row.category is not None:
        detail["category"] = row.category
    if row.next_attempt_at > row.created_at:  # scheduled
        detail["not_before"] = row.next_attempt_at
    return Event("submitted", row.created_at, row.id, None, detail)


def settled(s: Settle, row: Row, now: float) -> list[Event]:
    """A settle's events (its attempt, if made, then the change), as the triggers write them."""
    events = []
    if s.attempt is not None:
        detail = {
            "attempt": s.attempts,
            "outcome": s.attempt.outcome,
            "status": s.attempt.status,
            "seconds": round(s.attempt.duration, 6),
            "detail": s.reason,
        }
        events.append(Event("attempted", s.attempt.started_at, s.message_id, s.integration, detail))
    change: dict[str, Any] = {
        "attempts": s.attempts,
        "status": s.kind.status.value,
        "reason": s.reason,
        "provider_id": row.provider_id,
        "next_attempt_at": row.next_attempt_at,  # a held message's is HELD_UNTIL
        "route_index": s.route_index,
    }
    if row.held is not None:
        change["held"] = row.held
    events.append(Event(s.kind.value, now, s.message_id, s.integration, change))
    return events


def operator_detail(r: Row, by: str) -> dict[str, Any]:
    """A replayed or purged event's detail."""
    return {"by": by, "target": r.target, "reason": r.last_error, "attempts": r.attempts}
