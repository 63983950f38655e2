"""The queue's operations, as callers make them: submit, claim, settle, progress, recovery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ..._delivery import Priority
from .._model import Accepted, Claimed, NewMessage, Settle, Span
from .._safe import safe_settle
from ._db import Row, Tx, dumps
from ._rows import INSERT_EVENT
from ._shared import Shared
from ._writer import Op, OpKind, Writer

_RECOVERED = dumps({"reason": "in flight at the last stop; counted as an attempt"})


class Queue:
    """Hands the queue's work to the writer and waits for the commits that need waiting for."""

    def __init__(self, writer: Writer, shared: Shared) -> None:
        self._writer = writer
        self._shared = shared

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        """Store messages durably; return only after the commit."""
        if not messages:
            return []
        op = Op(OpKind.SUBMIT, list(messages), done=trio.Event())
        accepted: list[Accepted] = await self._writer.enqueue(op)
        return accepted

    async def claim(self, target: str, limit: int, span: Span) -> list[Claimed]:
        """Mark up to ``limit`` due messages of ``target`` (priorities in ``span``) in flight."""
        op = Op(OpKind.CLAIM, (target, limit, span), done=trio.Event())
        claimed: list[Claimed] = await self._writer.enqueue(op)
        return claimed

    async def record(self, settles: Sequence[Settle]) -> None:
        """Hand settled attempts to the writer; they are committed with the next batch.

        A provider's words (its id, its error text) are made safe to store first.
        """
        if settles:
            await self._writer.enqueue(Op(OpKind.SETTLE, [safe_settle(s) for s in settles]))

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        """Keep a multi-step delivery's completed steps with the message, and audit them."""
        now = self._shared.clock()
        steps = dumps(dict(progress))
        detail = dumps({"progress": dict(progress)})

        async def save(tx: Tx) -> None:
            await tx.execute(
                "UPDATE messages SET progress = json_set(coalesce(progress, '{}'),"
                " '$.' || json_quote(?), json(?)) WHERE id = ?",
                (integration, steps, message_id),
            )
            await tx.execute(INSERT_EVENT, (now, "progressed", message_id, integration, detail))

        await self._writer.run(save)

    async def recover_inflight(self) -> int:
        """Return messages left in flight by an earlier run to the queue.

        Each counts as an ambiguous attempt, as an actor's crash counts the
        work it interrupted: the provider may have taken it, and an adapter
        reads a "duplicate" answer on a later attempt as that earlier success.
        """
        now = self._shared.clock()

        async def recover(tx: Tx) -> list[Row]:
            rows = await tx.fetchall(
                "UPDATE messages SET status = 'queued', updated_at = ?, attempts = attempts + 1,"
                " member_attempts = member_attempts + 1 WHERE status = 'inflight'"
                " RETURNING id, target, priority",
                (now,),
            )
            await tx.executemany(
                INSERT_EVENT, [(now, "recovered", r[0], None, _RECOVERED) for r in sorted(rows)]
            )
            return rows

        rows = await self._writer.run(recover)
        for _, target, priority in rows:
            self._shared.counters.inflight(target, -1)
            self._shared.counters.queued(target, Priority(priority), 1)
        return len(rows)
