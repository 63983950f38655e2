"""The key store: where the wrapped data keys of data subjects are kept, apart from the database.

Erasure destroys a subject's data key. A copy of the main database taken
before an erasure must not yield the subject's payloads afterwards, even to
someone holding the KEK, so data keys never sit in the main database: they
live in a small SQLite file of their own (``keys.db``). It runs with
``secure_delete`` on, and destroying a key deletes its row and then
truncates the WAL, so neither the file's free space nor its WAL keeps the
wrapped key or the sealed identity.

Two implementations share one contract: :class:`MemoryKeyStore` (the fake)
and :class:`SqliteKeyStore`. A row, once written, changes only by a rewrap
(key rotation) and is never resurrected once destroyed: a rewrap applies only
to the very row it was read from, recognised by its sealed identity (sealed
under a fresh nonce, so a subject created again has another).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import attrs
import trio

from .._errors import StoreError

T = TypeVar("T")

SYSTEM = "sys:"  # the prefix of a system row's subject (the pepper, sealed tokens)
SCHEMA_VERSION = 1
_CHUNK = 500  # subjects per SELECT ... IN (...): well under SQLite's variable limit


class KeyStoreError(StoreError):
    """The key store failed; nothing the operation covered was done."""


@attrs.frozen
class KeyRow:
    """A data subject's wrapped data key; ``repr`` shows neither key nor identity."""

    subject: str  # the subject's opaque id ("s_…"), or a system name ("sys:…")
    kek_id: str  # which KEK wrapped it
    wrapped: bytes = attrs.field(repr=False)  # Kek.wrap(subject, data_key)
    identity: bytes = attrs.field(repr=False)  # the identifier, sealed under the data key
    created_at: float  # wall clock


class KeyStore(Protocol):
    """Where wrapped keys are kept (see the module's docstring)."""

    async def get(self, subjects: Sequence[str]) -> dict[str, KeyRow]:
        """The rows of those of ``subjects`` that have one."""
        ...

    async def put(self, rows: Sequence[KeyRow]) -> None:
        """Insert rows whose subject is new (an existing subject keeps its key); durable on return.

        Concurrent callers share one transaction (group commit).
        """
        ...

    async def destroy(self, subject: str) -> bool:
        """Delete the row, no copy left in free space or WAL; durable; False if there was none."""
        ...

    async def under_other_kek(self, kek_id: str, limit: int) -> list[KeyRow]:
        """Up to ``limit`` rows wrapped under a KEK other than ``kek_id``, by subject."""
        ...

    async def replace_wrapped(self, rows: Sequence[KeyRow]) -> None:
        """Store each row's new ``kek_id`` and ``wrapped``, if the row is still the one read."""
        ...

    async def counts(self) -> dict[str, int]:
        """The number of rows by ``kek_id``, system rows included."""
        ...

    async def count_subjects(self) -> int:
        """The number of rows of data subjects (system rows left out)."""
        ...

    async def close(self) -> None: ...


@attrs.define
class MemoryKeyStore:
    """The in-memory key store: the fake for tests (nothing is durable)."""

    rows: dict[str, KeyRow] = attrs.Factory(dict)
    closed: bool = False

    async def get(self, subjects: Sequence[str]) -> dict[str, KeyRow]:
        await self._enter()
        return {s: self.rows[s] for s in subjects if s in self.rows}

    async def put(self, rows: Sequence[KeyRow]) -> None:
        await self._enter()
        for row in rows:
            self.rows.setdefault(row.subject, row)

    async def destroy(self, subject: str) -> bool:
        await self._enter()
        return self.rows.pop(subject, None) is not None

    async def under_other_kek(self, kek_id: str, limit: int) -> list[KeyRow]:
        await self._enter()
        others = sorted(s for s, row in self.rows.items() if row.kek_id != kek_id)
        return [self.rows[s] for s in others[:limit]]

    async def replace_wrapped(self, rows: Sequence[KeyRow]) -> None:
        await self._enter()
        for row in rows:
            held = self.rows.get(row.subject)
            if held is not None and held.identity == row.identity:
                self.rows[row.subject] = attrs.evolve(held, kek_id=row.kek_id, wrapped=row.wrapped)

    async def counts(self) -> dict[str, int]:
        await self._enter()
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.kek_id] = counts.get(row.kek_id, 0) + 1
        return counts

    async def count_subjects(self) -> int:
        await self._enter()
        return sum(not s.startswith(SYSTEM) for s in self.rows)

    async def close(self) -> None:
        self.closed = True

    async def _enter(self) -> None:
        # A real store yields to other tasks on every call; the fake does too, so
        # that tests see the same interleavings.
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise KeyStoreError("the key store is closed")


@attrs.define
class _Ticket:
    """Rows waiting to be put, and how their commit went."""

    rows: Sequence[KeyRow]
    done: bool = False
    error: KeyStoreError | None = None


