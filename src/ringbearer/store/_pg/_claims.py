"""Claiming on PostgreSQL: which due messages of a target go first, leased to this node.

The order is SQLite's (``_sqlite._claims``): priority first; within a priority,
messages with a deadline, nearest first (then by id), then the rest by due time
and id; only targets that have seen a deadline pay for the queries that order by
it. What differs: several nodes claim from one table, so the rows are chosen
``FOR UPDATE SKIP LOCKED`` (a row another node is taking is passed over, never
waited for), and each claimed message is leased to the node until ``now +
lease`` under its next epoch, which its settle must present.
"""

from __future__ import annotations

import attrs

from .._model import Claimed, Span
from .._sqlite._rows import CLAIMED, claimed
from ._db import PgTx, Row


@attrs.frozen
class Lease:
    """Who a claim leases its messages to, and until when (wall clock)."""

    node: str
    until: float


# The rows are chosen in a CTE, which PostgreSQL runs once: a sub-select of ``IN`` may be
# run again within the statement and, skipping other rows, take more than its LIMIT.
_TAKE = (
    "UPDATE messages SET status = 'inflight', updated_at = %s, lease_node = %s,"
    " lease_until = %s, lease_epoch = lease_epoch + 1"
    " WHERE status = 'queued' AND id IN (SELECT id FROM chosen)"
    f" RETURNING {CLAIMED}, lease_epoch"
)


def claim(
    tx: PgTx, target: str, limit: int, now: float, span: Span, lease: Lease, *, by_deadline: bool
) -> list[tuple[Claimed, int]]:
    """Lease up to ``limit`` due messages of ``target``; each with its epoch, in order."""
    if by_deadline:
        return _claim_by_deadline(tx, target, limit, now, span, lease)
    rows = tx.fetchall(
        "WITH chosen AS (SELECT id FROM messages WHERE status = 'queued' AND target = %s"
        " AND priority BETWEEN %s AND %s AND next_attempt_at <= %s"
        f" ORDER BY priority, next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED) {_TAKE}",
        (target, int(span[0]), int(span[1]), now, limit, now, lease.node, lease.until),
    )
    rows.sort(key=lambda r: (r[2], r[9], r[0]))
    return _with_epochs(rows)


def _claim_by_deadline(
    tx: PgTx, target: str, limit: int, now: float, span: Span, lease: Lease
) -> list[tuple[Claimed, int]]:
    ids: list[int] = []
    for priority in range(int(span[0]), int(span[1]) + 1):
        for order, has in (("deliver_by, id", "NOT NULL"), ("next_attempt_at, id", "NULL")):
            if len(ids) >= limit:
                break
            rows = tx.fetchall(
                "SELECT id FROM messages WHERE status = 'queued' AND target = %s"
                f" AND priority = %s AND deliver_by IS {has} AND next_attempt_at <= %s"
                f" ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED",
                (target, priority, now, limit - len(ids)),
            )
            ids.extend(r[0] for r in rows)
    if not ids:
        return []
    rows = tx.fetchall(
        f"WITH chosen AS (SELECT unnest(%s::BIGINT[]) AS id) {_TAKE}",
        (ids, now, lease.node, lease.until),
    )
    rank = {message_id: n for n, message_id in enumerate(ids)}
    rows.sort(key=lambda r: rank[r[0]])
    return _with_epochs(rows)


def _with_epochs(rows: list[Row]) -> list[tuple[Claimed, int]]:
    return list(zip(claimed(rows), (int(r[-1]) for r in rows), strict=True))
