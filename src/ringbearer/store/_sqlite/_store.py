"""``SqliteStore``: the durable outbox, one object presenting every role of the ``Store``.

It composes the parts and delegates to them; each method says where its work
is done: the writer (group commit), the queue, the reads, the dead-letter
tools, the controls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import trio

from .._forward_core import ForwardsCore
from .._forward_deliverability import ForwardsDeliverability
from .._forward_growth import ForwardsGrowth
from .._forward_privacy import ForwardsPrivacy
from .._forward_templates import ForwardsTemplates
from .._model import (
    ALL_PRIORITIES,
    Accepted,
    Claimed,
    Event,
    NewMessage,
    Settle,
    Span,
)
from .._protocol import StoreListener, StoreStatistics
from ._alerts import Alerts
from ._batch import Handoff, Parked, QueueBatch
from ._controls import Controls
from ._db import Row, Tx, WallClock
from ._dead import DeadLetters
from ._deliverability import SqliteDeliverability
from ._growth import SqliteExperiments, SqliteGrowthRecords
from ._mail import write_mail
from ._matcher import Matcher
from ._open import Start, connections, load_start
from ._privacy import SqlitePrivacy
from ._queue import Queue
from ._reads import Reads
from ._rows import event_row
from ._shared import Shared
from ._templates import SqliteTemplates
from ._writer import Op, OpKind, Writer, chained

T = TypeVar("T")


class SqliteStore(
    ForwardsCore, ForwardsDeliverability, ForwardsPrivacy, ForwardsTemplates, ForwardsGrowth
):
    """The durable outbox. Open it with :meth:`open` inside a trio-asyncio loop.

    The deliverability, privacy, templates and growth roles' methods are those of
    their ``Forwards*`` classes.
    """

    _reads: Reads  # the parts ForwardsCore hands over to, as this store composes them
    _controls: Controls

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        clock: WallClock,
        batch_max: int,
        start: Start,
    ) -> None:
        self._shared = Shared(clock, start.counters)
        self.counters = self._shared.counters
        self._batch = QueueBatch(
            self._shared, next_id=start.next_id, deadline_targets=start.deadline_targets
        )
        write_batch = chained(self._batch.write, write_mail)
        self._writer = Writer(writer, clock=clock, batch_max=batch_max, write_batch=write_batch)
        self._queue = Queue(self._writer, self._shared)
        self._reads = Reads(reader)
        self._dead = DeadLetters(self._writer, self._reads, self._shared)
        self._controls = Controls(self._writer)
        self._alerts = Alerts(self._writer)
        self._matcher = Matcher(self._reads)
        self._deliverability = SqliteDeliverability(
            self._writer, self._reads, self._matcher, self._shared
        )
        self._privacy = SqlitePrivacy(self._writer, self._reads, self._shared)
        self._templates = SqliteTemplates(self._writer, self._shared)
        self._growth_records = SqliteGrowthRecords(self._writer, self._reads, self._shared)
        self._experiments = SqliteExperiments(self._writer, self._reads, self._shared)

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
        async with connections(path, synchronous) as (writer, reader):
            start = await load_start(writer)
            store = cls(writer, reader, clock=clock, batch_max=batch_max, start=start)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store._writer.write_loop)
                nursery.start_soon(store._matcher.match_loop)
                try:
                    yield store
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(30):
                        await store.flush()
                    nursery.cancel_scope.cancel()

    # -- Lifecycle ------------------------------------------------------------------------

    @property
    def listener(self) -> StoreListener:
        return self._shared.listener

    @listener.setter
    def listener(self, listener: StoreListener) -> None:
        self._shared.listener = listener

    def statistics(self) -> StoreStatistics:
        return self._writer.statistics()

    async def recover_inflight(self) -> int:
        return await self._queue.recover_inflight()

    async def flush(self) -> None:
        await self._writer.flush()

    @property
    def commits(self) -> int:
        """Transactions committed so far."""
        return self._writer.commits

    @property
    def committed_ops(self) -> int:
        """Ops committed so far."""
        return self._writer.committed_ops

    @property
    def last_error(self) -> str | None:
        """Why the last failed transaction failed."""
        return self._writer.last_error

    # -- Intake, Dispatch, Settling -------------------------------------------------------

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        return await self._queue.submit(messages)

    async def claim(self, target: str, limit: int, span: Span = ALL_PRIORITIES) -> list[Claimed]:
        return await self._queue.claim(target, limit, span)

    def park_claim(
        self, target: str, limit: int, handoff: Handoff, span: Span = ALL_PRIORITIES
    ) -> None:
        """Claim up to ``limit`` messages of ``target`` with its next submit, for ``handoff``.

        An idle dispatcher parks a claim instead of waiting for the submit's
        commit and then claiming in a transaction of its own: a message then
        waits for two commits (submit, settle), not three.
        """
        self._batch.park(target, Parked(limit, handoff, span))

    def unpark_claim(self, target: str) -> None:
        self._batch.unpark(target)

    async def record(self, settles: Sequence[Settle]) -> None:
        await self._queue.record(settles)

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        await self._queue.save_progress(message_id, integration, progress)

    # -- AuditLog (controls, queries, dead letters, alerts: ForwardsCore) -----------------

    def append_event(self, event: Event) -> None:
        self._writer.push(Op(OpKind.EVENT, event_row(event)))

    # -- SQLite only: SQL for tests and benchmarks ----------------------------------------

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the reader connection, which never waits for the writer."""
        return await self._reads.query(sql, params)

    async def run(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` inside the writer's next transaction and return its result."""
        return await self._writer.run(fn)
