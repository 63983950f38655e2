"""Reads on the reader connection, which never waits for the writer (WAL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import trio_asyncio

from ..._delivery import Priority
from .._model import HELD_UNTIL, DeadLetter, Event, MessageRecord
from ._db import Row, Tx, dumps, fetch, translate
from ._rows import SELECT_DEAD, SELECT_EVENTS, SELECT_MESSAGE, dead_letter, event, message_record

T = TypeVar("T")


class Reads:
    """The store's queries: the audit log, dead letters, messages, and the daemon's duties."""

    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Any read, for tests and benchmarks."""
        return await fetch(self._reader, sql, params)

    async def several(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn``'s reads in one crossing of the bridge, not one per statement."""
        try:
            result: T = await trio_asyncio.aio_as_trio(fn)(Tx(self._reader))
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return result

    async def events(
        self,
        *,
        since: float | None,
        message_id: int | None,
        kinds: Sequence[str],
        before: int | None,
        limit: int,
    ) -> list[Event]:
        clauses: list[str] = ["1"]
        params: list[Any] = []
        for clause, value in (
            ("at >= ?", since),
            ("message_id = ?", message_id),
            ("kind IN (SELECT value FROM json_each(?))", dumps(list(kinds)) if kinds else None),
            ("id < ?", before),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self.query(
            f"{SELECT_EVENTS} WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [event(r) for r in rows]

    async def dead_letters(
        self, *, target: str | None, before: int | None, limit: int
    ) -> list[DeadLetter]:
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        rows = await self.query(
            f"{SELECT_DEAD} AND {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [dead_letter(r) for r in rows]

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        rows = await self.query(f"{SELECT_DEAD} AND id = ?", (message_id,))
        return dead_letter(rows[0]) if rows else None

    async def message(self, message_id: int) -> MessageRecord | None:
        rows = await self.query(f"{SELECT_MESSAGE} WHERE id = ?", (message_id,))
        return message_record(rows[0]) if rows else None

    async def holding_key(self, key: str) -> int | None:
        rows = await self.query(
            "SELECT id FROM messages WHERE idempotency_key = ? ORDER BY id LIMIT 1", (key,)
        )
        return int(rows[0][0]) if rows else None

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = await self.query(
            "SELECT id, status FROM messages WHERE id IN (SELECT value FROM json_each(?))",
            (dumps(list(ids)),),
        )
        return {message_id: status for message_id, status in rows}

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        rows = await self.query(
            "SELECT id, target, deliver_by FROM messages WHERE deliver_by IS NOT NULL"
            " AND status IN ('queued', 'inflight') AND deliver_by < ? ORDER BY deliver_by, id",
            (wall,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        # Held messages wait on purpose (a paused domain): they are no sign of a stall.
        # One never attempted waits from when it was due (``not_before``, a cap's
        # time), not from its submit: a message scheduled for next week is not late.
        rows = await self.query(
            "SELECT target, priority, MIN(CASE WHEN attempts = 0"
            " THEN MAX(created_at, next_attempt_at) ELSE created_at END)"
            " FROM messages WHERE status = 'queued' AND held IS NULL GROUP BY target, priority"
        )
        return {(target, Priority(priority)): at for target, priority, at in rows}

    async def next_due(self, target: str) -> float | None:
        # One query per priority: each uses the ready index; one over all of them would not.
        # Held messages are left out by their due time, which the index holds: a
        # million of them held cost this query nothing.
        found: list[float] = []
        for priority in Priority:
            rows = await self.query(
                "SELECT next_attempt_at FROM messages WHERE status = 'queued' AND target = ?"
                " AND priority = ? AND next_attempt_at < ? ORDER BY next_attempt_at LIMIT 1",
                (target, int(priority), HELD_UNTIL),
            )
            found.extend(r[0] for r in rows)
        return min(found) if found else None

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        rows = await self.query(
            "SELECT at FROM events WHERE kind = 'attempted' AND integration = ? AND at >= ?"
            " ORDER BY at DESC LIMIT ?",
            (integration, since, limit),
        )
        return [r[0] for r in rows]
