"""Provider events in PostgreSQL: matched by one read, kept in the writer's group commit.

Matching differs from SQLite, which runs one statement per event and gathers the asks
of every caller waiting so as to cross its trio/asyncio bridge once (its
``_matcher``): here one call's events go into one statement as arrays, matched in the
query itself, so a call costs one round trip whatever its size. Callers asking at
once each make their own read, and a read that fails fails its own caller only.

Keeping is a part of every writer transaction: the events of all the
``commit_events`` calls waiting together are kept with a handful of statements,
however many there are, as in SQLite. Differs from SQLite: several nodes may share
the database, so an event is new not when a read finds it missing (another node's
writer may be keeping it meanwhile) but when ``INSERT ... ON CONFLICT DO NOTHING``
inserts it, which waits for another node's transaction holding the same event and
skips it if that one commits. ``UNIQUE (source, event_id)`` decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._delivery import Priority
from ...deliverability import EventRecord, MatchedEvent, MessageFacts, ProviderEvent
from .._group_commit import Batch, OpKind
from .._mail_audit import KeptEvent, kept, provider_ids
from .._sqlite._mail import _audit_rows as audit_rows
from .._sqlite._mail import suppression_row
from ._db import PgTx, Row, dumps
from ._writer import INSERT_EVENT

# One row per event, in the order given: whether it was kept before, its address's soft
# bounces, and its message, found by provider id (either form) else by key.
MATCH = (
    "SELECT EXISTS (SELECT 1 FROM mail_events AS k"
    " WHERE k.source = e.source AND k.event_id = e.event_id),"
    " (SELECT COUNT(*) FROM mail_events AS s"
    " WHERE s.address = e.address AND s.event = 'soft_bounce' AND s.at >= %s),"
    " m.id, m.target, m.integration, m.category, m.recipient, m.domain, m.priority"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
    " WITH ORDINALITY AS e (source, event_id, address, given_id, other_id, key, n)"
    " LEFT JOIN messages AS m ON m.id = COALESCE("
    " (SELECT MIN(id) FROM messages WHERE provider_id IN (e.given_id, e.other_id)),"
    " (SELECT MIN(id) FROM messages WHERE idempotency_key = e.key))"
    " ORDER BY e.n"
)
_KEEP = (
    "INSERT INTO mail_events (at, source, event_id, event, channel, message_id,"
    " integration, domain, address, detail)"
    " SELECT at, source, event_id, event, channel, message_id, integration, domain,"
    " address, detail FROM unnest(%s::float8[], %s::text[], %s::text[], %s::text[],"
    " %s::text[], %s::int8[], %s::text[], %s::text[], %s::text[], %s::text[])"
    " WITH ORDINALITY AS r (at, source, event_id, event, channel, message_id,"
    " integration, domain, address, detail, n) ORDER BY n"
    " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
)
UPSERT_SUPPRESSION = (
    "INSERT INTO suppressions (address, scope, reason, created_at, until, by, note)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (address, scope, reason) DO UPDATE SET"
    " created_at = EXCLUDED.created_at, until = EXCLUDED.until, by = EXCLUDED.by,"
    " note = EXCLUDED.note"
)


def match_params(events: Sequence[ProviderEvent], soft_since: float) -> list[Any]:
    """``MATCH``'s parameters: the window's start, then one array per event field."""
    ids = [provider_ids(e.provider_id) if e.provider_id else (None, None) for e in events]
    return [
        soft_since,
        [e.source for e in events],
        [e.event_id for e in events],
        [e.address for e in events],
        [i[0] for i in ids],
        [i[1] for i in ids],
        [e.key or None for e in events],
    ]


def matched(events: Sequence[ProviderEvent], rows: Sequence[Row]) -> list[MatchedEvent]:
    """Each event with what ``MATCH`` found of it (its rows are in the events' order)."""
    found = []
    for e, (seen, soft, *f) in zip(events, rows, strict=True):
        message = None
        if f[0] is not None:
            message = MessageFacts(f[0], f[1], f[2], f[3], f[4], f[5], Priority(f[6]).label)
        found.append(MatchedEvent(e, message, bool(seen), int(soft)))
    return found


def write_mail(tx: PgTx, batch: Batch) -> None:
    """Keep the events of every ``MAIL`` op of ``batch`` together (a part of its ``WriteBatch``)."""
    ops = batch.of(OpKind.MAIL)
    if not ops:
        return
    new = keep_all(tx, [r for op in ops for r in op.data], batch.now)
    for op in ops:
        op.result, new = new[: len(op.data)], new[len(op.data) :]


def keep_all(tx: PgTx, records: Sequence[EventRecord], now: float) -> list[bool]:
    """Keep each record not kept before, with its audit events and suppressions.

    Only the first of the batch's records of one event may be new; it is if its row
    went in.
    """
    rows = [kept(r.matched) for r in records]
    first: dict[tuple[str, str], int] = {}
    for i, k in enumerate(rows):
        first.setdefault((k.source, k.event_id), i)
    inserted = _insert(tx, [rows[i] for i in first.values()])
    new = [
        first[(k.source, k.event_id)] == i and (k.source, k.event_id) in inserted
        for i, k in enumerate(rows)
    ]
    audit: list[Row] = []
    upserts: list[Row] = []
    for record, k, is_new in zip(records, rows, new, strict=True):
        if is_new:
            audit.extend(audit_rows(record, k.message_id, k.integration, now))
            upserts.extend(suppression_row(s) for s in record.suppressions)
    # One at a time: two of a batch may renew the same suppression, which one
    # statement's ON CONFLICT DO UPDATE refuses.
    for sql, values in ((UPSERT_SUPPRESSION, upserts), (INSERT_EVENT, audit)):
        if values:
            tx.executemany(sql, values)
    return new


def _insert(tx: PgTx, rows: Sequence[KeptEvent]) -> set[tuple[str, str]]:
    """Insert the rows not kept yet (in their order); the ``(source, event_id)`` inserted."""
    if not rows:
        return set()
    columns = [
        [k.at for k in rows],
        [k.source for k in rows],
        [k.event_id for k in rows],
        [k.event for k in rows],
        [k.channel for k in rows],
        [k.message_id for k in rows],
        [k.integration for k in rows],
        [k.domain for k in rows],
        [k.address for k in rows],
        [dumps(k.detail) for k in rows],
    ]
    return {(source, event_id) for source, event_id in tx.fetchall(_KEEP, columns)}
