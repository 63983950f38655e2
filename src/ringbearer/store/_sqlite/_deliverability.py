"""The SQLite store's deliverability role: provider events, suppressions, holds, the guards' reads.

Writes go through the one writer, so a burst of webhook deliveries shares
group commits with the queue's own work; each caller returns after its
commit, which is when a webhook may answer 2xx. Reads go to the reader.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

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
from .._mail_audit import stored_record, stored_suppression
from .._safe import safe_event
from . import _suppressions as sup
from ._db import Row, Tx
from ._matcher import Matcher
from ._reads import Reads
from ._shared import Shared
from ._writer import Op, OpKind, Writer

_MAIL_EVENTS = (
    "SELECT at, event, source, domain, message_id FROM mail_events"
    " WHERE at >= ? AND channel = 'email' ORDER BY at, id"
)
_SENDS = (
    "SELECT recipient, delivered_at, id FROM messages INDEXED BY messages_category_delivered"
    " WHERE category = ? AND delivered_at IS NOT NULL AND delivered_at >= ?"
    " AND status = 'delivered' AND recipient IS NOT NULL ORDER BY delivered_at, id"
)
# A message not yet attempted has no integration: it counts under its target.
_FUNNEL_SENT = (
    "SELECT COALESCE(integration, target), domain, COUNT(*), SUM(status = 'delivered')"
    " FROM messages INDEXED BY messages_mail_created"
    " WHERE domain IS NOT NULL AND created_at >= ? AND (? IS NULL OR domain = ?) GROUP BY 1, 2"
)
_FUNNEL_EVENTS = (
    "SELECT COALESCE(m.integration, m.target), m.domain, e.event, COUNT(*)"
    " FROM messages AS m INDEXED BY messages_mail_created"
    " JOIN mail_events AS e ON e.message_id = m.id"
    " WHERE m.domain IS NOT NULL AND m.created_at >= ? AND (? IS NULL OR m.domain = ?)"
    " GROUP BY 1, 2, 3"
)


class SqliteDeliverability:
    """Implements :class:`~ringbearer.store.Deliverability` on the writer and the reader."""

    def __init__(self, writer: Writer, reads: Reads, matcher: Matcher, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._matcher = matcher
        self._shared = shared

    async def match_events(
        self, events: Sequence[ProviderEvent], *, soft_since: float
    ) -> list[MatchedEvent]:
        now = self._shared.clock()
        safe = [safe_event(e, now) for e in events]
        return await self._matcher.match(safe, soft_since) if safe else []

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
        found = await self._writer.run(functools.partial(sup.add, s=s, now=now))
        return attrs.evolve(s, id=found[0], last_try_at=found[1])

    async def remove_suppression(
        self, address: str, *, scope: str | None = None, by: str, note: str = ""
    ) -> list[Suppression]:
        now, address = self._shared.clock(), normalise_address(address)
        remove = functools.partial(
            sup.remove, address=address, scope=scope, by=by, note=note, now=now
        )
        removed: list[Suppression] = await self._writer.run(remove)
        return removed

    async def suppressions(
        self,
        *,
        address: str | None = None,
        active_at: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Suppression]:
        address = None if address is None else normalise_address(address)
        sql, params = sup.listed(address, active_at, after, limit)
        return [sup.suppression(r) for r in await self._reads.query(sql, params)]

    async def note_suppressed_try(self, suppression_id: int, at: float) -> None:
        async def note(tx: Tx) -> None:
            await tx.execute(
                "UPDATE suppressions SET last_try_at = ? WHERE id = ?", (at, suppression_id)
            )

        await self._writer.run(note)

    async def release_held(self, key: str, *, at: float, by: str) -> int:
        now = self._shared.clock()
        rows: list[Row] = await self._writer.run(
            functools.partial(sup.release, key=key, at=at, by=by, now=now)
        )
        if rows:  # due again: the dispatchers hear of it as of a submit
            self._shared.listener.submitted({r[1] for r in rows})
        return len(rows)

    async def held_keys(self) -> dict[str, int]:
        rows = await self._reads.query(
            "SELECT held, COUNT(*) FROM messages INDEXED BY messages_held"
            " WHERE held IS NOT NULL GROUP BY held"
        )
        return {key: count for key, count in rows}

    async def mail_events(self, *, since: float) -> list[MailEventRow]:
        rows = await self._reads.query(_MAIL_EVENTS, (since,))
        return [MailEventRow(r[0], EventType(r[1]), r[2], r[3], r[4]) for r in rows]

    async def marketing_sends(self, *, category: str, since: float) -> list[tuple[str, float, int]]:
        rows = await self._reads.query(_SENDS, (category, since))
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def funnel(self, *, since: float, domain: str | None = None) -> list[FunnelRow]:
        params = (since, domain, domain)
        sent = await self._reads.query(_FUNNEL_SENT, params)
        events = await self._reads.query(_FUNNEL_EVENTS, params)
        return funnel_rows(sent, events)


def funnel_rows(sent: Sequence[Row], events: Sequence[Row]) -> list[FunnelRow]:
    """Funnel rows, by integration and domain, from the two funnel queries' rows."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for integration, domain, event, count in events:
        counts.setdefault((integration, domain), {})[event] = count
    rows = [
        FunnelRow(
            integration, domain, total, int(delivered or 0), counts.get((integration, domain), {})
        )
        for integration, domain, total, delivered in sent
    ]
    return sorted(rows, key=lambda r: (r.integration, r.domain))
