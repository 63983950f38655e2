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
- Each node caches the keys it unwrapped, and a destroy on one node empties only
  that node's cache. A destroy therefore also logs the subject in
  ``destroyed_keys``, in the transaction that deletes the key, under an increasing
  sequence number, and every node follows that log (:mod:`._key_follow`) to forget
  the key too. Destroys take the log's lock in turn, from before their number is
  drawn until they commit, so numbers become visible in order: a reader that has
  seen number n has seen every destroy below it, and may keep n as its cursor.
  (Destroys are rare; plain reads of the log do not wait for that lock.) Only a
  destroy that deleted a row is logged: with no row, no node can have the key
  cached (it can only have read it before the destroy that deleted the row, which
  was logged), and a destroy retried, or of a subject never seen, adds nothing.
- The log is pruned of rows older than a retention (7 days by default), by every
  destroy and by :meth:`PgKeyStore.prune_destroyed`; how far it was cut is kept
  (``destroyed_keys_pruned``), so that a node whose cursor is older is told
  (:class:`~._key_follow.DestroyLogPruned`) and drops its whole cache. The log holds
  subject ids (opaque) and times, never a key.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import trio

from .._errors import StoreError
from ..store._pg._db import PgTx, Row, Session, connect
from ._key_follow import DESTROY_BATCH, DestroyLogPruned
from ._keystore import SYSTEM, KeyRow, KeyStoreError, _Ticket

T = TypeVar("T")

