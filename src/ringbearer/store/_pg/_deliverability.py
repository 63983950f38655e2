"""The PostgreSQL store's deliverability role: provider events, suppressions, holds, the
guards' reads.

As in SQLite, writes go through the one writer, so a burst of webhook deliveries shares
group commits with the queue's own work, and each caller returns after its commit
(when a webhook may answer 2xx); reads go to the reading connection. The statements
are SQLite's, in PostgreSQL's words: no ``INDEXED BY`` (the planner picks the partial
indexes, whose conditions the queries repeat), ``FILTER`` for a count of a condition,
and a matcher of its own (see ``_mail``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from ...deliverability import (
    EventRecord,
    EventType,
    FunnelRow,
    MailEventRow,
    MatchedEvent,
    ProviderEvent,
    Suppression,
    normalise_address,
)
from .._group_commit import Op, OpKind
from .._mail_audit import (
    released_detail,
    stored_record,
    stored_suppression,
    suppressed_detail,
    unsuppressed_detail,
)
from .._model import EventKind
from .._safe import safe_event
from .._sqlite._deliverability import funnel_rows
from .._sqlite._mail import suppression_row
from .._sqlite._shared import Shared
from .._sqlite._suppressions import suppression
from ._db import PgTx, Row, dumps
from ._mail import MATCH, UPSERT_SUPPRESSION, match_params, matched
from ._reads import PgReads
from ._writer import INSERT_EVENT, PgWriter

_COLUMNS = "id, address, scope, reason, created_at, until, by, note, last_try_at"
_MAIL_EVENTS = (
    "SELECT at, event, source, domain, message_id FROM mail_events"
    " WHERE at >= %s AND channel = 'email' ORDER BY at, id"
)
_MAIL_EVENTS_AFTER = (
    "SELECT id, at, event, source, domain, message_id, channel FROM mail_events"
    " WHERE id = ANY(%s) OR id > %s ORDER BY id LIMIT %s"
)
_SENDS = (
    "SELECT recipient, delivered_at, id FROM messages"
    " WHERE category = %s AND delivered_at IS NOT NULL AND delivered_at >= %s"
    " AND status = 'delivered' AND recipient IS NOT NULL ORDER BY delivered_at, id"
)
# A message not yet attempted has no integration: it counts under its target.
_FUNNEL_SENT = (
    "SELECT COALESCE(integration, target), domain, COUNT(*),"
    " COUNT(*) FILTER (WHERE status = 'delivered') FROM messages"
    " WHERE domain IS NOT NULL AND created_at >= %s AND (%s::text IS NULL OR domain = %s)"
    " GROUP BY 1, 2"
)
_FUNNEL_EVENTS = (
    "SELECT COALESCE(m.integration, m.target), m.domain, e.event, COUNT(*)"
    " FROM messages AS m JOIN mail_events AS e ON e.message_id = m.id"
    " WHERE m.domain IS NOT NULL AND m.created_at >= %s AND (%s::text IS NULL OR m.domain = %s)"
    " GROUP BY 1, 2, 3"
)
_HELD = "SELECT held, COUNT(*) FROM messages WHERE held IS NOT NULL GROUP BY held"


class PgDeliverability:
    """Implements :class:`~ringbearer.store.Deliverability` on the writer and the reader."""

    def __init__(self, writer: PgWriter, reads: PgReads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def match_events(
        self, events: Sequence[ProviderEvent], *, soft_since: float
    ) -> list[MatchedEvent]:
        now = self._shared.clock()
        safe = [safe_event(e, now) for e in events]
        if not safe:
            return []
        return matched(safe, await self._reads.query(MATCH, match_params(safe, soft_since)))

    async def commit_events(self, records: Sequence[EventRecord]) -> list[bool]:
        if not records:
            return []
        now = self._shared.clock()
        stored = [stored_record(r, now) for r in records]
        # An op of its own kind: the events of every caller waiting are kept together.
        new: list[bool] = await self._writer.enqueue(Op(OpKind.MAIL, stored, done=trio.Event()))
        return new

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        s, now = stored_suppression(suppression), self._shared.clock()
        found = await self._writer.run(functools.partial(_add, s=s, now=now))
        return attrs.evolve(s, id=found[0], last_try_at=found[1])

    async def remove_suppression(
        self, address: str, *, scope: str | None = None, by: str, note: str = ""
    ) -> list[Suppression]:
        now, address = self._shared.clock(), normalise_address(address)
        remove = functools.partial(_remove, address=address, scope=scope, by=by, note=note, now=now)
        return await self._writer.run(remove)

    async def suppressions(
        self,
        *,
        address: str | None = None,
        active_at: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Suppression]:
        address = None if address is None else normalise_address(address)
        sql, params = _listed(address, active_at, after, limit)
        return [suppression(r) for r in await self._reads.query(sql, params)]

    async def note_suppressed_try(self, suppression_id: int, at: float) -> None:
        def note(tx: PgTx) -> None:
            tx.execute(
                "UPDATE suppressions SET last_try_at = %s WHERE id = %s", (at, suppression_id)
            )

        await self._writer.run(note)

    async def release_held(self, key: str, *, at: float, by: str) -> int:
        now = self._shared.clock()
        rows = await self._writer.run(functools.partial(_release, key=key, at=at, by=by, now=now))
        if rows:  # due again: the dispatchers hear of it as of a submit
            self._shared.listener.submitted({r[1] for r in rows})
        return len(rows)

    async def held_keys(self) -> dict[str, int]:
        return {key: int(count) for key, count in await self._reads.query(_HELD)}

    async def mail_events(self, *, since: float) -> list[MailEventRow]:
        rows = await self._reads.query(_MAIL_EVENTS, (since,))
        return [MailEventRow(r[0], EventType(r[1]), r[2], r[3], r[4]) for r in rows]

    async def mail_events_after(
        self, after: int, awaited: Sequence[int], limit: int
    ) -> tuple[list[int], list[MailEventRow]]:
        rows = await self._reads.query(_MAIL_EVENTS_AFTER, (list(awaited), after, limit))
        email = [
            MailEventRow(r[1], EventType(r[2]), r[3], r[4], r[5], id=r[0])
            for r in rows
            if r[6] == "email"
        ]
        return [int(r[0]) for r in rows], email

    async def marketing_sends(self, *, category: str, since: float) -> list[tuple[str, float, int]]:
        rows = await self._reads.query(_SENDS, (category, since))
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def funnel(self, *, since: float, domain: str | None = None) -> list[FunnelRow]:
        params = (since, domain, domain)
        sent = await self._reads.query(_FUNNEL_SENT, params)
        events = await self._reads.query(_FUNNEL_EVENTS, params)
        return funnel_rows(sent, events)


def _add(tx: PgTx, s: Suppression, now: float) -> tuple[int, float | None]:
    """Add or renew ``s``, with its ``suppressed`` event; its id and last critical try."""
    sql = f"{UPSERT_SUPPRESSION} RETURNING id, last_try_at"
    ((suppression_id, last_try_at),) = tx.fetchall(sql, suppression_row(s))
    detail = dumps(suppressed_detail(s))
    tx.execute(INSERT_EVENT, (now, EventKind.SUPPRESSED.value, None, None, detail))
    return suppression_id, last_try_at


def _remove(
    tx: PgTx, address: str, scope: str | None, by: str, note: str, now: float
) -> list[Suppression]:
    """Delete the address's suppressions (of ``scope``, or all), each with its audit event."""
    where, params = "address = %s", [address]
    if scope is not None:
        where, params = "address = %s AND scope = %s", [address, scope]
    rows = tx.fetchall(f"DELETE FROM suppressions WHERE {where} RETURNING {_COLUMNS}", params)
    removed = sorted((suppression(r) for r in rows), key=lambda s: s.id or 0)
    kind = EventKind.UNSUPPRESSED.value
    audit = [(now, kind, None, None, dumps(unsuppressed_detail(s, by, note))) for s in removed]
    if audit:
        tx.executemany(INSERT_EVENT, audit)
    return removed


