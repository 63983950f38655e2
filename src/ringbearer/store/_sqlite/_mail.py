"""Provider events in SQLite: matched by reads, kept in the writer's group commit.

Matching runs one statement per event; the events of every caller waiting
are matched in one crossing of the trio/asyncio bridge (see ``_matcher``).
Keeping is a part of every writer transaction: the events of all the
``commit_events`` calls waiting together are kept with a handful of
statements, however many there are (one to find those kept before, one
insert each for events, suppressions and audit events), which is what lets
a burst of webhook deliveries run at thousands a second.
``UNIQUE (source, event_id)`` stands behind the check.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._delivery import Priority
from ...deliverability import EventRecord, MatchedEvent, MessageFacts, ProviderEvent, Suppression
from .._mail_audit import kept, provider_event_detail, provider_ids, suppressed_detail
from .._model import EventKind
from ._db import Row, Tx, dumps
from ._rows import INSERT_EVENT
from ._writer import Batch, OpKind

PROVIDER_EVENT, SUPPRESSED = EventKind.PROVIDER_EVENT.value, EventKind.SUPPRESSED.value

# One statement per event, one snapshot: whether it was kept before, its address's
# soft bounces, and its message, found by provider id (either form) else by key.
_MATCH = (
    "SELECT (SELECT 1 FROM mail_events WHERE source = ? AND event_id = ?),"
    " (SELECT COUNT(*) FROM mail_events"
    " WHERE address = ? AND event = 'soft_bounce' AND at >= ?),"
    " m.id, m.target, m.integration, m.category, m.recipient, m.domain, m.priority"
    " FROM (SELECT 1) LEFT JOIN messages AS m ON m.id = COALESCE("
    " (SELECT id FROM messages WHERE provider_id IN (?, ?) ORDER BY id LIMIT 1),"
    " (SELECT id FROM messages WHERE idempotency_key = ? ORDER BY id LIMIT 1))"
)
_KEPT_BEFORE = (
    "SELECT source, event_id FROM mail_events WHERE (source, event_id) IN"
    " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
)
_KEEP = (
    "INSERT INTO mail_events (at, source, event_id, event, channel, message_id,"
    " integration, domain, address, detail) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_UPSERT = (
    "INSERT INTO suppressions (address, scope, reason, created_at, until, by, note)"
    " VALUES (?,?,?,?,?,?,?) ON CONFLICT (address, scope, reason) DO UPDATE SET"
    " created_at = excluded.created_at, until = excluded.until, by = excluded.by,"
    " note = excluded.note"
)
UPSERT_SUPPRESSION = f"{_UPSERT} RETURNING id, last_try_at"


async def match_all(
    tx: Tx, events: Sequence[ProviderEvent], soft_since: float
) -> list[MatchedEvent]:
    """Each event with its message, whether it was kept before, its address's soft bounces."""
    return [await _match(tx, e, soft_since) for e in events]


async def _match(tx: Tx, e: ProviderEvent, soft_since: float) -> MatchedEvent:
    ids = provider_ids(e.provider_id) if e.provider_id else (None, None)
    params = (e.source, e.event_id, e.address, soft_since, *ids, e.key or None)
    ((seen, soft, *f),) = await tx.fetchall(_MATCH, params)
    message = None
    if f[0] is not None:
        message = MessageFacts(f[0], f[1], f[2], f[3], f[4], f[5], Priority(f[6]).label)
    return MatchedEvent(e, message, bool(seen), soft)


async def write_mail(tx: Tx, batch: Batch) -> None:
    """Keep the events of every ``MAIL`` op of ``batch`` together (a part of its ``WriteBatch``)."""
    ops = batch.of(OpKind.MAIL)
    if not ops:
        return
    new = await keep_all(tx, [r for op in ops for r in op.data], batch.now)
    for op in ops:
        op.result, new = new[: len(op.data)], new[len(op.data) :]


async def keep_all(tx: Tx, records: Sequence[EventRecord], now: float) -> list[bool]:
    """Keep each record not kept before, with its audit events and suppressions.

    The writer is the only one: what the first statement finds kept, and the
    records before it in this batch, are all that is not new.
    """
    kept_rows = [kept(r.matched) for r in records]
    pairs = dumps([[k.source, k.event_id] for k in kept_rows])
    known = {(a, b) for a, b in await tx.fetchall(_KEPT_BEFORE, (pairs,))}
    new: list[bool] = []
    rows: list[Row] = []
    audit: list[Row] = []
    upserts: list[Row] = []
    for record, k in zip(records, kept_rows, strict=True):
        new.append((k.source, k.event_id) not in known)
        if new[-1]:
            known.add((k.source, k.event_id))
            rows.append((k.at, k.source, k.event_id, k.event, k.channel, k.message_id,
                         k.integration, k.domain, k.address, dumps(k.detail)))  # fmt: skip
            audit.extend(_audit_rows(record, k.message_id, k.integration, now))
            upserts.extend(suppression_row(s) for s in record.suppressions)
    for sql, values in ((_KEEP, rows), (_UPSERT, upserts), (INSERT_EVENT, audit)):
        if values:
            await tx.executemany(sql, values)
    return new


def _audit_rows(
    record: EventRecord, message_id: int | None, integration: str | None, now: float
) -> list[Row]:
    """The record's ``provider_event``, then a ``suppressed`` for each suppression it adds."""
    detail = dumps(provider_event_detail(record.matched.event))
    rows: list[Row] = [(now, PROVIDER_EVENT, message_id, integration, detail)]
    for s in record.suppressions:
        rows.append((now, SUPPRESSED, message_id, integration, dumps(suppressed_detail(s))))
    return rows


def suppression_row(s: Suppression) -> Row:
    """A suppression as ``UPSERT_SUPPRESSION`` takes it."""
    return (s.address, s.scope, s.reason.value, s.created_at, s.until, s.by, s.note)
