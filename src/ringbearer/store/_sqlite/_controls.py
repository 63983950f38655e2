"""Durable controls: breaker states, pauses and the wedding-day override, kept across
restarts."""

from __future__ import annotations

from .._model import BreakerRecord, OverrideRecord
from ._db import Tx
from ._writer import Op, OpKind, Writer


class Controls:
    """Writes go through the writer; reads use its connection, which sees its commits."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def save_breaker(self, record: BreakerRecord) -> None:
        """Persist a breaker's state with the next batch (called from a sync hook)."""
        row = (record.integration, record.state, int(record.forced), record.open_until)

        async def save(tx: Tx) -> None:
            await tx.execute(
                "INSERT OR REPLACE INTO breakers (integration, state, forced, open_until)"
                " VALUES (?,?,?,?)",
                row,
            )

        self._writer.push(Op(OpKind.CUSTOM, save))

    async def breakers(self) -> dict[str, BreakerRecord]:
        rows = await self._writer.read(
            "SELECT integration, state, forced, open_until FROM breakers"
        )
        return {r[0]: BreakerRecord(r[0], r[1], bool(r[2]), r[3]) for r in rows}

    async def set_paused(self, name: str, paused: bool) -> None:
        await self._writer.run(
            lambda tx: tx.execute(
                "INSERT INTO controls (name, paused) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                (name, int(paused)),
            )
        )

    async def paused(self) -> set[str]:
        rows = await self._writer.read("SELECT name FROM controls WHERE paused = 1")
        return {r[0] for r in rows}

    async def set_mode_override(self, override: OverrideRecord | None) -> None:
        async def keep(tx: Tx) -> None:
            await tx.execute("DELETE FROM mode_override")
            if override is not None:
                await tx.execute(
                    "INSERT INTO mode_override (id, wedding_day, until, set_at) VALUES (1,?,?,?)",
                    (int(override.on), override.until, override.set_at),
                )

        await self._writer.run(keep)

    async def mode_override(self) -> OverrideRecord | None:
        rows = await self._writer.read("SELECT wedding_day, until, set_at FROM mode_override")
        return OverrideRecord(bool(rows[0][0]), rows[0][1], rows[0][2]) if rows else None
