"""The SQLite store's one writer: group commit (``_group_commit``) over the writing
connection, each batch's transaction one asyncio coroutine through trio-asyncio.

The statements an op kind needs come from the batch function the writer is given (the
queue's, see ``_batch``). A failure of the store itself is an ``OperationalError`` (a
full disk, an I/O error, a lock), unless SQLite's JSON functions refused one op's value;
anything else is one op's data (a lone surrogate SQLite cannot bind, an integer beyond
64 bits, a constraint).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import trio_asyncio

from ..._errors import RingbearerError, StoreError
from .._group_commit import Batch, GroupWriter, Op, OpKind
from ._db import Row, Tx, WallClock, fetch, translate
from ._rows import INSERT_EVENT

__all__ = ["Batch", "Op", "OpKind", "WriteBatch", "Writer", "chained"]

T = TypeVar("T")
WriteBatch = Callable[[Tx, Batch], Awaitable[None]]


def chained(*parts: WriteBatch) -> WriteBatch:
    """One ``WriteBatch`` writing each part's statements in turn."""

    async def write(tx: Tx, batch: Batch) -> None:
        for part in parts:
            await part(tx, batch)

    return write


class Writer(GroupWriter):
    """Owns the writing connection: queues ops and commits them in batches."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        clock: WallClock,
        batch_max: int,
        write_batch: WriteBatch,
    ) -> None:
        super().__init__(clock=clock, batch_max=batch_max)
        self._conn = conn
        self._write_batch = write_batch

    async def run(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` inside the writer's next transaction and return its result."""
        result: T = await self.custom(fn)
        return result

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the writing connection (it sees what the writer committed last)."""
        return await fetch(self._conn, sql, params)

    async def _run_transaction(self, batch: Batch) -> None:
        await trio_asyncio.aio_as_trio(self._transaction)(batch)

    def _store_failure(self, exc: Exception) -> StoreError | None:
        if isinstance(exc, sqlite3.OperationalError) and not _of_one_op(exc):
            return translate(exc)
        return None

    def _refused(self, exc: Exception) -> RingbearerError | None:
        return translate(exc) if isinstance(exc, sqlite3.Error) else None

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


# OperationalErrors that one op's data causes (SQLite's JSON functions on a
# value Python's json wrote, NaN say); any other is the store's own failure.
_DATA_WORDS = ("malformed JSON", "too big", "JSON cannot hold")


def _of_one_op(exc: sqlite3.OperationalError) -> bool:
    return any(words in str(exc) for words in _DATA_WORDS)
