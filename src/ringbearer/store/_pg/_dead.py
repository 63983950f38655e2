"""The operator's dead-letter tools on PostgreSQL: count, replay as fresh work, purge
keeping the history, as the SQLite store's ``DeadLetters`` does them.

What differs from SQLite: several daemons may share the database, so replay and purge
lock the dead letters they chose (``FOR UPDATE``) and change only those still dead once
locked: two operators replaying at once on two nodes never queue one message twice nor
audit it twice. SQLite has one writer and needs no lock. Ids are bound as an array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._delivery import Priority
from .._sqlite._shared import Shared
from ._db import PgTx, Row, dumps
from ._reads import PgReads
from ._writer import INSERT_EVENT, PgWriter

# The columns _operator_detail reads, as replay and purge select them.
_CHOSEN = "id, target, priority, integration, last_error, attempts"

# The dead letters chosen, lowest id first, locked: {where} is dead_where's condition.
_CHOOSE = "SELECT {columns} FROM messages WHERE status = 'dead' AND {where}"
_LOCKED = " ORDER BY id LIMIT %s FOR UPDATE"

# last_event is left alone: its trigger would also log the last attempt again.
_REPLAY = (
    "UPDATE messages SET status = 'queued', attempts = 0, member_attempts = 0,"
    " route_index = 0, next_attempt_at = %s, updated_at = %s, last_error = NULL"
    " WHERE status = 'dead' AND id = ANY(%s)"
)


def dead_where(
    ids: Sequence[int] | None, target: str | None, after: int, dead_before: float | None
) -> tuple[str, list[Any]]:
    """The condition (beyond ``status = 'dead'``) selecting dead letters, and its params:
    SQLite's ``dead_where`` with ``%s`` and the ids as an array."""
    clauses: list[str] = ["id > %s"]
    params: list[Any] = [after]
    if ids is not None:
        clauses.append("id = ANY(%s)")
        params.append(list(ids))
    if target is not None:
        clauses.append("target = %s")
        params.append(target)
    if dead_before is not None:
        clauses.append("updated_at <= %s")
        params.append(dead_before)
    return " AND ".join(clauses), params


def _operator_detail(by: str, row: Row) -> str:
    """A replayed or purged event's detail, from a row of the ``_CHOSEN`` columns."""
    return dumps({"by": by, "target": row[1], "reason": row[4], "attempts": row[5]})


def _audit(tx: PgTx, kind: str, now: float, by: str, rows: Sequence[Row]) -> None:
    if rows:
        tx.executemany(
            INSERT_EVENT, [(now, kind, r[0], r[3], _operator_detail(by, r)) for r in rows]
        )


class PgDeadLetters:
    """Replays and purges go through the writer; counts read the reading session."""

    def __init__(self, writer: PgWriter, reads: PgReads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def count_dead(self, *, target: str | None, after: int, dead_before: float | None) -> int:
        where, params = dead_where(None, target, after, dead_before)
        rows = await self._reads.query(
            f"SELECT COUNT(*) FROM messages WHERE status = 'dead' AND {where}", params
        )
        return int(rows[0][0])

    async def replay_dead(
        self, ids: Sequence[int] | None, *, target: str | None, after: int, limit: int, by: str
    ) -> list[int]:
        """Queue dead letters again as fresh work (see ``Store.replay_dead``)."""
        now = self._shared.clock()
        where, params = dead_where(ids, target, after, None)

        def replay(tx: PgTx) -> list[Row]:
            rows = tx.fetchall(
                _CHOOSE.format(columns=_CHOSEN, where=where) + _LOCKED, (*params, limit)
            )
            if rows:
                tx.execute(_REPLAY, (now, now, [r[0] for r in rows]))
            _audit(tx, "replayed", now, by, rows)
            return rows

        rows = await self._writer.run(replay)
        for _, row_target, priority, *_ in rows:
            self._shared.counters.queued(row_target, Priority(priority), 1)
        if rows:
            self._shared.listener.submitted({r[1] for r in rows})
        return [r[0] for r in rows]

    async def purge_dead(
        self,
        ids: Sequence[int] | None,
        *,
        target: str | None,
        after: int,
        dead_before: float | None,
        limit: int,
        by: str,
    ) -> list[int]:
        """Delete dead letters; their audit history stays (see ``Store.purge_dead``)."""
        now = self._shared.clock()
        where, params = dead_where(ids, target, after, dead_before)
        chosen = _CHOOSE.format(columns="id", where=where) + _LOCKED

        def purge(tx: PgTx) -> list[Row]:
            # Chosen once (MATERIALIZED): as a subquery of the DELETE, the choice may be
            # run again for each row, and finding the row it chose already deleted, it
            # would choose the next one, past ``limit``.
            rows = tx.fetchall(
                f"WITH chosen AS MATERIALIZED ({chosen}) DELETE FROM messages"
                " WHERE id IN (SELECT id FROM chosen) AND status = 'dead'"
                f" RETURNING {_CHOSEN}",
                (*params, limit),
            )
            rows.sort()
            _audit(tx, "purged", now, by, rows)
            return rows

        # Dead letters are in no queue counter: nothing to adjust.
        return [r[0] for r in await self._writer.run(purge)]