class SqliteKeyStore:
    """The key store in its own SQLite file, run in a worker thread, one call at a time."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._lock = trio.Lock()  # one connection: one call at a time
        self._pending: list[_Ticket] = []
        self.commits = 0  # transactions that put rows (group commit makes them fewer than puts)

    @classmethod
    async def open(cls, path: Path) -> SqliteKeyStore:
        """Open (creating it with mode 0600 if absent) the key store at ``path``."""
        try:
            db = await trio.to_thread.run_sync(_connect, path)
        except (sqlite3.Error, OSError) as exc:
            raise KeyStoreError(f"cannot open the key store {path}: {exc}") from exc
        return cls(db)

    async def get(self, subjects: Sequence[str]) -> dict[str, KeyRow]:
        return await self._run(_select, self._db, list(dict.fromkeys(subjects)))

    async def put(self, rows: Sequence[KeyRow]) -> None:
        ticket = _Ticket(rows)
        self._pending.append(ticket)
        async with self._lock:
            if not ticket.done:  # no one committed it while this waited: commit all that wait
                batch, self._pending = self._pending, []
                await self._commit(batch)
        if ticket.error is not None:
            raise ticket.error

    async def destroy(self, subject: str) -> bool:
        return await self._run(_destroy, self._db, subject)

    async def under_other_kek(self, kek_id: str, limit: int) -> list[KeyRow]:
        return await self._run(_under_other_kek, self._db, kek_id, limit)

    async def replace_wrapped(self, rows: Sequence[KeyRow]) -> None:
        await self._run(_replace_wrapped, self._db, list(rows))

    async def counts(self) -> dict[str, int]:
        return await self._run(_counts, self._db)

    async def count_subjects(self) -> int:
        return await self._run(_count_subjects, self._db)

    async def close(self) -> None:
        async with self._lock:
            await trio.to_thread.run_sync(self._db.close)

    async def _commit(self, batch: list[_Ticket]) -> None:
        # Failed until it commits: a batch cut short by anything at all is not durable.
        error: KeyStoreError | None = KeyStoreError("the key store could not put keys")
        try:
            await trio.to_thread.run_sync(_insert, self._db, [r for t in batch for r in t.rows])
            self.commits += 1
            error = None
        except sqlite3.Error as exc:
            error = KeyStoreError(f"the key store could not put keys: {exc}")
            error.__cause__ = exc
        finally:  # even when cancelled or failing: no one may wait on a batch for ever
            for ticket in batch:
                ticket.done, ticket.error = True, error

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(fn, *args)
            except sqlite3.Error as exc:
                raise KeyStoreError(f"the key store failed: {exc}") from exc


# -- what runs in the worker thread -------------------------------------------------------


_COLUMNS = "subject, kek_id, wrapped, identity, created_at"
_SCHEMA = """
CREATE TABLE subject_keys (
    subject TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    identity BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""


def _connect(path: Path) -> sqlite3.Connection:
    # Create the file private before SQLite does; its -wal and -shm take its mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _configure(db)
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _configure(db: sqlite3.Connection) -> None:
    (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"the key store cannot use a WAL (journal mode {mode})")
    db.execute("PRAGMA synchronous=FULL")  # a key is durable when put returns
    db.execute("PRAGMA secure_delete=ON")  # a destroyed key leaves zeros, not its bytes
    (secure,) = db.execute("PRAGMA secure_delete").fetchone()
    if secure != 1:
        raise sqlite3.OperationalError("the key store's SQLite cannot turn secure_delete on")


def _migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise sqlite3.OperationalError(
            f"the key store is of version {version}, newer than this ringbearer's {SCHEMA_VERSION}"
        )
    if version == 0:
        with _transaction(db):
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _row(values: tuple[str, str, bytes, bytes, float]) -> KeyRow:
    subject, kek_id, wrapped, identity, created_at = values
    return KeyRow(subject, kek_id, bytes(wrapped), bytes(identity), created_at)


def _select(db: sqlite3.Connection, subjects: list[str]) -> dict[str, KeyRow]:
    found: dict[str, KeyRow] = {}
    for at in range(0, len(subjects), _CHUNK):
        chunk = subjects[at : at + _CHUNK]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT {_COLUMNS} FROM subject_keys WHERE subject IN ({marks})"
        found.update((v[0], _row(v)) for v in db.execute(query, chunk))
    return found


def _insert(db: sqlite3.Connection, rows: list[KeyRow]) -> None:
    values = [(r.subject, r.kek_id, r.wrapped, r.identity, r.created_at) for r in rows]
    with _transaction(db):
        # OR IGNORE: an existing subject keeps its key (two writers raced to create it).
        db.executemany(
            f"INSERT OR IGNORE INTO subject_keys ({_COLUMNS}) VALUES (?,?,?,?,?)", values
        )


def _destroy(db: sqlite3.Connection, subject: str) -> bool:
    with _transaction(db):
        deleted = db.execute("DELETE FROM subject_keys WHERE subject = ?", (subject,)).rowcount
    # secure_delete zeroed the row in its page; the checkpoint carries that page
    # into the file and empties the WAL, whose older frames still held the row.
    # Run even when there was no row: a destroy retried after a failed
    # checkpoint finishes the job.
    (busy, _, _) = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise sqlite3.OperationalError("the key store's WAL could not be emptied (busy)")
    return bool(deleted)


def _under_other_kek(db: sqlite3.Connection, kek_id: str, limit: int) -> list[KeyRow]:
    query = f"SELECT {_COLUMNS} FROM subject_keys WHERE kek_id != ? ORDER BY subject LIMIT ?"
    return [_row(v) for v in db.execute(query, (kek_id, limit))]


def _replace_wrapped(db: sqlite3.Connection, rows: list[KeyRow]) -> None:
    values = [(r.kek_id, r.wrapped, r.subject, r.identity) for r in rows]
    with _transaction(db):
        # Only the row that was read: one destroyed (or destroyed and created
        # again) since then is left as it is.
        db.executemany(
            "UPDATE subject_keys SET kek_id = ?, wrapped = ? WHERE subject = ? AND identity = ?",
            values,
        )


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    query = "SELECT kek_id, count(*) FROM subject_keys GROUP BY kek_id"
    return {kek_id: n for kek_id, n in db.execute(query)}


def _count_subjects(db: sqlite3.Connection) -> int:
    query = "SELECT count(*) FROM subject_keys WHERE substr(subject, 1, 4) != ?"
    (n,) = db.execute(query, (SYSTEM,)).fetchone()
    return int(n)
