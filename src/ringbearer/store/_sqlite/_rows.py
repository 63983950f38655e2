"""The store's values as SQLite rows and back, and the statements shared by the parts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..._delivery import Priority
from .._keys import Fresh
from .._model import HELD_UNTIL, Claimed, DeadLetter, Event, MessageRecord, Settle, SettleKind
from ._db import Row, dumps

INSERT_EVENT = "INSERT INTO events (at, kind, message_id, integration, detail) VALUES (?,?,?,?,?)"


def event_row(event: Event) -> Row:
    """An audit event as ``INSERT_EVENT`` takes it."""
    detail = None if event.detail is None else dumps(event.detail)
    return (event.at, event.kind, event.message_id, event.integration, detail)


SELECT_EVENTS = "SELECT id, at, kind, message_id, integration, detail FROM events"


def event(r: Row) -> Event:
    """An audit event from a ``SELECT_EVENTS`` row."""
    return Event(
        id=r[0],
        at=r[1],
        kind=r[2],
        message_id=r[3],
        integration=r[4],
        detail=None if r[5] is None else json.loads(r[5]),
    )


INSERT_MESSAGE = (
    "INSERT INTO messages (id, target, priority, payload, idempotency_key, status,"
    " next_attempt_at, created_at, updated_at, deliver_by, category, recipient, domain)"
    " VALUES (?,?,?,?,?,'queued',?,?,?,?,?,?,?)"
)

INSERT_SUBJECT = "INSERT OR IGNORE INTO message_subjects (subject, message_id) VALUES (?,?)"


def message_row(fresh: Fresh, now: float) -> Row:
    """A new message as ``INSERT_MESSAGE`` takes it: queued, due now or when scheduled."""
    m = fresh.message
    return (
        fresh.id,
        m.target,
        int(m.priority),
        dumps(m.payload),
        fresh.key,
        now if m.not_before is None else max(now, m.not_before),
        now,
        now,
        m.deliver_by,
        m.category,
        m.recipient,
        m.domain,
    )


SELECT_MESSAGE = (
    "SELECT id, target, integration, priority, idempotency_key, status, attempts,"
    " next_attempt_at, last_error, provider_id, created_at, updated_at, delivered_at"
    " FROM messages"
)


def message_record(r: Row) -> MessageRecord:
    """A message from a ``SELECT_MESSAGE`` row."""
    return MessageRecord(
        id=r[0],
        target=r[1],
        integration=r[2],
        priority=Priority(r[3]).label,
        idempotency_key=r[4],
        status=r[5],
        attempts=r[6],
        next_attempt_at=r[7],
        last_error=r[8],
        provider_id=r[9],
        created_at=r[10],
        updated_at=r[11],
        delivered_at=r[12],
    )


CLAIMED = (
    "id, target, priority, payload, idempotency_key, attempts, created_at,"
    " route_index, member_attempts, next_attempt_at, progress, deliver_by,"
    " category, recipient, domain"
)


def claimed(rows: Sequence[Row]) -> list[Claimed]:
    """Claimed messages from rows of the ``CLAIMED`` columns."""
    return [
        Claimed(
            id=r[0],
            target=r[1],
            priority=Priority(r[2]),
            payload=json.loads(r[3]),
            idempotency_key=r[4],
            attempts=r[5],
            created_at=r[6],
            route_index=r[7],
            member_attempts=r[8],
            progress={} if r[10] is None else json.loads(r[10]),
            deliver_by=r[11],
            category=r[12],
            recipient=r[13],
            domain=r[14],
        )
        for r in rows
    ]


# The triggers of the schema turn each settle into its audit events. Every settle
# sets ``held``: the key for a HELD one, none for the rest.
SETTLE = (
    "UPDATE messages SET status = ?, attempts = ?, next_attempt_at = ?, route_index = ?,"
    " member_attempts = ?, integration = ?, last_error = ?,"
    " provider_id = COALESCE(?, provider_id), updated_at = ?,"
    " delivered_at = COALESCE(?, delivered_at), held = ?, last_event = ?, attempt_at = ?,"
    " attempt_seconds = ?, attempt_outcome = ?, attempt_status = ?"
    " WHERE id = ? AND status = 'inflight'"
)


def settle_row(s: Settle, now: float) -> Row:
    """A settle as ``SETTLE`` takes it; a held message is due never (``HELD_UNTIL``)."""
    a = s.attempt
    held = s.kind is SettleKind.HELD
    return (
        s.kind.status.value,
        s.attempts,
        HELD_UNTIL if held else s.next_attempt_at,
        s.route_index,
        s.member_attempts,
        s.integration,
        s.reason,
        s.provider_id,
        now,
        now if s.kind is SettleKind.DELIVERED else None,
        (s.held or "") if held else None,
        s.kind.value,
        None if a is None else a.started_at,
        None if a is None else round(a.duration, 6),
        None if a is None else a.outcome,
        None if a is None else a.status,
        s.message_id,
    )


SELECT_DEAD = (
    "SELECT id, target, integration, COALESCE(last_error, ''), updated_at, attempts, payload"
    " FROM messages WHERE status = 'dead'"
)


def dead_letter(r: Row) -> DeadLetter:
    """A dead letter from a ``SELECT_DEAD`` row."""
    return DeadLetter(
        message_id=r[0],
        target=r[1],
        integration=r[2],
        reason=r[3],
        at=r[4],
        attempts=r[5],
        payload=json.loads(r[6]),
    )


def dead_where(
    ids: Sequence[int] | None, target: str | None, after: int, dead_before: float | None
) -> tuple[str, list[Any]]:
    """The SQL condition (beyond ``status = 'dead'``) selecting dead letters, and its params."""
    clauses: list[str] = ["id > ?"]
    params: list[Any] = [after]
    if ids is not None:
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(dumps(list(ids)))
    if target is not None:
        clauses.append("target = ?")
        params.append(target)
    if dead_before is not None:
        clauses.append("updated_at <= ?")
        params.append(dead_before)
    return " AND ".join(clauses), params
