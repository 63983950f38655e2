"""The one writer: every write is an op, and the ops waiting together commit together.

Submits, claims, settles and audit events that arrive while a transaction is
being committed are gathered and committed in the next one (group commit),
so the cost of a commit, and of the trio/asyncio bridge, is paid per batch,
not per message. The statements an op kind needs come from the batch
function the writer is given (the queue's, see ``_batch``); after the commit
the callbacks the batch registered run, then the ops' callers wake up.

The writer never dies from one op. A failure of the store itself (a full
disk, an I/O error: ``sqlite3.OperationalError``) fails the whole batch, and
its settles and events are kept for the next one. Any other failure is one
op's data (a lone surrogate SQLite cannot bind, an integer beyond 64 bits,
a constraint, JSON that SQLite cannot read): the batch is split in halves and
each half committed, down to the op that fails alone, which alone gets the
error. A settle that fails alone is tried once more with its texts and times
made plain; an event or a fire-and-forget write that fails alone is logged
and dropped.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import attrs
import trio
import trio_asyncio

from ..._errors import RingbearerError, StoreError
from ..._logging import fields
from .._protocol import StoreStatistics
from .._safe import hardened_settle
from ._db import Row, Tx, WallClock, fetch, translate
from ._rows import INSERT_EVENT

T = TypeVar("T")
log = logging.getLogger("ringbearer.store")


class OpKind(enum.Enum):
    SUBMIT = "submit"
    CLAIM = "claim"
    SETTLE = "settle"
    EVENT = "event"
    MAIL = "mail"  # provider events to keep (see ``_mail``)
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
    made_plain: bool = False  # failed alone once and was made plain: the last try


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


def chained(*parts: WriteBatch) -> WriteBatch:
    """One ``WriteBatch`` writing each part's statements in turn."""

    async def write(tx: Tx, batch: Batch) -> None:
        for part in parts:
            await part(tx, batch)

    return write


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
        except Exception as exc:  # never the writer's end (and never a BaseException)
            if isinstance(exc, sqlite3.OperationalError) and not _of_one_op(exc):
                self._fail(batch, translate(exc))  # the store itself: disk, I/O, lock
            else:
                await self._isolate(batch, exc)
            return
        self.commits += 1
        self.committed_ops += len(batch.ops)
        for callback in batch.on_commit:
            callback()
        for op in batch.ops:
            if op.done is not None:
                op.done.set()

    async def _isolate(self, batch: Batch, exc: Exception) -> None:
        """Commit the ops that can be, in halves, down to the one that fails alone."""
        for callback in batch.on_failure:
            callback()
        if len(batch.ops) == 1:
            await self._failed_alone(batch.ops[0], exc, batch.now)
            return
        half = len(batch.ops) // 2
        for part in (batch.ops[:half], batch.ops[half:]):
            for op in part:  # what the rolled-back try decided is void
                op.result, op.error = None, None
            await self._commit(Batch(now=batch.now, ops=part))

    async def _failed_alone(self, op: Op, exc: Exception, now: float) -> None:
        """``op`` fails on its own: its caller hears why; a settle gets one plain try more."""
        text = f"{type(exc).__name__}: {exc}"
        self.last_error = f"a {op.kind.value} could not be stored: {text}"
        if op.kind is OpKind.SETTLE and not op.made_plain:
            op.made_plain = True
            op.data = [hardened_settle(s, now) for s in op.data]
            await self._commit(Batch(now=now, ops=[op]))
            return
        if op.done is not None:
            op.error = _refusal(op, exc, text)
            op.done.set()
            return
        # Nobody waits for it: a settle's message stays in flight until the next
        # start returns it to the queue (at-least-once); an event is lost.
        log.error("store write dropped", extra=fields(op=op.kind.value, error=text))

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


# OperationalErrors that one op's data causes (SQLite's JSON functions on a
# value Python's json wrote, NaN say); any other is the store's own failure.
_DATA_WORDS = ("malformed JSON", "too big", "JSON cannot hold")


def _of_one_op(exc: sqlite3.OperationalError) -> bool:
    return any(words in str(exc) for words in _DATA_WORDS)


def _refusal(op: Op, exc: Exception, text: str) -> RingbearerError:
    """The error an op's caller gets when the op cannot be stored."""
    if isinstance(exc, RingbearerError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return translate(exc)
    return StoreError(f"the store cannot hold this {op.kind.value}: {text}")
