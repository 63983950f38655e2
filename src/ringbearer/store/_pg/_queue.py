"""The queue's operations on PostgreSQL, as callers make them: submit, claim, settle,
progress, recovery; and what a node starts from.

As SQLite's ``Queue``, with what several nodes sharing one database change:
recovery returns to the queue only the messages leased to this node or whose
lease has expired (one node alone: all of them), and :meth:`PgQueue.reclaim_expired`
returns the expired leases of other nodes; the statements of each batch are the
``PgQueueBatch``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import trio

from ..._delivery import Priority
from ..._errors import StoreError
from .._group_commit import Batch, Op, OpKind
from .._model import Accepted, Claimed, NewMessage, Settle, Span
from .._safe import safe_settle
from .._sqlite._batch import Parked
from .._sqlite._shared import Shared
from ._batch import PgQueueBatch
from ._db import PgTx, Row, Session, dumps
from ._writer import INSERT_EVENT, PgWriter

_RECOVERED = dumps({"reason": "in flight at the last stop; counted as an attempt"})
# The rows are chosen (and locked) once, in a CTE; a row being settled is passed over.
_RETURN = (
    "WITH was AS (SELECT id, lease_node FROM messages WHERE status = 'inflight' AND ({which})"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE messages m SET status = 'queued', updated_at = %s, attempts = m.attempts + 1,"
    " member_attempts = m.member_attempts + 1, lease_node = NULL, lease_until = NULL"
    " FROM was WHERE m.id = was.id RETURNING m.id, m.target, m.priority, was.lease_node"
)
_EXPIRED = "lease_until IS NULL OR lease_until < %s"


class PgQueue:
    """Hands the queue's work to the writer and waits for the commits that need waiting for."""

    writer: PgWriter  # set by the store once its writer is made

    def __init__(self, reads: Session, shared: Shared, *, node: str, lease_seconds: float) -> None:
        self._reads = reads
        self._shared = shared
        self._node = node
        self._batch = PgQueueBatch(shared, node=node, lease_seconds=lease_seconds)

    @property
    def fenced(self) -> int:
        """Settles refused since the start because their lease was no longer this node's."""
        return self._batch.fenced

    async def load(self) -> None:
        """Read what this node starts from: queue counters, its leases, targets with deadlines."""
        node = self._node

        def read(tx: PgTx) -> tuple[list[Row], list[Row], list[Row]]:
            queued = tx.fetchall(
                "SELECT target, priority, COUNT(*) FROM messages WHERE status = 'queued'"
                " GROUP BY target, priority"
            )
            mine = tx.fetchall(
                "SELECT id, target, lease_epoch FROM messages"
                " WHERE status = 'inflight' AND lease_node = %s",
                (node,),
            )
            deadlines = tx.fetchall(
                "SELECT DISTINCT target FROM messages"
                " WHERE deliver_by IS NOT NULL AND status IN ('queued', 'inflight')"
            )
            return queued, mine, deadlines

        queued, mine, deadlines = await self._reads.transaction(read)
        counters = self._shared.counters
        for target, priority, count in queued:
            counters.queued(target, Priority(priority), int(count))
        for message_id, target, epoch in mine:
            counters.inflight(target, 1)
            self._batch.leases[int(message_id)] = int(epoch)
        self._batch.deadline_targets.update(target for (target,) in deadlines)

    def write_batch(self, tx: PgTx, batch: Batch) -> None:
        """The queue's statements for ``batch``, in the writer's transaction."""
        self._batch.write(tx, batch)

    def park(self, target: str, parked: Parked) -> None:
        self._batch.park(target, parked)

    def unpark(self, target: str) -> None:
        self._batch.unpark(target)

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        """Store messages durably; return only after the commit."""
        if not messages:
            return []
        try:
            return await self._submit(messages)
        except StoreError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise
            # Another node stored one of these keys between this batch's look-up and its
            # insert: once more, and the key is found (a duplicate, or key_reused).
            return await self._submit(messages)

    async def _submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        op = Op(OpKind.SUBMIT, list(messages), done=trio.Event())
        accepted: list[Accepted] = await self.writer.enqueue(op)
        return accepted

    async def claim(self, target: str, limit: int, span: Span) -> list[Claimed]:
        """Lease up to ``limit`` due messages of ``target`` (priorities in ``span``) here."""
        op = Op(OpKind.CLAIM, (target, limit, span), done=trio.Event())
        claimed: list[Claimed] = await self.writer.enqueue(op)
        return claimed

    async def record(self, settles: Sequence[Settle]) -> None:
        """Hand settled attempts to the writer; they are committed with the next batch.

        A provider's words (its id, its error text) are made safe to store first.
        """
        if settles:
            await self.writer.enqueue(Op(OpKind.SETTLE, [safe_settle(s) for s in settles]))

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        """Keep a multi-step delivery's completed steps with the message, and audit them.

        The steps are merged in Python, the row locked: as SQLite's ``json_set``, an
        integration's steps replace its earlier ones in place, a new one comes last.
        """
        now = self._shared.clock()
        steps = json.loads(dumps(dict(progress)))
        detail = dumps({"progress": dict(progress)})

        def save(tx: PgTx) -> None:
            rows = tx.fetchall(
                "SELECT progress FROM messages WHERE id = %s FOR UPDATE", (message_id,)
            )
            if rows:
                kept = {} if rows[0][0] is None else json.loads(rows[0][0])
                kept[integration] = steps
                tx.execute(
                    "UPDATE messages SET progress = %s WHERE id = %s", (dumps(kept), message_id)
                )
            tx.execute(INSERT_EVENT, (now, "progressed", message_id, integration, detail))

        await self.writer.run(save)

    async def recover_inflight(self) -> int:
        """Return to the queue the messages left in flight by this node, or whose lease expired.

        Each counts as an ambiguous attempt, as an actor's crash counts the
        work it interrupted: the provider may have taken it, and an adapter
        reads a "duplicate" answer on a later attempt as that earlier success.
        """
        return await self._return(
            f"lease_node = %s OR {_EXPIRED}", (self._node,), lambda node: _RECOVERED
        )

    def held(self) -> list[int]:
        """The messages this node claimed and has not settled (their leases to keep)."""
        return list(self._batch.leases)

    async def reclaim_expired(self) -> int:
        """Return to the queue the messages other nodes hold under an expired lease.

        Each counts as an ambiguous attempt and is audited ``recovered`` (naming the
        node that held it), as :meth:`recover_inflight` does; it is retried under
        its key, which an adapter reads a "duplicate" answer for as the success.
        """

        def detail(node: str | None) -> str:
            return dumps({"reason": "its lease expired; counted as an attempt", "node": node})

        return await self._return(
            f"lease_node IS DISTINCT FROM %s AND ({_EXPIRED})", (self._node,), detail
        )

    async def _return(
        self, which: str, params: tuple[Any, ...], detail: Callable[[str | None], str]
    ) -> int:
        """Queue again the messages in flight that ``which`` selects, each audited with
        ``detail`` of the node that held it."""
        now = self._shared.clock()

        def back(tx: PgTx) -> list[Row]:
            rows = tx.fetchall(_RETURN.format(which=which), (*params, now, now))
            rows.sort()
            tx.executemany(
                INSERT_EVENT, [(now, "recovered", r[0], None, detail(r[3])) for r in rows]
            )
            return rows

        rows = await self.writer.run(back)
        for message_id, target, priority, _ in rows:
            if self._batch.leases.pop(message_id, None) is not None:
                self._shared.counters.inflight(target, -1)
            self._shared.counters.queued(target, Priority(priority), 1)
        return len(rows)
