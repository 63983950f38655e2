"""Opening the file: the two connections, WAL and pragmas, migrations, the state to start from."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import attrs
import trio
import trio_asyncio

from ..._delivery import Priority
from ..._errors import StoreError
from .._model import Counters
from .._schema import MIGRATIONS, SCHEMA_VERSION, statements
from ._db import Tx, fetch, translate


@asynccontextmanager
async def connections(
    path: Path, synchronous: str
) -> AsyncIterator[tuple[aiosqlite.Connection, aiosqlite.Connection]]:
    """The writing connection (schema migrated) and a read-only one; sqlite3 errors translated."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await trio_asyncio.aio_as_trio(aiosqlite.connect)(str(path), isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the store at {path}: {exc}") from exc
    try:
        await trio_asyncio.aio_as_trio(_prepare)(writer, synchronous)
        reader = await trio_asyncio.aio_as_trio(aiosqlite.connect)(
            f"file:{path}?mode=ro", uri=True, isolation_level=None
        )
        try:
            yield writer, reader
        finally:
            await trio_asyncio.aio_as_trio(reader.close)()
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    finally:
        with trio.CancelScope(shield=True):
            await trio_asyncio.aio_as_trio(writer.close)()


@attrs.frozen
class Start:
    """What a store starts from: the next message id, queue counters, targets with deadlines."""

    next_id: int
    counters: Counters
    deadline_targets: set[str]


async def load_start(conn: aiosqlite.Connection) -> Start:
    """Read the state a store starts from (on the writing connection, before the writer runs)."""
    rows = await fetch(
        conn,
        "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM messages"
        " UNION ALL SELECT MAX(message_id) FROM events)",
    )
    top = rows[0][0] if rows and rows[0][0] is not None else 0
    return Start(int(top) + 1, await _counters(conn), await _deadline_targets(conn))


async def _deadline_targets(conn: aiosqlite.Connection) -> set[str]:
    # Each query here names its partial index: left to itself, SQLite scans the
    # whole table (9 s at start-up with a million queued messages; 0.1 s so).
    rows = await fetch(
        conn,
        "SELECT DISTINCT target FROM messages INDEXED BY messages_deadlines_open"
        " WHERE deliver_by IS NOT NULL AND status IN ('queued', 'inflight')",
    )
    return {target for (target,) in rows}


async def _counters(conn: aiosqlite.Connection) -> Counters:
    counters = Counters()
    rows = await fetch(
        conn,
        "SELECT target, priority, COUNT(*) FROM messages INDEXED BY messages_ready"
        " WHERE status = 'queued' GROUP BY target, priority",
    )
    for target, priority, count in rows:
        counters.queued(target, Priority(priority), count)
    rows = await fetch(
        conn,
        "SELECT target, COUNT(*) FROM messages INDEXED BY messages_inflight"
        " WHERE status = 'inflight' GROUP BY target",
    )
    for target, count in rows:
        counters.inflight(target, count)
    return counters


async def _prepare(conn: aiosqlite.Connection, synchronous: str) -> None:
    tx = Tx(conn)
    mode = await tx.fetchall("PRAGMA journal_mode = WAL")
    if not mode or str(mode[0][0]).lower() != "wal":
        raise StoreError(f"the store needs WAL journaling, got {mode}")
    await tx.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    await tx.execute("PRAGMA busy_timeout = 5000")
    await tx.execute("PRAGMA cache_size = -65536")
    await tx.execute("PRAGMA foreign_keys = ON")
    # Deleted and overwritten content is zeroed, not left in free space: an
    # erased subject's key or payload must not survive in the file.
    await tx.execute("PRAGMA secure_delete = ON")
    await _migrate(tx)


async def _migrate(tx: Tx) -> None:
    ((version,),) = await tx.fetchall("PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {version}, newer than this program's "
            f"{SCHEMA_VERSION}: refusing to touch it"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        await tx.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(MIGRATIONS[number - 1]):
                await tx.execute(statement)
            await tx.execute(f"PRAGMA user_version = {number}")
            await tx.execute("COMMIT")
        except sqlite3.Error:
            await tx.execute("ROLLBACK")
            raise
