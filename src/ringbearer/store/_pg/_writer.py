"""The PostgreSQL store's writer: group commit (``_group_commit``) over one connection,
each batch's transaction run whole in a trio worker thread.

The statements an op kind needs come from the batch function the writer is given, a
plain function of the transaction (it runs in the worker thread). A failure of the
database itself (a lost connection, a full disk, a shutdown: ``OperationalError``)
fails the whole batch and keeps its settles and events for the next; anything else
(a constraint, a value PostgreSQL cannot hold) is one op's data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import trio

from ..._errors import RingbearerError, StoreError
from .._group_commit import Batch, GroupWriter, OpKind
from ._db import PgTx, Row, Session, WallClock, is_store_failure, translate

T = TypeVar("T")
WriteBatch = Callable[[PgTx, Batch], None]
RETRIES = 3  # a batch rolled back by a deadlock or a serialization failure is run again
INSERT_EVENT = (
    "INSERT INTO events (at, kind, message_id, integration, detail) VALUES (%s,%s,%s,%s,%s)"
)


def chained(*parts: WriteBatch) -> WriteBatch:
    """One ``WriteBatch`` writing each part's statements in turn."""

    def write(tx: PgTx, batch: Batch) -> None:
        for part in parts:
            part(tx, batch)

    return write


def _nothing(tx: PgTx, batch: Batch) -> None:
    pass


class PgWriter(GroupWriter):
    """Owns the writing connection: queues ops and commits them in batches."""

    def __init__(
        self,
        session: Session,
        *,
        clock: WallClock,
        batch_max: int,
        write_batch: WriteBatch = _nothing,
    ) -> None:
        super().__init__(clock=clock, batch_max=batch_max)
        self._session = session
        self._write_batch = write_batch

    async def run(self, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn`` inside the writer's next transaction and return its result."""
        result: T = await self.custom(fn)
        return result

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the writing connection (it sees what the writer committed last)."""
        return await self._session.query(sql, params)

    async def _run_transaction(self, batch: Batch) -> None:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                self._transaction(PgTx(conn), batch)

        for attempt in range(1, RETRIES + 1):
            try:
                # Not abandoned on cancellation: a transaction under way ends, either way.
                async with self._session.lock:
                    await trio.to_thread.run_sync(self._session.run, run)
                return
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                # Another node's transaction crossed this one and PostgreSQL rolled this
                # one back whole (SQLSTATE 40): undo what it noted, and run it again.
                if attempt == RETRIES:
                    raise
                _rolled_back(batch)

    def _transaction(self, tx: PgTx, batch: Batch) -> None:
        for op in batch.of(OpKind.CUSTOM):
            op.result = op.data(tx)
        self._write_batch(tx, batch)
        events = [op.data for op in batch.of(OpKind.EVENT)]
        if events:
            tx.executemany(INSERT_EVENT, events)

    def _store_failure(self, exc: Exception) -> StoreError | None:
        if is_store_failure(exc):
            assert isinstance(exc, psycopg.Error)
            return translate(exc)
        return None

    def _refused(self, exc: Exception) -> RingbearerError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        error = translate(exc)
        error.__cause__ = exc  # what the caller may act on (a key another node just took)
        return error


def _rolled_back(batch: Batch) -> None:
    """Forget what a rolled-back try of ``batch`` decided, before it is tried again."""
    for callback in batch.on_failure:
        callback()
    batch.on_commit.clear()
    batch.on_failure.clear()
    for op in batch.ops:
        op.result, op.error = None, None