def _listed(
    address: str | None, active_at: float | None, after: int, limit: int
) -> tuple[str, list[Any]]:
    """The query for ``suppressions()`` and its parameters."""
    clauses: list[str] = ["id > %s"]
    params: list[Any] = [after]
    if address is not None:
        clauses.append("address = %s")
        params.append(address)
    if active_at is not None:
        clauses.append("(until IS NULL OR until > %s)")
        params.append(active_at)
    where = " AND ".join(clauses)
    sql = f"SELECT {_COLUMNS} FROM suppressions WHERE {where} ORDER BY id LIMIT %s"
    return sql, [*params, limit]


def _release(tx: PgTx, key: str, at: float, by: str, now: float) -> list[Row]:
    """Make the messages held under ``key`` due at ``at``, each with a ``released`` event.

    ``last_event`` is left alone: its trigger would log the last attempt again.
    """
    rows = tx.fetchall(
        "UPDATE messages SET held = NULL, next_attempt_at = %s, updated_at = %s"
        " WHERE held = %s AND status = 'queued' RETURNING id, target, integration",
        (at, now, key),
    )
    rows.sort()
    detail = dumps(released_detail(key, by))
    kind = EventKind.RELEASED.value
    events = [(now, kind, r[0], r[2], detail) for r in rows]
    if events:
        tx.executemany(INSERT_EVENT, events)
    return rows
