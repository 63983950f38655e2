"""Durable controls on PostgreSQL: breaker states, pauses and the wedding-day override,
kept across restarts (and seen by every node), as the SQLite store's ``Controls`` keeps
them.

What differs from SQLite: SQLite's ``INSERT OR REPLACE`` is an upsert on the primary
key; and the reads run inside the writer's next transaction (``writer.run``) rather than
as a separate read on its connection, because one psycopg connection cannot carry a read
while another thread holds a batch's transaction open on it. A read that way sees every
write queued before it, which the SQLite reads, taken after a commit, see too.
"""

from __future__ import annotations

from .._group_commit import Op, OpKind
from .._model import BreakerRecord, OverrideRecord
from ._db import PgTx
from ._writer import PgWriter

_SAVE_BREAKER = (
    "INSERT INTO breakers (integration, state, forced, open_until) VALUES (%s,%s,%s,%s)"
    " ON CONFLICT (integration) DO UPDATE SET state = excluded.state,"
    " forced = excluded.forced, open_until = excluded.open_until"
)
_SET_PAUSED = (
    "INSERT INTO controls (name, paused) VALUES (%s, %s)"
    " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused"
)


class PgControls:
    """Writes and reads go through the writer."""

    def __init__(self, writer: PgWriter) -> None:
        self._writer = writer

    def save_breaker(self, record: BreakerRecord) -> None:
        """Persist a breaker's state with the next batch (called from a sync hook)."""
        row = (record.integration, record.state, int(record.forced), record.open_until)

        def save(tx: PgTx) -> None:
            tx.execute(_SAVE_BREAKER, row)

        self._writer.push(Op(OpKind.CUSTOM, save))

    async def breakers(self) -> dict[str, BreakerRecord]:
        rows = await self._writer.run(
            lambda tx: tx.fetchall("SELECT integration, state, forced, open_until FROM breakers")
        )
        return {r[0]: BreakerRecord(r[0], r[1], bool(r[2]), r[3]) for r in rows}

    async def set_paused(self, name: str, paused: bool) -> None:
        await self._writer.run(lambda tx: tx.execute(_SET_PAUSED, (name, int(paused))))

    async def paused(self) -> set[str]:
        rows = await self._writer.run(
            lambda tx: tx.fetchall("SELECT name FROM controls WHERE paused = 1")
        )
        return {r[0] for r in rows}

    async def set_mode_override(self, override: OverrideRecord | None) -> None:
        def keep(tx: PgTx) -> None:
            tx.execute("DELETE FROM mode_override")
            if override is not None:
                tx.execute(
                    "INSERT INTO mode_override (id, wedding_day, until, set_at)"
                    " VALUES (1,%s,%s,%s)",
                    (int(override.on), override.until, override.set_at),
                )

        await self._writer.run(keep)

    async def mode_override(self) -> OverrideRecord | None:
        rows = await self._writer.run(
            lambda tx: tx.fetchall("SELECT wedding_day, until, set_at FROM mode_override")
        )
        return OverrideRecord(bool(rows[0][0]), rows[0][1], rows[0][2]) if rows else None
