"""The SQLite store: aiosqlite through trio-asyncio, WAL, one writer with group commit.

Only this module touches the asyncio bridge. Every write goes through one
writer task: submits, claims, settled attempts and audit events that arrive
while a transaction is being committed are gathered and committed together in
the next one, so the cost of a commit (and of the bridge) is paid per batch,
not per message. A submit is acknowledged only once its transaction commits.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import attrs
import trio
import trio_asyncio

from .._delivery import Priority
from .._errors import StoreError, StoreFullError
from ._model import (
    ALL_PRIORITIES,
    Accepted,
    BreakerRecord,
    Claimed,
    Counters,
    DeadLetter,
    Event,
    MessageStatus,
    NewMessage,
    Settle,
    SettleKind,
    Span,
)
from ._protocol import NullListener, StoreListener, StoreStatistics
from ._schema import MIGRATIONS, SCHEMA_VERSION

T = TypeVar("T")
Handoff = Callable[[list[Claimed]], None]
Row = tuple[Any, ...]  # sqlite3 rows, as the default row factory gives them
WallClock = Callable[[], float]


def _translate(exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "full" in text or "readonly" in text or "read-only" in text or "disk I/O" in text
    ):
        return StoreFullError(f"the store refuses writes: {text}")
    return StoreError(f"store error: {text}")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Tx:
    """The writer's view of its connection during one transaction.

    Its methods are asyncio coroutines: a whole transaction runs as one
    asyncio coroutine (see ``SqliteStore._commit``), so it crosses the
    trio/asyncio bridge once, not once per statement.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(row) for row in rows])

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: Iterable[Any] = await self._conn.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]


class _Kind(enum.Enum):
    SUBMIT = "submit"
    CLAIM = "claim"
    SETTLE = "settle"
    EVENT = "event"
    CUSTOM = "custom"


@attrs.define
class _Op:
    """A unit of work for the writer; ops of one kind in a batch share statements."""

    kind: _Kind
    data: Any
    done: trio.Event | None = None
    result: Any = None
    error: StoreError | None = None


@attrs.define
class _Batch:
    """What one transaction writes, gathered from the ops waiting for the writer."""

    now: float
    ops: list[_Op]
    fresh: list[tuple[int, NewMessage]] = attrs.Factory(list)
    settled: list[Settle] = attrs.Factory(list)
    claimed: list[Claimed] = attrs.Factory(list)
    handoffs: list[tuple[str, tuple[int, Handoff, Span], list[Claimed]]] = attrs.Factory(list)

    def of(self, kind: _Kind) -> list[_Op]:
        return [op for op in self.ops if op.kind is kind]


