"""The operator's dead-letter tools: count, replay as fresh work, purge keeping the history."""

from __future__ import annotations

from collections.abc import Sequence

from ..._delivery import Priority
from ._db import Row, Tx, dumps
from ._reads import Reads
from ._rows import INSERT_EVENT, dead_where
from ._shared import Shared
from ._writer import Writer

# The columns operator_detail reads, as replay and purge select them.
_CHOSEN = "id, target, priority, integration, last_error, attempts"


def _operator_detail(by: str, row: Row) -> str:
    """A replayed or purged event's detail, from a row of the ``_CHOSEN`` columns."""
    return dumps({"by": by, "target": row[1], "reason": row[4], "attempts": row[5]})


class DeadLetters:
    """Replays and purges go through the writer; counts read the reader."""

    def __init__(self, writer: Writer, reads: Reads, shared: Shared) -> None:
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

        async def replay(tx: Tx) -> list[Row]:
            rows = await tx.fetchall(
                f"SELECT {_CHOSEN} FROM messages WHERE status = 'dead' AND {where}"
                " ORDER BY id LIMIT ?",
                (*params, limit),
            )
            # last_event is left alone: its trigger would also log the last attempt again.
            await tx.execute(
                "UPDATE messages SET status = 'queued', attempts = 0, member_attempts = 0,"
                " route_index = 0, next_attempt_at = ?, updated_at = ?, last_error = NULL"
                " WHERE status = 'dead' AND id IN (SELECT value FROM json_each(?))",
                (now, now, dumps([r[0] for r in rows])),
            )
            await tx.executemany(
                INSERT_EVENT,
                [(now, "replayed", r[0], r[3], _operator_detail(by, r)) for r in rows],
            )
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

        async def purge(tx: Tx) -> list[Row]:
            rows = await tx.fetchall(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
                f" WHERE status = 'dead' AND {where} ORDER BY id LIMIT ?) RETURNING {_CHOSEN}",
                (*params, limit),
            )
            rows.sort()
            await tx.executemany(
                INSERT_EVENT,
                [(now, "purged", r[0], r[3], _operator_detail(by, r)) for r in rows],
            )
            return rows

        # Dead letters are in no queue counter: nothing to adjust.
        return [r[0] for r in await self._writer.run(purge)]
