"""The one writer: every write is an op, and the ops waiting together commit together.

Submits, claims, settles and audit events that arrive while a transaction is
being committed are gathered and committed in the next one (group commit),
so the cost of a commit, and of the trio/asyncio bridge, is paid per batch,
not per message. The statements an op kind needs come from the batch
function the writer is given (the queue's, see ``_batch``); after the commit
the callbacks the batch registered run, then the ops' callers wake up.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import attrs
import trio
import trio_asyncio

from ..._errors import RingbearerError, StoreError
from .._protocol import StoreStatistics
from ._db import Row, Tx, WallClock, fetch, translate
from ._rows import INSERT_EVENT

T = TypeVar("T")


class OpKind(enum.Enum):
    SUBMIT = "submit"
    CLAIM = "claim"
    SETTLE = "settle"
    EVENT = "event"
    CUSTOM = "custom"


@attrs.define
class Op:
    """A unit of work for the writer; ops of one kind in a batch share statements.

    An op with ``done`` has a caller waiting for its ``result`` (or ``error``);
    one without is fire and forget.
    """

    kind: OpKind
    data: Any
    done: trio.Event | None = None
    result: Any = None
    error: RingbearerError | None = None
    holds_room: bool = False  # it took a place in the writer's queue: give it back


@attrs.define
class Batch:
    """The ops one transaction writes, and what to do once it commits or fails."""

    now: float
    ops: list[Op]
    on_commit: list[Callable[[], None]] = attrs.Factory(list)
    on_failure: list[Callable[[], None]] = attrs.Factory(list)

    def of(self, kind: OpKind) -> list[Op]:
        return [op for op in self.ops if op.kind is kind]


WriteBatch = Callable[[Tx, Batch], Awaitable[None]]


class Writer:
    """Owns the writing connection: queues ops and commits them in batches."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        clock: WallClock,
        batch_max: int,
        write_batch: WriteBatch,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._batch_max = batch_max
        self._write_batch = write_batch
        self._ops: collections.deque[Op] = collections.deque()
        self._wake = trio.Event()
        self._room = trio.Semaphore(batch_max * 8)
        self.commits = 0
        self.committed_ops = 0
        self.last_error: str | None = None

    # -- handing work to the writer -----------------------------------------------------

    async def enqueue(self, op: Op) -> Any:
        """Queue ``op`` (waiting for room); if it has ``done``, wait for its commit."""
        try:
            # The usual case has room: take it without a trip through the scheduler.
            self._room.acquire_nowait()
        except trio.WouldBlock:
            await self._room.acquire()
        op.holds_room = True
        self.push(op)
        if op.done is None:
            return None
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def push(self, op: Op) -> None:
        """Queue ``op`` now, skipping back-pressure: for small, rare writes from sync hooks."""
        self._ops.append(op)
        self._wake.set()

    async def run(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` inside the writer's next transaction and return its result."""
        result: T = await self.enqueue(Op(OpKind.CUSTOM, fn, done=trio.Event()))
        return result

    async def flush(self) -> None:
        """Wait until everything handed to the writer so far is committed."""
        await self.run(_noop)

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the writing connection (it sees what the writer committed last)."""
        return await fetch(self._conn, sql, params)

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            commits=self.commits, committed_ops=self.committed_ops, pending_ops=len(self._ops)
        )

    # -- the writer's task --------------------------------------------------------------

    async def write_loop(self) -> None:
        """Commit batches of waiting ops, forever."""
        while True:
            if not self._ops:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            ops = [self._ops.popleft() for _ in range(min(len(self._ops), self._batch_max))]
            await self._commit(Batch(now=self._clock(), ops=ops))
            for op in ops:
                if op.holds_room:
                    op.holds_room = False
                    self._room.release()

    async def _commit(self, batch: Batch) -> None:
        try:
            await trio_asyncio.aio_as_trio(self._transaction)(batch)
        except sqlite3.Error as exc:
            self._fail(batch, translate(exc))
            return
        self.commits += 1
        self.committed_ops += len(batch.ops)
        for callback in batch.on_commit:
            callback()
        for op in batch.ops:
            if op.done is not None:
                op.done.set()

    async def _transaction(self, batch: Batch) -> None:
        """One batch, BEGIN to COMMIT, as a single asyncio coroutine."""
        tx = Tx(self._conn)
        await tx.execute("BEGIN IMMEDIATE")
        try:
            for op in batch.of(OpKind.CUSTOM):
                op.result = await op.data(tx)
            await self._write_batch(tx, batch)
            events = [op.data for op in batch.of(OpKind.EVENT)]
            if events:
                await tx.executemany(INSERT_EVENT, events)
            await tx.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # no transaction left to roll back
                await tx.execute("ROLLBACK")
            raise

    def _fail(self, batch: Batch, error: StoreError) -> None:
        self.last_error = str(error)
        for op in batch.ops:
            if op.done is not None:
                op.error = error
                op.done.set()
        for callback in batch.on_failure:
            callback()
        # Settles and events describe work already done: they are kept and
        # tried again with the next batch rather than dropped. Claimed ids
        # and fresh ids were not committed, so nothing else needs undoing.
        keep = [op for op in batch.ops if op.kind in (OpKind.SETTLE, OpKind.EVENT)]
        self._ops.extendleft(reversed(keep))


async def _noop(tx: Tx) -> None:
    return None
