"""The connection seam: psycopg 3 used synchronously, a transaction at a time in a trio
worker thread; psycopg's errors translated to the store's.

A :class:`PgTx` is what a transaction's statements see. Its methods block: a whole
transaction (the writer's batch, or a read) runs in one worker thread, so it crosses
into the thread once, not once per statement. Statements use psycopg's ``%s``
placeholders; values are adapted by psycopg (JSON goes in as text from :func:`dumps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import trio

from ..._errors import StoreError, StoreFullError
from .._sqlite._db import dumps as dumps

T = TypeVar("T")
Row = tuple[Any, ...]
WallClock = Callable[[], float]


def translate(exc: psycopg.Error) -> StoreError:
    """The store's error for a psycopg one: a disk that refuses writes is ``StoreFullError``."""
    if isinstance(exc, psycopg.errors.DiskFull):
        return StoreFullError(f"the store refuses writes: {exc}")
    return StoreError(f"store error: {type(exc).__name__}: {exc}")


def is_store_failure(exc: Exception) -> bool:
    """Whether ``exc`` is the database's own failure (connection, disk, shutdown), not one
    statement's data (a constraint, a value it cannot hold)."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


class PgTx:
    """A connection inside a transaction, as the store's statements use it."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """One statement; without parameters, a script of several (a migration)."""
        self._conn.execute(sql, params or None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, [tuple(row) for row in rows])

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in self._conn.execute(sql, params).fetchall()]


def connect(
    url: str, *, application_name: str = "ringbearer", idle_in_transaction: float | None = None
) -> psycopg.Connection[Any]:
    """A connection (autocommit: each use opens its own transaction); StoreError if refused.

    ``idle_in_transaction``: seconds after which the server ends this session if it sits
    inside a transaction waiting for its client (a node paused, SIGSTOP or a long GC,
    between two statements): its row locks go with it, so that the other nodes can take
    its work over instead of skipping the locked rows for as long as it sleeps.
    """
    options = ""
    if idle_in_transaction is not None:
        ms = max(1, round(idle_in_transaction * 1000))
        options = f"-c idle_in_transaction_session_timeout={ms}"
    try:
        return psycopg.connect(
            url, application_name=application_name, autocommit=True, options=options
        )
    except psycopg.Error as exc:
        raise translate(exc) from exc


class Session:
    """One connection used from trio: each call a transaction in a worker thread, one at a
    time (a psycopg connection runs one statement at a time anyway). A connection found
    broken (the server restarted, the network dropped it) is opened again before the next
    transaction, when the session knows how (``reopen``); the transaction that found it broken
    fails with the store's error, and its caller decides (the writer keeps settles)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        reopen: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.conn = conn
        self._reopen = reopen  # how to connect again (blocking: called in the worker thread)
        self.lock = trio.Lock()  # one transaction at a time on the connection

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on the connection, in the calling (worker) thread; the lock held."""
        if self.conn.broken and self._reopen is not None:
            self.conn.close()
            self.conn = self._reopen()
        return work(self.conn)

    async def transaction(self, work: Callable[[PgTx], T]) -> T:
        """Run ``work`` in a transaction (committed if it returns, rolled back if it raises)."""

        def run(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction():
                return work(PgTx(conn))

        async with self.lock:
            for attempt in (1, 2):
                try:
                    return await trio.to_thread.run_sync(self.run, run)
                except psycopg.OperationalError as exc:
                    # The server ended the session (a restart, a paused node's idle
                    # transaction timed out): this transaction did not commit. Once more,
                    # on a new connection (the session's work is reads and idempotent
                    # writes; the writer's batches do not come this way).
                    if attempt == 2 or not self.conn.broken or self._reopen is None:
                        raise translate(exc) from exc
                except psycopg.Error as exc:
                    raise translate(exc) from exc
        raise AssertionError("unreachable")

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """One read, in a transaction of its own."""
        return await self.transaction(lambda tx: tx.fetchall(sql, params))

    def close(self) -> None:
        self.conn.close()
