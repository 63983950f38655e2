"""The suppression list and holds in SQLite: each change one writer transaction with its audit.

Reads go to the reader connection (WAL: it sees every commit, and never waits
for the writer).
"""

from __future__ import annotations

from typing import Any

from ...deliverability import Reason, Suppression
from .._mail_audit import released_detail, suppressed_detail, unsuppressed_detail
from .._model import EventKind
from ._db import Row, Tx, dumps
from ._mail import UPSERT_SUPPRESSION, suppression_row
from ._rows import INSERT_EVENT

_COLUMNS = "id, address, scope, reason, created_at, until, by, note, last_try_at"


def suppression(r: Row) -> Suppression:
    """A suppression from a row of the ``_COLUMNS``."""
    return Suppression(
        address=r[1],
        scope=r[2],
        reason=Reason(r[3]),
        created_at=r[4],
        until=r[5],
        by=r[6],
        note=r[7],
        id=r[0],
        last_try_at=r[8],
    )


async def add(tx: Tx, s: Suppression, now: float) -> tuple[int, float | None]:
    """Add or renew ``s``, with its ``suppressed`` event; its id and last critical try."""
    ((suppression_id, last_try_at),) = await tx.fetchall(UPSERT_SUPPRESSION, suppression_row(s))
    detail = dumps(suppressed_detail(s))
    await tx.execute(INSERT_EVENT, (now, EventKind.SUPPRESSED.value, None, None, detail))
    return suppression_id, last_try_at


async def remove(
    tx: Tx, address: str, scope: str | None, by: str, note: str, now: float
) -> list[Suppression]:
    """Delete the address's suppressions (of ``scope``, or all), each with its audit event."""
    where, params = "address = ?", [address]
    if scope is not None:
        where, params = "address = ? AND scope = ?", [address, scope]
    rows = await tx.fetchall(f"DELETE FROM suppressions WHERE {where} RETURNING {_COLUMNS}", params)
    removed = sorted((suppression(r) for r in rows), key=lambda s: s.id or 0)
    kind = EventKind.UNSUPPRESSED.value
    await tx.executemany(
        INSERT_EVENT,
        [(now, kind, None, None, dumps(unsuppressed_detail(s, by, note))) for s in removed],
    )
    return removed


def listed(
    address: str | None, active_at: float | None, after: int, limit: int
) -> tuple[str, list[Any]]:
    """The query for ``suppressions()`` and its parameters."""
    clauses: list[str] = ["id > ?"]
    params: list[Any] = [after]
    if address is not None:
        clauses.append("address = ?")
        params.append(address)
    if active_at is not None:
        clauses.append("(until IS NULL OR until > ?)")
        params.append(active_at)
    where = " AND ".join(clauses)
    return f"SELECT {_COLUMNS} FROM suppressions WHERE {where} ORDER BY id LIMIT ?", [
        *params,
        limit,
    ]


async def release(tx: Tx, key: str, at: float, by: str, now: float) -> list[Row]:
    """Make the messages held under ``key`` due at ``at``, each with a ``released`` event.

    ``last_event`` is left alone: its trigger would log the last attempt again.
    """
    rows = await tx.fetchall(
        "UPDATE messages SET held = NULL, next_attempt_at = ?, updated_at = ?"
        " WHERE held = ? AND status = 'queued' RETURNING id, target, integration",
        (at, now, key),
    )
    rows.sort()
    detail = dumps(released_detail(key, by))
    kind = EventKind.RELEASED.value
    await tx.executemany(INSERT_EVENT, [(now, kind, r[0], r[2], detail) for r in rows])
    return rows