KEYS_LOCK = 0x6B657973  # "keys": the advisory lock the schema is created under
DESTROY_RETENTION = 7 * 86_400.0  # seconds a destroy stays in the log for other nodes to read
_APPLICATION = "ringbearer-keys"
_COLUMNS = "subject, kek_id, wrapped, identity, created_at"
# Version n of the schema is made by the first n of these, in order.
_MIGRATIONS = (
    """
    CREATE TABLE subject_keys (
        subject TEXT COLLATE "C" PRIMARY KEY,
        kek_id TEXT NOT NULL,
        wrapped BYTEA NOT NULL,
        identity BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE destroyed_keys (
        seq BIGSERIAL PRIMARY KEY,
        subject TEXT COLLATE "C" NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE destroyed_keys_pruned (through BIGINT NOT NULL);
    INSERT INTO destroyed_keys_pruned (through) VALUES (0)
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
# The message store's own table: its database must not hold the keys.
_MESSAGE_STORE = "ringbearer_schema"


class PgKeyStore:
    """The key store in a PostgreSQL database of its own (see the module's docstring)."""

    def __init__(
        self,
        session: Session,
        url: str,
        *,
        wall: Callable[[], float] = time.time,
        retention: float = DESTROY_RETENTION,
    ) -> None:
        self._session = session
        self._url = url  # for VACUUM's connection; may hold a password: never shown
        self._wall = wall  # stamps the destroy log's rows, and prunes them
        self._retention = retention
        self._putting = trio.Lock()  # one group commit at a time; puts queue behind it
        self._pending: list[_Ticket] = []
        self.commits = 0  # transactions that put rows (group commit makes them fewer than puts)

    def __repr__(self) -> str:
        return f"<PgKeyStore commits={self.commits}>"

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        wall: Callable[[], float] = time.time,
        retention: float = DESTROY_RETENTION,
    ) -> PgKeyStore:
        """Connect to the key store at ``url``, creating or migrating its tables.

        ``retention``: seconds a destroy stays in the log, for nodes that follow it.
        """
        try:
            conn = await trio.to_thread.run_sync(_connect, url)
        except StoreError as exc:
            raise KeyStoreError(f"cannot open the key store ([privacy] keys_url): {exc}") from exc
        session = Session(conn, functools.partial(_connect, url))
        keys = cls(session, url, wall=wall, retention=retention)
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
        at = self._wall()
        deleted = await self._run(lambda tx: _delete(tx, subject, at, at - self._retention))
        # Even when there was no row: a destroy retried after a failed VACUUM finishes it.
        try:
            await trio.to_thread.run_sync(_vacuum, self._url)
        except psycopg.Error as exc:
            raise KeyStoreError(f"the key store could not VACUUM after a destroy: {exc}") from exc
        return deleted

    async def destroyed_since(
        self, seq: int, *, limit: int = DESTROY_BATCH
    ) -> tuple[list[str], int]:
        """Up to ``limit`` subjects destroyed after ``seq``, in order, and the newest seq read
        (``seq`` when none); DestroyLogPruned if some after ``seq`` are pruned.

        Bounded, so that a node far behind does not read a week's log in one go: the
        caller reads again from the seq returned while it gets ``limit`` subjects.
        """
        return await self._run(lambda tx: _destroyed_since(tx, seq, limit))

    async def last_destroyed(self) -> int:
        """The newest destroy's seq (0 if none ever): where a node with an empty cache starts."""
        return await self._run(_newest)

    async def prune_destroyed(self, before: float) -> int:
        """Cut the destroy log's rows stamped before ``before`` (wall clock); how many went.

        A destroy prunes by the store's retention; this is for a node that wants it sooner.
        """
        return await self._run(lambda tx: _prune(tx, before))

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
    """Create the tables, or bring an older database's forward, under an advisory lock
    (nodes start at once). A node still running an older ringbearer keeps destroying
    without logging (it will not open the database again): upgrade every node."""
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
        tx.execute("INSERT INTO ringbearer_keys_schema (version) VALUES (0)")
    for ddl in _MIGRATIONS[version:]:  # an older database is brought forward in place
        tx.execute(ddl)
    if version < SCHEMA_VERSION:
        tx.execute("UPDATE ringbearer_keys_schema SET version = %s", (SCHEMA_VERSION,))


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


def _delete(tx: PgTx, subject: str, at: float, before: float) -> bool:
    """Delete the row and, if there was one, log the destroy; prune the log by ``before``."""
    _lock_log(tx)  # before the log's number is drawn (see the module's docstring)
    gone = bool(tx.fetchall("DELETE FROM subject_keys WHERE subject = %s RETURNING 1", (subject,)))
    if gone:
        tx.execute("INSERT INTO destroyed_keys (subject, at) VALUES (%s, %s)", (subject, at))
    _prune_locked(tx, before)
    return gone


def _lock_log(tx: PgTx) -> None:
    # EXCLUSIVE: destroys and prunes wait for each other until commit; SELECTs do not wait.
    tx.execute("LOCK TABLE destroyed_keys IN EXCLUSIVE MODE")


def _prune(tx: PgTx, before: float) -> int:
    _lock_log(tx)
    return _prune_locked(tx, before)


def _prune_locked(tx: PgTx, before: float) -> int:
    """Cut the log up to its first row stamped at or after ``before``; note how far it was cut.

    A prefix, not every old row: nodes' clocks differ a little, and a row stamped early
    after one stamped late is kept, so the log never has a hole a reader cannot see. How
    far it was cut is recorded, not guessed from the oldest row kept: the number of a
    destroy that rolled back is never used, and would look like a cut.
    """
    rows = tx.fetchall(
        """
        WITH gone AS (
            DELETE FROM destroyed_keys WHERE seq < coalesce(
                (SELECT min(seq) FROM destroyed_keys WHERE at >= %s),
                (SELECT max(seq) + 1 FROM destroyed_keys))
            RETURNING seq
        )
        UPDATE destroyed_keys_pruned SET through = greatest(through, (SELECT max(seq) FROM gone))
        RETURNING (SELECT count(*) FROM gone)
        """,
        (before,),
    )
    return int(rows[0][0])


def _destroyed_since(tx: PgTx, seq: int, limit: int) -> tuple[list[str], int]:
    rows = tx.fetchall(
        "SELECT seq, subject FROM destroyed_keys WHERE seq > %s ORDER BY seq LIMIT %s",
        (seq, limit),
    )
    # Read after the rows, each statement with a snapshot of its own: a prune between the
    # two shows here, so rows read before a cut are never taken for a whole log.
    through = int(tx.fetchall("SELECT through FROM destroyed_keys_pruned")[0][0])
    if seq < through:
        raise DestroyLogPruned(seq, through, _newest(tx))
    return [str(r[1]) for r in rows], int(rows[-1][0]) if rows else seq


def _newest(tx: PgTx) -> int:
    rows = tx.fetchall(
        "SELECT greatest((SELECT max(seq) FROM destroyed_keys),"
        " (SELECT through FROM destroyed_keys_pruned))"
    )
    return int(rows[0][0] or 0)


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
