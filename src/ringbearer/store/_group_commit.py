"""Group commit, whatever the database: every write is an op, and the ops waiting together
commit together.

Submits, claims, settles and audit events that arrive while a transaction is
being committed are gathered and committed in the next one, so the cost of a
commit is paid per batch, not per message. After the commit the callbacks the
batch registered run, then the ops' callers wake up.

The writer never dies from one op. A failure of the store itself (a full
disk, an I/O error, a lost connection) fails the whole batch, and its settles
and events are kept for the next one. Any other failure is one op's data: the
batch is split in halves and each half committed, down to the op that fails
alone, which alone gets the error. A settle that fails alone is tried once
more with its texts and times made plain; an event or a fire-and-forget write
that fails alone is logged and dropped.

A database's writer (``_sqlite._writer``, ``_pg._writer``) says how a batch's
transaction runs and which failures are the store's own.
"""

from __future__ import annotations

import collections
import enum
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import trio

from .._errors import RingbearerError, StoreError
from .._logging import fields
from ._protocol import StoreStatistics
from ._safe import hardened_settle

T = TypeVar("T")
log = logging.getLogger("ringbearer.store")


class OpKind(enum.Enum):
    SUBMIT = "submit"
    CLAIM = "claim"
    SETTLE = "settle"
    EVENT = "event"
    MAIL = "mail"  # provider events to keep (see ``_mail``)
    CUSTOM = "custom"
    FLUSH = "flush"  # writes nothing: its caller waits for the batch's commit


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


class GroupWriter:
    """Queues ops and commits them in batches; a subclass runs the transaction."""

    def __init__(self, *, clock: Callable[[], float], batch_max: int) -> None:
        self._clock = clock
        self._batch_max = batch_max
        self._ops: collections.deque[Op] = collections.deque()
        self._wake = trio.Event()
        self._room = trio.Semaphore(batch_max * 8)
        self.commits = 0
        self.committed_ops = 0
        self.last_error: str | None = None

    # -- what a database's writer says --------------------------------------------------

    async def _run_transaction(self, batch: Batch) -> None:
        """Write ``batch`` in one transaction, BEGIN to COMMIT (rolled back on failure)."""
        raise NotImplementedError

    def _store_failure(self, exc: Exception) -> StoreError | None:
        """The store's error if ``exc`` is the store's own failure, not one op's data."""
        raise NotImplementedError

    def _refused(self, exc: Exception) -> RingbearerError | None:
        """The error an op's caller gets for a database error of its own, if it is one."""
        return None

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

    async def custom(self, fn: Any) -> Any:
        """Run ``fn`` (the database's transaction function) in the next transaction."""
        return await self.enqueue(Op(OpKind.CUSTOM, fn, done=trio.Event()))

    async def flush(self) -> None:
        """Wait until everything handed to the writer so far is committed."""
        await self.enqueue(Op(OpKind.FLUSH, None, done=trio.Event()))

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
            await self._run_transaction(batch)
        except Exception as exc:  # never the writer's end (and never a BaseException)
            failure = self._store_failure(exc)
            if failure is not None:
                self._fail(batch, failure)  # the store itself: disk, I/O, connection
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
            op.error = self._refusal(op, exc, text)
            op.done.set()
            return
        # Nobody waits for it: a settle's message stays in flight until the next
        # start returns it to the queue (at-least-once); an event is lost.
        log.error("store write dropped", extra=fields(op=op.kind.value, error=text))

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

    def _refusal(self, op: Op, exc: Exception, text: str) -> RingbearerError:
        """The error an op's caller gets when the op cannot be stored."""
        if isinstance(exc, RingbearerError):
            return exc
        return self._refused(exc) or StoreError(
            f"the store cannot hold this {op.kind.value}: {text}"
        )
