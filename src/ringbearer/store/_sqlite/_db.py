"""The connection seam: aiosqlite through trio-asyncio, sqlite3 errors translated.

A :class:`Tx`'s methods are asyncio coroutines: a whole transaction runs as
one asyncio coroutine (see ``Writer``), so it crosses the trio/asyncio bridge
once, not once per statement. :func:`fetch` is the trio side, one statement
per crossing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiosqlite
import trio_asyncio

from ..._errors import StoreError, StoreFullError

Row = tuple[Any, ...]  # sqlite3 rows, as the default row factory gives them
WallClock = Callable[[], float]


def translate(exc: sqlite3.Error) -> StoreError:
    """The store's error for a sqlite3 one: a disk that refuses writes is ``StoreFullError``."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "full" in text or "readonly" in text or "read-only" in text or "disk I/O" in text
    ):
        return StoreFullError(f"the store refuses writes: {text}")
    return StoreError(f"store error: {text}")


def dumps(value: Any) -> str:
    """JSON as the store writes it: compact, UTF-8 kept as is.

    A string holding a lone surrogate (valid JSON, from ``"\\ud800"``) cannot
    be bound as UTF-8: such a value is written with ASCII escapes instead,
    which SQLite holds and ``json.loads`` reads back to the very same value.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, separators=(",", ":"))
    return text


class Tx:
    """A connection as a transaction sees it, from the asyncio side of the bridge."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(row) for row in rows])

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: Iterable[Any] = await self._conn.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]


async def fetch(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """One read from trio, through the bridge."""
    try:
        rows = await trio_asyncio.aio_as_trio(conn.execute_fetchall)(sql, params)
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    return list(rows)
