"""Claiming: which due messages of a target go first, marked in flight in one statement.

Priority first (critical, normal, bulk); within a priority, messages with a
deadline, nearest first (then by id), then the rest by due time and id. Only
targets that have seen a deadline pay for the queries that order by it.
"""

from __future__ import annotations

from .._model import Claimed, Span
from ._db import Tx, dumps
from ._rows import CLAIMED, claimed


async def claim(
    tx: Tx, target: str, limit: int, now: float, span: Span, *, by_deadline: bool
) -> list[Claimed]:
    """Mark up to ``limit`` due messages of ``target`` in flight and return them, in order."""
    if by_deadline:
        return await _claim_by_deadline(tx, target, limit, now, span)
    rows = await tx.fetchall(
        "UPDATE messages SET status = 'inflight', updated_at = ? WHERE id IN ("
        " SELECT id FROM messages WHERE status = 'queued' AND target = ?"
        " AND priority BETWEEN ? AND ?"
        " AND next_attempt_at <= ? ORDER BY priority, next_attempt_at, id LIMIT ?)"
        f" RETURNING {CLAIMED}",
        (now, target, int(span[0]), int(span[1]), now, limit),
    )
    rows.sort(key=lambda r: (r[2], r[9], r[0]))
    return claimed(rows)


async def _claim_by_deadline(
    tx: Tx, target: str, limit: int, now: float, span: Span
) -> list[Claimed]:
    ids: list[int] = []
    for priority in range(int(span[0]), int(span[1]) + 1):
        for order, has in (("deliver_by, id", "NOT NULL"), ("next_attempt_at, id", "NULL")):
            if len(ids) >= limit:
                break
            rows = await tx.fetchall(
                "SELECT id FROM messages WHERE status = 'queued' AND target = ?"
                f" AND priority = ? AND deliver_by IS {has} AND next_attempt_at <= ?"
                f" ORDER BY {order} LIMIT ?",
                (target, priority, now, limit - len(ids)),
            )
            ids.extend(r[0] for r in rows)
    if not ids:
        return []
    rows = await tx.fetchall(
        "UPDATE messages SET status = 'inflight', updated_at = ?"
        f" WHERE id IN (SELECT value FROM json_each(?)) RETURNING {CLAIMED}",
        (now, dumps(ids)),
    )
    rank = {message_id: n for n, message_id in enumerate(ids)}
    rows.sort(key=lambda r: rank[r[0]])
    return claimed(rows)