class SqliteStore:
    """The durable outbox. Open it with :meth:`open` inside a trio-asyncio loop."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        clock: WallClock,
        batch_max: int,
        next_id: int,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._batch_max = batch_max
        self._next_id = next_id
        self._ops: collections.deque[_Op] = collections.deque()
        self._wake = trio.Event()
        self._room = trio.Semaphore(batch_max * 8)
        self._idle = trio.Event()
        self._idle.set()
        self.counters = Counters()
        self.listener: StoreListener = NullListener()
        self.commits = 0
        self.committed_ops = 0
        self.last_error: str | None = None
        self._parked: dict[str, tuple[int, Handoff, Span]] = {}
        self._deadline_targets: set[str] = set()  # targets with messages that have deadlines

    # -- opening -----------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path,
        *,
        clock: WallClock,
        synchronous: str = "full",
        batch_max: int = 1024,
    ) -> AsyncIterator[SqliteStore]:
        """Open (creating or migrating) the database and run its writer."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = await trio_asyncio.aio_as_trio(aiosqlite.connect)(
                str(path), isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from exc
        try:
            await trio_asyncio.aio_as_trio(_prepare)(writer, synchronous)
            reader = await trio_asyncio.aio_as_trio(aiosqlite.connect)(
                f"file:{path}?mode=ro", uri=True, isolation_level=None
            )
            try:
                next_id = await trio_asyncio.aio_as_trio(_next_message_id)(writer)
                store = cls(writer, reader, clock=clock, batch_max=batch_max, next_id=next_id)
                await store._load_counters()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(store._write_loop)
                    try:
                        yield store
                    finally:
                        with trio.CancelScope(shield=True), trio.move_on_after(30):
                            await store.flush()
                        nursery.cancel_scope.cancel()
            finally:
                await trio_asyncio.aio_as_trio(reader.close)()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            with trio.CancelScope(shield=True):
                await trio_asyncio.aio_as_trio(writer.close)()

    async def _load_counters(self) -> None:
        # Each query names its partial index: left to itself, SQLite scans the
        # whole table (9 s at start-up with a million queued messages; 0.1 s so).
        rows = await self._read(
            "SELECT DISTINCT target FROM messages INDEXED BY messages_deadlines_open"
            " WHERE deliver_by IS NOT NULL AND status IN ('queued', 'inflight')"
        )
        self._deadline_targets = {target for (target,) in rows}
        rows = await self._read(
            "SELECT target, priority, COUNT(*) FROM messages INDEXED BY messages_ready"
            " WHERE status = 'queued' GROUP BY target, priority"
        )
        for target, priority, count in rows:
            self.counters.queued(target, Priority(priority), count)
        rows = await self._read(
            "SELECT target, COUNT(*) FROM messages INDEXED BY messages_inflight"
            " WHERE status = 'inflight' GROUP BY target"
        )
        for target, count in rows:
            self.counters.inflight(target, count)

    # -- the writer ----------------------------------------------------------------

    async def _enqueue(self, op: _Op) -> Any:
        try:
            # The usual case has room: take it without a trip through the scheduler.
            self._room.acquire_nowait()
        except trio.WouldBlock:
            await self._room.acquire()
        self._push(op)
        if op.done is None:
            return None
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def _push(self, op: _Op) -> None:
        self._ops.append(op)
        if self._idle.is_set():
            self._idle = trio.Event()
        self._wake.set()

    def _enqueue_nowait(self, op: _Op) -> None:
        # For synchronous hooks (breaker transitions, audit events): small and
        # rare, so they skip back-pressure rather than block their caller.
        self._push(op)

    async def _write_loop(self) -> None:
        while True:
            if not self._ops:
                self._idle.set()
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            ops = [self._ops.popleft() for _ in range(min(len(self._ops), self._batch_max))]
            batch = _Batch(now=self._clock(), ops=ops)
            await self._commit(batch)
            for op in ops:
                if op.kind is not _Kind.EVENT:
                    self._room.release()

    async def _commit(self, batch: _Batch) -> None:
        try:
            await trio_asyncio.aio_as_trio(self._transaction)(batch)
        except sqlite3.Error as exc:
            self._fail(batch, _translate(exc))
            return
        self.commits += 1
        self.committed_ops += len(batch.ops)
        self._after_commit(batch)

    async def _transaction(self, batch: _Batch) -> None:
        """One batch, BEGIN to COMMIT, as a single asyncio coroutine."""
        tx = _Tx(self._writer)
        await tx.execute("BEGIN IMMEDIATE")
        try:
            for op in batch.of(_Kind.CUSTOM):
                op.result = await op.data(tx)
            await self._write_submits(tx, batch)
            await self._claim_parked(tx, batch)
            await self._write_settles(tx, batch)
            for op in batch.of(_Kind.CLAIM):
                target, limit, span = op.data
                op.result = await self._claim(tx, target, limit, batch.now, span)
                batch.claimed.extend(op.result)
            events = [op.data for op in batch.of(_Kind.EVENT)]
            if events:
                await tx.executemany(_INSERT_EVENT, events)
            await tx.execute("COMMIT")
        except BaseException:
            await self._rollback(tx)
            raise

    async def _claim_parked(self, tx: _Tx, batch: _Batch) -> None:
        """Claim fresh messages for idle dispatchers in the submit's own transaction."""
        for target in {m.target for _, m in batch.fresh}:
            parked = self._parked.pop(target, None)
            if parked is not None:
                limit, handoff, span = parked
                claimed = await self._claim(tx, target, limit, batch.now, span)
                batch.claimed.extend(claimed)
                batch.handoffs.append((target, (limit, handoff, span), claimed))

    def park_claim(
        self, target: str, limit: int, handoff: Handoff, span: Span = ALL_PRIORITIES
    ) -> None:
        """Claim up to ``limit`` messages of ``target`` with its next submit, for ``handoff``.

        An idle dispatcher parks a claim instead of waiting for the submit's
        commit and then claiming in a transaction of its own: a message then
        waits for two commits (submit, settle), not three.
        """
        self._parked[target] = (limit, handoff, span)

    def unpark_claim(self, target: str) -> None:
        self._parked.pop(target, None)

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = await self.query(
            "SELECT id, status FROM messages WHERE id IN (SELECT value FROM json_each(?))",
            (_dumps(list(ids)),),
        )
        return {message_id: status for message_id, status in rows}

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        rows = await self.query(
            "SELECT id, target, deliver_by FROM messages WHERE deliver_by IS NOT NULL"
            " AND status IN ('queued', 'inflight') AND deliver_by < ? ORDER BY deliver_by",
            (wall,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        rows = await self.query(
            "SELECT target, priority, MIN(created_at) FROM messages WHERE status = 'queued'"
            " GROUP BY target, priority"
        )
        return {(target, Priority(priority)): at for target, priority, at in rows}

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        rows = await self.query(
            "SELECT at FROM events WHERE kind = 'attempted' AND integration = ? AND at >= ?"
            " ORDER BY at DESC LIMIT ?",
            (integration, since, limit),
        )
        return [r[0] for r in rows]

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        """Keep a multi-step delivery's completed steps with the message, and audit them."""
        now = self._clock()
        detail = _dumps({"progress": dict(progress)})

        async def save(tx: _Tx) -> None:
            await tx.execute(
                "UPDATE messages SET progress = json_set(coalesce(progress, '{}'),"
                " '$.' || json_quote(?), json(?)) WHERE id = ?",
                (integration, _dumps(dict(progress)), message_id),
            )
            await tx.execute(_INSERT_EVENT, (now, "progressed", message_id, integration, detail))

        await self.run(save)

    def _after_commit(self, batch: _Batch) -> None:
        for _, message in batch.fresh:
            self.counters.queued(message.target, message.priority, 1)
        for claimed in batch.claimed:
            self.counters.queued(claimed.target, claimed.priority, -1)
            self.counters.inflight(claimed.target, 1)
        for s in batch.settled:
            self.counters.inflight(s.target, -1)
            if s.kind.status is MessageStatus.QUEUED:
                self.counters.queued(s.target, s.priority, 1)
        for op in batch.ops:
            if op.done is not None:
                op.done.set()
        for target, parked, handed in batch.handoffs:
            if handed:
                parked[1](handed)
            else:
                self._parked.setdefault(target, parked)
        if batch.fresh:
            self.listener.submitted({m.target for _, m in batch.fresh})
        if batch.settled:
            self.listener.settled(batch.settled)

    async def _rollback(self, tx: _Tx) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction left to roll back
            await tx.execute("ROLLBACK")

    def _fail(self, batch: _Batch, error: StoreError) -> None:
        self.last_error = str(error)
        for op in batch.ops:
            if op.done is not None:
                op.error = error
                op.done.set()
        # Settles and events describe work already done: they are kept and
        # tried again with the next batch rather than dropped. Claimed ids
        # and fresh ids were not committed, so nothing else needs undoing.
        for target, parked, _ in batch.handoffs:  # rolled back: park again
            self._parked.setdefault(target, parked)
        keep = [op for op in batch.ops if op.kind in (_Kind.SETTLE, _Kind.EVENT)]
        self._ops.extendleft(reversed(keep))
        for op in keep:
            if op.kind is not _Kind.EVENT:
                self._room.acquire_nowait() if self._room.value else None

    async def flush(self) -> None:
        """Wait until everything handed to the writer so far is committed."""
        await self.run(_noop)

    async def run(self, fn: Callable[[_Tx], Awaitable[T]]) -> T:
        """Run ``fn`` inside the writer's next transaction and return its result."""
        result: T = await self._enqueue(_Op(_Kind.CUSTOM, fn, done=trio.Event()))
        return result

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the writer's connection (used before the writer starts)."""
        return await _fetch(self._writer, sql, params)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the reader connection, which never waits for the writer."""
        return await _fetch(self._reader, sql, params)

    # -- messages --------------------------------------------------------------------

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        """Store messages durably; return only after the commit."""
        if not messages:
            return []
        accepted: list[Accepted] = await self._enqueue(
            _Op(_Kind.SUBMIT, list(messages), done=trio.Event())
        )
        return accepted

    async def _write_submits(self, tx: _Tx, batch: _Batch) -> None:
        ops = batch.of(_Kind.SUBMIT)
        if not ops:
            return
        known = await self._known_keys(tx, [m for op in ops for m in op.data])
        rows = []
        next_id = self._next_id
        for op in ops:
            accepted = []
            for message in op.data:
                key = message.idempotency_key or uuid.uuid4().hex
                earlier = known.get((message.target, key))
                if earlier is not None:
                    accepted.append(Accepted(earlier, key, duplicate=True))
                    continue
                known[(message.target, key)] = next_id
                accepted.append(Accepted(next_id, key))
                batch.fresh.append((next_id, message))
                rows.append(
                    (
                        next_id,
                        message.target,
                        int(message.priority),
                        _dumps(message.payload),
                        key,
                        batch.now,
                        batch.now,
                        batch.now,
                        message.deliver_by,
                    )
                )
                if message.deliver_by is not None:
                    self._deadline_targets.add(message.target)
                next_id += 1
            op.result = accepted
        if rows:
            await tx.executemany(
                "INSERT INTO messages (id, target, priority, payload, idempotency_key, status,"
                " next_attempt_at, created_at, updated_at, deliver_by)"
                " VALUES (?,?,?,?,?,'queued',?,?,?,?)",
                rows,
            )
        # Ids are taken only once the statement succeeded; a failed batch reuses them.
        self._next_id = next_id

    async def _known_keys(
        self, tx: _Tx, messages: Sequence[NewMessage]
    ) -> dict[tuple[str, str], int]:
        given = [[m.target, m.idempotency_key] for m in messages if m.idempotency_key]
        if not given:
            return {}
        rows = await tx.fetchall(
            "SELECT target, idempotency_key, id FROM messages WHERE (target, idempotency_key)"
            " IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
            (_dumps(given),),
        )
        return {(target, key): message_id for target, key, message_id in rows}

    async def claim(self, target: str, limit: int, span: Span = ALL_PRIORITIES) -> list[Claimed]:
        """Mark up to ``limit`` due messages of ``target`` (priorities in ``span``) in flight."""
        claimed: list[Claimed] = await self._enqueue(
            _Op(_Kind.CLAIM, (target, limit, span), done=trio.Event())
        )
        return claimed

    async def _claim(
        self, tx: _Tx, target: str, limit: int, now: float, span: Span = ALL_PRIORITIES
    ) -> list[Claimed]:
        if target in self._deadline_targets:
            return await self._claim_by_deadline(tx, target, limit, now, span)
        rows = await tx.fetchall(
            "UPDATE messages SET status = 'inflight', updated_at = ? WHERE id IN ("
            " SELECT id FROM messages WHERE status = 'queued' AND target = ?"
            " AND priority BETWEEN ? AND ?"
            " AND next_attempt_at <= ? ORDER BY priority, next_attempt_at, id LIMIT ?)"
            f" RETURNING {_CLAIMED}",
            (now, target, int(span[0]), int(span[1]), now, limit),
        )
        rows.sort(key=lambda r: (r[2], r[9], r[0]))
        return _claimed(rows)

    async def _claim_by_deadline(
        self, tx: _Tx, target: str, limit: int, now: float, span: Span
    ) -> list[Claimed]:
        """Within each priority, messages with a deadline first, the nearest first.

        Only targets that have seen a deadline pay for the extra queries.
        """
        ids: list[int] = []
        for priority in range(int(span[0]), int(span[1]) + 1):
            for order, has in (("deliver_by", "NOT NULL"), ("next_attempt_at, id", "NULL")):
                if len(ids) >= limit:
                    break
                rows = await tx.fetchall(
                    "SELECT id FROM messages WHERE status = 'queued' AND target = ?"
                    f" AND priority = ? AND deliver_by IS {has} AND next_attempt_at <= ?"
                    f" ORDER BY {order} LIMIT ?",
                    (target, priority, now, limit - len(ids)),
                )
                ids.extend(r[0] for r in rows)
        if not ids:
            return []
        rows = await tx.fetchall(
            "UPDATE messages SET status = 'inflight', updated_at = ?"
            f" WHERE id IN (SELECT value FROM json_each(?)) RETURNING {_CLAIMED}",
            (now, _dumps(ids)),
        )
        rank = {message_id: n for n, message_id in enumerate(ids)}
        rows.sort(key=lambda r: rank[r[0]])
        return _claimed(rows)

    async def record(self, settles: Sequence[Settle]) -> None:
        """Hand settled attempts to the writer; they are committed with the next batch."""
        if settles:
            await self._enqueue(_Op(_Kind.SETTLE, list(settles)))

    async def _write_settles(self, tx: _Tx, batch: _Batch) -> None:
        settles = [s for op in batch.of(_Kind.SETTLE) for s in op.data]
        if not settles:
            return
        now = batch.now
        await tx.executemany(_SETTLE, [_settle_row(s, now) for s in settles])
        batch.settled.extend(settles)

    async def recover_inflight(self) -> int:
        """Return messages left in flight by an earlier run to the queue.

        Each counts as an ambiguous attempt, as an actor's crash counts the
        work it interrupted: the provider may have taken it, and an adapter
        reads a "duplicate" answer on a later attempt as that earlier success.
        """
        now = self._clock()

        async def recover(tx: _Tx) -> list[Row]:
            rows = await tx.fetchall(
                "UPDATE messages SET status = 'queued', updated_at = ?, attempts = attempts + 1,"
                " member_attempts = member_attempts + 1 WHERE status = 'inflight'"
                " RETURNING id, target, priority",
                (now,),
            )
            detail = _dumps({"reason": "in flight at the last stop; counted as an attempt"})
            await tx.executemany(
                _INSERT_EVENT, [(now, "recovered", r[0], None, detail) for r in rows]
            )
            return rows

        rows = await self.run(recover)
        for _, target, priority in rows:
            self.counters.inflight(target, -1)
            self.counters.queued(target, Priority(priority), 1)
        return len(rows)

    async def next_due(self, target: str) -> float | None:
        """The earliest ``next_attempt_at`` among the queued messages of ``target``."""
        found: list[float] = []
        for priority in Priority:
            rows = await self.query(
                "SELECT next_attempt_at FROM messages WHERE status = 'queued' AND target = ?"
                " AND priority = ? ORDER BY next_attempt_at LIMIT 1",
                (target, int(priority)),
            )
            found.extend(r[0] for r in rows)
        return min(found) if found else None

    # -- audit, dead letters, durable controls ------------------------------------------

    def append_event(self, event: Event) -> None:
        """Append an audit event; it is committed with the next batch."""
        row = (
            event.at,
            event.kind,
            event.message_id,
            event.integration,
            None if event.detail is None else _dumps(event.detail),
        )
        self._enqueue_nowait(_Op(_Kind.EVENT, row))

    async def events(
        self, *, since: float | None = None, message_id: int | None = None, limit: int = 1000
    ) -> list[Event]:
        clauses, params = [], []
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if message_id is not None:
            clauses.append("message_id = ?")
            params.append(message_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.query(
            f"SELECT id, at, kind, message_id, integration, detail FROM events {where}"
            " ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [
            Event(
                id=r[0],
                at=r[1],
                kind=r[2],
                message_id=r[3],
                integration=r[4],
                detail=None if r[5] is None else json.loads(r[5]),
            )
            for r in rows
        ]

    async def dead_letters(self, *, limit: int = 1000) -> list[DeadLetter]:
        rows = await self.query(
            "SELECT id, target, integration, last_error, updated_at, attempts, payload"
            " FROM messages WHERE status = 'dead' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            DeadLetter(
                message_id=r[0],
                target=r[1],
                integration=r[2],
                reason=r[3],
                at=r[4],
                attempts=r[5],
                payload=json.loads(r[6]),
            )
            for r in rows
        ]

    async def message(self, message_id: int) -> dict[str, Any] | None:
        rows = await self.query(
            "SELECT id, target, integration, priority, idempotency_key, status, attempts,"
            " next_attempt_at, last_error, provider_id, created_at, updated_at, delivered_at"
            " FROM messages WHERE id = ?",
            (message_id,),
        )
        if not rows:
            return None
        names = (
            "id",
            "target",
            "integration",
            "priority",
            "idempotency_key",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "provider_id",
            "created_at",
            "updated_at",
            "delivered_at",
        )
        return dict(zip(names, rows[0], strict=True))

    async def find_events(
        self,
        *,
        since: float | None = None,
        message_id: int | None = None,
        kinds: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[Event]:
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if message_id is not None:
            clauses.append("message_id = ?")
            params.append(message_id)
        if kinds:
            clauses.append("kind IN (SELECT value FROM json_each(?))")
            params.append(_dumps(list(kinds)))
        rows = await self.query(
            "SELECT id, at, kind, message_id, integration, detail FROM events"
            f" WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [_event(r) for r in rows]

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        rows = await self.query(f"{_SELECT_DEAD} AND id = ?", (message_id,))
        return _dead_letter(rows[0]) if rows else None

    async def find_dead(self, *, target: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        where, params = _dead_where(None, target, 0, None)
        rows = await self.query(f"{_SELECT_DEAD} AND {where} ORDER BY id LIMIT ?", (*params, limit))
        return [_dead_letter(r) for r in rows]

    async def count_dead(
        self, *, target: str | None = None, after: int = 0, dead_before: float | None = None
    ) -> int:
        where, params = _dead_where(None, target, after, dead_before)
        rows = await self.query(
            f"SELECT COUNT(*) FROM messages WHERE status = 'dead' AND {where}", params
        )
        return int(rows[0][0])

    async def replay_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        """Queue dead letters again as fresh work (see ``Store.replay_dead``)."""
        now = self._clock()
        where, params = _dead_where(ids, target, after, None)

        async def replay(tx: _Tx) -> list[Row]:
            rows = await tx.fetchall(
                "SELECT id, target, priority, integration, last_error, attempts FROM messages"
                f" WHERE status = 'dead' AND {where} ORDER BY id LIMIT ?",
                (*params, limit),
            )
            # last_event is left alone: its trigger would also log the last attempt again.
            await tx.execute(
                "UPDATE messages SET status = 'queued', attempts = 0, member_attempts = 0,"
                " route_index = 0, next_attempt_at = ?, updated_at = ?, last_error = NULL"
                " WHERE status = 'dead' AND id IN (SELECT value FROM json_each(?))",
                (now, now, _dumps([r[0] for r in rows])),
            )
            await tx.executemany(
                _INSERT_EVENT,
                [(now, "replayed", r[0], r[3], _operator_detail(by, r)) for r in rows],
            )
            return rows

        rows = await self.run(replay)
        for _, row_target, priority, *_ in rows:
            self.counters.queued(row_target, Priority(priority), 1)
        if rows:
            self.listener.submitted({r[1] for r in rows})
        return [r[0] for r in rows]

    async def purge_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        dead_before: float | None = None,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        """Delete dead letters; their audit history stays (see ``Store.purge_dead``)."""
        now = self._clock()
        where, params = _dead_where(ids, target, after, dead_before)

        async def purge(tx: _Tx) -> list[Row]:
            rows = await tx.fetchall(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
                f" WHERE status = 'dead' AND {where} ORDER BY id LIMIT ?)"
                " RETURNING id, target, priority, integration, last_error, attempts",
                (*params, limit),
            )
            rows.sort()
            await tx.executemany(
                _INSERT_EVENT,
                [(now, "purged", r[0], r[3], _operator_detail(by, r)) for r in rows],
            )
            return rows

        # Dead letters are in no queue counter: nothing to adjust.
        return [r[0] for r in await self.run(purge)]

    def save_breaker(self, record: BreakerRecord) -> None:
        """Persist a breaker's state with the next batch (called from a sync hook)."""
        row = (record.integration, record.state, int(record.forced), record.open_until)

        async def save(tx: _Tx) -> None:
            await tx.execute(
                "INSERT OR REPLACE INTO breakers (integration, state, forced, open_until)"
                " VALUES (?,?,?,?)",
                row,
            )

        self._enqueue_nowait(_Op(_Kind.CUSTOM, save))

    async def breakers(self) -> dict[str, BreakerRecord]:
        rows = await self._read("SELECT integration, state, forced, open_until FROM breakers")
        return {r[0]: BreakerRecord(r[0], r[1], bool(r[2]), r[3]) for r in rows}

    async def set_paused(self, name: str, paused: bool) -> None:
        await self.run(
            lambda tx: tx.execute(
                "INSERT INTO controls (name, paused) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                (name, int(paused)),
            )
        )

    async def paused(self) -> set[str]:
        rows = await self._read("SELECT name FROM controls WHERE paused = 1")
        return {r[0] for r in rows}

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            commits=self.commits, committed_ops=self.committed_ops, pending_ops=len(self._ops)
        )


_CLAIMED = (
    "id, target, priority, payload, idempotency_key, attempts, created_at,"
    " route_index, member_attempts, next_attempt_at, progress, deliver_by"
)


def _claimed(rows: Sequence[Row]) -> list[Claimed]:
    return [
        Claimed(
            id=r[0],
            target=r[1],
            priority=Priority(r[2]),
            payload=json.loads(r[3]),
            idempotency_key=r[4],
            attempts=r[5],
            created_at=r[6],
            route_index=r[7],
            member_attempts=r[8],
            progress={} if r[10] is None else json.loads(r[10]),
            deliver_by=r[11],
        )
        for r in rows
    ]


_SETTLE = (
    "UPDATE messages SET status = ?, attempts = ?, next_attempt_at = ?, route_index = ?,"
    " member_attempts = ?, integration = ?, last_error = ?,"
    " provider_id = COALESCE(?, provider_id), updated_at = ?,"
    " delivered_at = COALESCE(?, delivered_at), last_event = ?, attempt_at = ?,"
    " attempt_seconds = ?, attempt_outcome = ?, attempt_status = ?"
    " WHERE id = ? AND status = 'inflight'"
)


def _settle_row(s: Settle, now: float) -> tuple[Any, ...]:
    a = s.attempt
    return (
        s.kind.status.value,
        s.attempts,
        s.next_attempt_at,
        s.route_index,
        s.member_attempts,
        s.integration,
        s.reason,
        s.provider_id,
        now,
        now if s.kind is SettleKind.DELIVERED else None,
        s.kind.value,
        None if a is None else a.started_at,
        None if a is None else round(a.duration, 6),
        None if a is None else a.outcome,
        None if a is None else a.status,
        s.message_id,
    )


_INSERT_EVENT = "INSERT INTO events (at, kind, message_id, integration, detail) VALUES (?,?,?,?,?)"

_SELECT_DEAD = (
    "SELECT id, target, integration, last_error, updated_at, attempts, payload"
    " FROM messages WHERE status = 'dead'"
)


def _dead_letter(r: Row) -> DeadLetter:
    return DeadLetter(
        message_id=r[0],
        target=r[1],
        integration=r[2],
        reason=r[3],
        at=r[4],
        attempts=r[5],
        payload=json.loads(r[6]),
    )


def _event(r: Row) -> Event:
    return Event(
        id=r[0],
        at=r[1],
        kind=r[2],
        message_id=r[3],
        integration=r[4],
        detail=None if r[5] is None else json.loads(r[5]),
    )


def _dead_where(
    ids: Sequence[int] | None, target: str | None, after: int, dead_before: float | None
) -> tuple[str, list[Any]]:
    """The SQL condition (beyond ``status = 'dead'``) selecting dead letters, and its params."""
    clauses: list[str] = ["id > ?"]
    params: list[Any] = [after]
    if ids is not None:
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(_dumps(list(ids)))
    if target is not None:
        clauses.append("target = ?")
        params.append(target)
    if dead_before is not None:
        clauses.append("updated_at <= ?")
        params.append(dead_before)
    return " AND ".join(clauses), params


def _operator_detail(by: str, row: Row) -> str:
    """A replayed or purged event's detail, from (id, target, priority, _, reason, attempts)."""
    return _dumps({"by": by, "target": row[1], "reason": row[4], "attempts": row[5]})


async def _fetch(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[Row]:
    try:
        rows = await trio_asyncio.aio_as_trio(conn.execute_fetchall)(sql, params)
    except sqlite3.Error as exc:
        raise _translate(exc) from exc
    return list(rows)


async def _noop(tx: _Tx) -> None:
    return None


async def _prepare(conn: aiosqlite.Connection, synchronous: str) -> None:
    tx = _Tx(conn)
    mode = await tx.fetchall("PRAGMA journal_mode = WAL")
    if not mode or str(mode[0][0]).lower() != "wal":
        raise StoreError(f"the store needs WAL journaling, got {mode}")
    await tx.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    await tx.execute("PRAGMA busy_timeout = 5000")
    await tx.execute("PRAGMA cache_size = -65536")
    await tx.execute("PRAGMA foreign_keys = ON")
    await _migrate(tx)


async def _migrate(tx: _Tx) -> None:
    ((version,),) = await tx.fetchall("PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {version}, newer than this program's "
            f"{SCHEMA_VERSION}: refusing to touch it"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        await tx.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                await tx.execute(statement)
            await tx.execute(f"PRAGMA user_version = {number}")
            await tx.execute("COMMIT")
        except sqlite3.Error:
            await tx.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner ';')."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


async def _next_message_id(conn: aiosqlite.Connection) -> int:
    rows = await _Tx(conn).fetchall(
        "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM messages"
        " UNION ALL SELECT MAX(message_id) FROM events)"
    )
    top = rows[0][0] if rows and rows[0][0] is not None else 0
    return int(top) + 1
