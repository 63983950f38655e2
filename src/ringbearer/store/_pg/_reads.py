"""Reads on the reading connection: the audit log, dead letters, messages, and the
daemon's duties, as the SQLite store's ``Reads`` answers them.

Each read is a transaction of its own on the reading session, so it sees every commit
made before it began (READ COMMITTED), as SQLite's reader in WAL mode does. What differs
from SQLite: a list of values is bound as an array (``= ANY(%s)``), not as JSON text
unpacked by ``json_each``; SQLite's two-argument ``MAX`` is ``GREATEST``; and
``next_due`` asks for its three priorities in one statement, where SQLite runs three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..._delivery import Priority
from .._model import HELD_UNTIL, DeadLetter, Event, MessageRecord
from .._sqlite._rows import (
    SELECT_DEAD,
    SELECT_EVENTS,
    SELECT_MESSAGE,
    dead_letter,
    event,
    message_record,
)
from ._db import PgTx, Row, Session

T = TypeVar("T")

# The earliest due time of one priority's ready messages: a MIN PostgreSQL answers from
# the ready index (target, priority, next_attempt_at) by reading one entry. Held
# messages are due at HELD_UNTIL and so left out by the index too.
_DUE = (
    "(SELECT MIN(next_attempt_at) FROM messages WHERE status = 'queued' AND target = %s"
    " AND priority = %s AND next_attempt_at < %s)"
)
_NEXT_DUE = f"SELECT LEAST({', '.join(_DUE for _ in Priority)})"


class PgReads:
    """The store's queries, each one transaction on the reading session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def session(self) -> Session:
        """The reading connection (its connection details open others: VACUUM's)."""
        return self._session

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Any read (PostgreSQL's SQL, ``%s`` placeholders), for the parts and for tests."""
        return await self._session.query(sql, params)

    async def several(self, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn``'s reads (a sync function) in one transaction, one thread crossing."""
        return await self._session.transaction(fn)

    async def events(
        self,
        *,
        since: float | None,
        message_id: int | None,
        kinds: Sequence[str],
        before: int | None,
        limit: int,
    ) -> list[Event]:
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        for clause, value in (
            ("at >= %s", since),
            ("message_id = %s", message_id),
            ("kind = ANY(%s::text[])", list(kinds) if kinds else None),
            ("id < %s", before),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self.query(
            f"{SELECT_EVENTS} WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT %s",
            (*params, limit),
        )
        return [event(r) for r in rows]

    async def dead_letters(
        self, *, target: str | None, before: int | None, limit: int
    ) -> list[DeadLetter]:
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if target is not None:
            clauses.append("target = %s")
            params.append(target)
        if before is not None:
            clauses.append("id < %s")
            params.append(before)
        rows = await self.query(
            f"{SELECT_DEAD} AND {' AND '.join(clauses)} ORDER BY id DESC LIMIT %s",
            (*params, limit),
        )
        return [dead_letter(r) for r in rows]

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        rows = await self.query(f"{SELECT_DEAD} AND id = %s", (message_id,))
        return dead_letter(rows[0]) if rows else None

    async def message(self, message_id: int) -> MessageRecord | None:
        rows = await self.query(f"{SELECT_MESSAGE} WHERE id = %s", (message_id,))
        return message_record(rows[0]) if rows else None

    async def holding_key(self, key: str) -> int | None:
        rows = await self.query(
            "SELECT id FROM messages WHERE idempotency_key = %s ORDER BY id LIMIT 1", (key,)
        )
        return int(rows[0][0]) if rows else None

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = await self.query("SELECT id, status FROM messages WHERE id = ANY(%s)", (list(ids),))
        return {message_id: status for message_id, status in rows}

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        rows = await self.query(
            "SELECT id, target, deliver_by FROM messages WHERE deliver_by IS NOT NULL"
            " AND status IN ('queued', 'inflight') AND deliver_by < %s ORDER BY deliver_by, id",
            (wall,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        # Held messages wait on purpose (a paused domain): they are no sign of a stall.
        # One never attempted waits from when it was due (``not_before``, a cap's
        # time), not from its submit: a message scheduled for next week is not late.
        rows = await self.query(
            "SELECT target, priority, MIN(CASE WHEN attempts = 0"
            " THEN GREATEST(created_at, next_attempt_at) ELSE created_at END)"
            " FROM messages WHERE status = 'queued' AND held IS NULL GROUP BY target, priority"
        )
        return {(target, Priority(priority)): at for target, priority, at in rows}

    async def next_due(self, target: str) -> float | None:
        """The earliest due time of ``target``'s ready messages (LEAST skips NULLs)."""
        params = [p for priority in Priority for p in (target, int(priority), HELD_UNTIL)]
        rows = await self.query(_NEXT_DUE, params)
        due: float | None = rows[0][0]
        return due

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        rows = await self.query(
            "SELECT at FROM events WHERE kind = 'attempted' AND integration = %s AND at >= %s"
            " ORDER BY at DESC LIMIT %s",
            (integration, since, limit),
        )
        return [r[0] for r in rows]
