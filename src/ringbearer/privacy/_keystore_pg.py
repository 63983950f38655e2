"""The key store on PostgreSQL: the wrapped data keys that several daemons share.

Daemons that share one PostgreSQL store must share their subjects' keys too, and
for the reason :mod:`._keystore` gives, not in the messages' database: a copy of
that database alone must open nothing. :class:`PgKeyStore` therefore takes a URL
of its own (``[privacy] keys_url``) and refuses a database that holds the
message store. It keeps the contract of :class:`~._keystore.SqliteKeyStore`
(same table, same answers), on one connection used from trio a transaction at
a time in a worker thread, as the PostgreSQL store does (``store._pg._db``).

What differs from SQLite, and why:

- Several nodes create keys at once. A put is ``INSERT ... ON CONFLICT DO
  NOTHING``: of two nodes creating one subject at the same moment, the second
  waits for the first's commit and keeps its row, and both read that one back
  (the vault reads after it puts). A batch inserts in order of subject, so two
  batches that share subjects lock them in the same order and cannot deadlock.
- Puts still commit in groups: on PostgreSQL, too, each commit waits for a flush
  of the WAL (``synchronous_commit`` is set ``on`` for the session, whatever the
  server's default, so a key is durable when ``put`` returns), and a round trip.
- Subjects sort bytewise (``COLLATE "C"``), as SQLite sorts text, whatever the
  database's collation: rotation reads rows in that order.
- Destroying a key deletes its row, and PostgreSQL never overwrites a row: the
  deleted version stays in the table as a dead tuple until ``VACUUM`` removes it,
  so a destroy runs ``VACUUM subject_keys`` after it commits, on a connection of
  its own (``VACUUM`` cannot run in a transaction), as the store's scrub does.
  What that does not remove: ``VACUUM`` frees the tuple's space but does not zero
  it, so its bytes may stay in the table's file until new rows reuse that space
  (``VACUUM FULL`` rewrites the table, under an exclusive lock); it cannot remove
  a version that an open transaction may still see (another node's long read);
  the WAL holds the row as inserted until a checkpoint recycles its segment; and
  WAL archives, base backups and replicas keep what they were sent. The wrapped
  key is useless without the KEK, which is never in PostgreSQL; whoever holds
  both and such a copy can still open what the key sealed. Keep the key
  database's backups and archives apart from the messages', and short-lived.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import trio

from .._errors import StoreError
from ..store._pg._db import PgTx, Row, Session, connect
from ._keystore import SYSTEM, KeyRow, KeyStoreError, _Ticket

T = TypeVar("T")

SCHEMA_VERSION = 1
KEYS_LOCK = 0x6B657973  # "keys": the advisory lock the schema is created under
_APPLICATION = "ringbearer-keys"
_COLUMNS = "subject, kek_id, wrapped, identity, created_at"
_SCHEMA = """
CREATE TABLE subject_keys (
    subject TEXT COLLATE "C" PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    identity BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""
# The message store's own table: its database must not hold the keys.
_MESSAGE_STORE = "ringbearer_schema"


class PgKeyStore:
    """The key store in a PostgreSQL database of its own (see the module's docstring)."""

    def __init__(self, session: Session, url: str) -> None:
        self._session = session
        self._url = url  # for VACUUM's connection; may hold a password: never shown
        self._putting = trio.Lock()  # one group commit at a time; puts queue behind it
        self._pending: list[_Ticket] = []
        self.commits = 0  # transactions that put rows (group commit makes them fewer than puts)

    def __repr__(self) -> str:
        return f"<PgKeyStore commits={self.commits}>"

    @classmethod
    async def open(cls, url: str) -> PgKeyStore:
        """Connect to the key store at ``url``, creating its table if it has none."""
        try:
            conn = await trio.to_thread.run_sync(_connect, url)
        except StoreError as exc:
            raise KeyStoreError(f"cannot open the key store ([privacy] keys_url): {exc}") from exc
        keys = cls(Session(conn, functools.partial(_connect, url)), url)
        try:
            await keys._run(_migrate)
        except BaseException:
            conn.close()
            raise
        return keys

    async def get(self, subjects: Sequence[str]) -> dict[str, KeyRow]:
        wanted = list(dict.fromkeys(subjects))
        return await self._run(lambda tx: _select(tx, wanted)) if wanted else {}

    async def put(self, rows: Sequence[KeyRow]) -> None:
        ticket = _Ticket(rows)
        self._pending.append(ticket)
        async with self._putting:
            if not ticket.done:  # no one committed it while this waited: commit all that wait
                batch, self._pending = self._pending, []
                await self._commit(batch)
        if ticket.error is not None:
            raise ticket.error

    async def destroy(self, subject: str) -> bool:
        deleted = await self._run(lambda tx: _delete(tx, subject))
        # Even when there was no row: a destroy retried after a failed VACUUM finishes it.
        try:
            await trio.to_thread.run_sync(_vacuum, self._url)
        except psycopg.Error as exc:
            raise KeyStoreError(f"the key store could not VACUUM after a destroy: {exc}") from exc
        return deleted

    async def under_other_kek(self, kek_id: str, limit: int) -> list[KeyRow]:
        return await self._run(lambda tx: _under_other_kek(tx, kek_id, limit))

    async def replace_wrapped(self, rows: Sequence[KeyRow]) -> None:
        ordered = sorted(rows, key=lambda r: r.subject)  # lock rows in one order, as puts do
        await self._run(lambda tx: _replace_wrapped(tx, ordered))

    async def counts(self) -> dict[str, int]:
        rows = await self._run(_counts)
        return {str(kek_id): int(n) for kek_id, n in rows}

    async def count_subjects(self) -> int:
        rows = await self._run(_count_subjects)
        return int(rows[0][0])

    async def close(self) -> None:
        async with self._session.lock:
            await trio.to_thread.run_sync(self._session.close)

    async def _commit(self, batch: list[_Ticket]) -> None:
        # Failed until it commits: a batch cut short by anything at all is not durable.
        error: KeyStoreError | None = KeyStoreError("the key store could not put keys")
        rows = [r for t in batch for r in t.rows]
        try:
            await self._run(lambda tx: _insert(tx, rows))
            self.commits += 1
            error = None
        except KeyStoreError as exc:
            error = KeyStoreError(f"the key store could not put keys: {exc}")
            error.__cause__ = exc.__cause__
        finally:  # even when cancelled or failing: no one may wait on a batch for ever
            for ticket in batch:
                ticket.done, ticket.error = True, error

    async def _run(self, work: Callable[[PgTx], T]) -> T:
        """``work`` in a transaction of the store's connection, in a worker thread."""

        def run(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction():
                return work(PgTx(conn))

        async with self._session.lock:
            try:
                return await trio.to_thread.run_sync(self._session.run, run)
            except psycopg.Error as exc:
                raise KeyStoreError(f"the key store failed: {exc}") from exc


# -- what runs in the worker thread -------------------------------------------------------


def _connect(url: str) -> psycopg.Connection[Any]:
    conn = connect(url, application_name=_APPLICATION)
    try:
        # Whatever the server's default: a key is durable when put returns.
        conn.execute("SET synchronous_commit = on")
    except psycopg.Error as exc:
        conn.close()
        raise KeyStoreError(f"cannot configure the key store's connection: {exc}") from exc
    return conn


def _migrate(tx: PgTx) -> None:
    """Create the table if the database has none, under an advisory lock (nodes start at once)."""
    tx.execute("SELECT pg_advisory_xact_lock(%s)", (KEYS_LOCK,))
    if tx.fetchall("SELECT to_regclass(%s) IS NOT NULL", (_MESSAGE_STORE,))[0][0]:
        raise KeyStoreError(
            "the key store's database holds the message store: [privacy] keys_url must name"
            " a database of its own, so that a copy of the messages opens nothing"
        )
    tx.execute("CREATE TABLE IF NOT EXISTS ringbearer_keys_schema (version INTEGER NOT NULL)")
    rows = tx.fetchall("SELECT version FROM ringbearer_keys_schema")
    version = int(rows[0][0]) if rows else 0
    if version > SCHEMA_VERSION:
        raise KeyStoreError(
            f"the key store is of version {version}, newer than this ringbearer's {SCHEMA_VERSION}"
        )
    if version == 0:
        tx.execute(_SCHEMA)
        tx.execute("INSERT INTO ringbearer_keys_schema (version) VALUES (%s)", (SCHEMA_VERSION,))


def _row(values: Row) -> KeyRow:
    subject, kek_id, wrapped, identity, created_at = values
    return KeyRow(subject, kek_id, bytes(wrapped), bytes(identity), float(created_at))


def _select(tx: PgTx, subjects: list[str]) -> dict[str, KeyRow]:
    query = f"SELECT {_COLUMNS} FROM subject_keys WHERE subject = ANY(%s)"
    return {v[0]: _row(v) for v in tx.fetchall(query, (subjects,))}


def _insert(tx: PgTx, rows: list[KeyRow]) -> None:
    # A stable sort: of two rows for one subject in a batch the first still wins, as in
    # SQLite; and every batch takes its subjects' locks in one order (no deadlock).
    ordered = sorted(rows, key=lambda r: r.subject)
    tx.executemany(
        f"INSERT INTO subject_keys ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s)"
        " ON CONFLICT (subject) DO NOTHING",  # an existing subject keeps its key
        [(r.subject, r.kek_id, r.wrapped, r.identity, r.created_at) for r in ordered],
    )


def _delete(tx: PgTx, subject: str) -> bool:
    return bool(tx.fetchall("DELETE FROM subject_keys WHERE subject = %s RETURNING 1", (subject,)))


def _vacuum(url: str) -> None:
    """``VACUUM subject_keys`` on a connection of its own (blocking): the dead tuple goes."""
    with psycopg.connect(url, application_name=_APPLICATION, autocommit=True) as conn:
        conn.execute("VACUUM subject_keys")


def _under_other_kek(tx: PgTx, kek_id: str, limit: int) -> list[KeyRow]:
    query = f"SELECT {_COLUMNS} FROM subject_keys WHERE kek_id != %s ORDER BY subject LIMIT %s"
    return [_row(v) for v in tx.fetchall(query, (kek_id, limit))]


def _replace_wrapped(tx: PgTx, rows: list[KeyRow]) -> None:
    # Only the row that was read: one destroyed (or destroyed and created again) since
    # then is left as it is.
    tx.executemany(
        "UPDATE subject_keys SET kek_id = %s, wrapped = %s WHERE subject = %s AND identity = %s",
        [(r.kek_id, r.wrapped, r.subject, r.identity) for r in rows],
    )


def _counts(tx: PgTx) -> list[Row]:
    return tx.fetchall("SELECT kek_id, count(*) FROM subject_keys GROUP BY kek_id")


def _count_subjects(tx: PgTx) -> list[Row]:
    return tx.fetchall(
        "SELECT count(*) FROM subject_keys WHERE substr(subject, 1, 4) != %s", (SYSTEM,)
    )
