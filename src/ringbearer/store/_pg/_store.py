"""``PostgresStore``: the store on PostgreSQL, one object presenting every role of the
``Store``, composed of parts as ``SqliteStore`` is; each method says which part does it.

Several daemons may share one database: each opens the store as its own node. A claim
leases its messages to the node (``lease_node``, ``lease_until``) under an epoch a
settle must present, so a node that lost a lease cannot settle over the node that took
the work (fencing).
"""

from __future__ import annotations

import functools
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from ...deliverability import MailEventRow
from .._forward_core import ForwardsCore
from .._forward_deliverability import ForwardsDeliverability
from .._forward_growth import ForwardsGrowth
from .._forward_privacy import ForwardsPrivacy
from .._forward_templates import ForwardsTemplates
from .._group_commit import Op, OpKind
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
from .._sqlite._batch import Handoff, Parked
from .._sqlite._rows import event_row
from .._sqlite._shared import Shared
from ._alerts import PgAlerts
from ._controls import PgControls
from ._db import PgTx, Row, Session, WallClock, connect
from ._dead import PgDeadLetters
from ._deliverability import PgDeliverability
from ._growth import PgExperiments, PgGrowthRecords
from ._mail import write_mail
from ._nodes import Leadership, NodeActor, Nodes, NodeView
from ._privacy import PgPrivacy
from ._queue import PgQueue
from ._reads import PgReads
from ._schema import migrate
from ._templates import PgTemplates
from ._writer import PgWriter, chained

T = TypeVar("T")
LEASE_SECONDS = 15.0


def node_name() -> str:
    """A node's id: its host name and a random suffix (two daemons on one host differ)."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class PostgresStore(
    ForwardsCore, ForwardsDeliverability, ForwardsPrivacy, ForwardsTemplates, ForwardsGrowth
):
    """The durable outbox on PostgreSQL. Open it with :meth:`open` inside trio."""

    _reads: PgReads  # the parts the Forwards* hand over to, as this store composes them
    _controls: PgControls
    _deliverability: PgDeliverability

    def __init__(
        self, write: Session, read: Session, *, clock: WallClock, batch_max: int, node: str,
        lease_seconds: float,
    ) -> None:  # fmt: skip
        self.node = node
        self._shared = Shared(clock)
        self.counters = self._shared.counters
        self._queue = PgQueue(read, self._shared, node=node, lease_seconds=lease_seconds)
        write_batch = chained(self._queue.write_batch, write_mail)
        self._writer = PgWriter(write, clock=clock, batch_max=batch_max, write_batch=write_batch)
        self._queue.writer = self._writer
        self._reads = PgReads(read)
        self._dead = PgDeadLetters(self._writer, self._reads, self._shared)
        self._controls = PgControls(self._writer)
        self._alerts = PgAlerts(self._writer)
        self._deliverability = PgDeliverability(self._writer, self._reads, self._shared)
        self._privacy = PgPrivacy(self._writer, self._reads, self._shared)
        self._templates = PgTemplates(self._writer, self._shared)
        self._growth_records = PgGrowthRecords(self._writer, self._reads, self._shared)
        self._experiments = PgExperiments(self._writer, self._reads, self._shared)
        self._nodes = Nodes(read, node, socket.gethostname(), clock, lease_seconds)
        self._clock = clock
        self._lease_seconds = lease_seconds

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        clock: WallClock,
        batch_max: int = 1024,
        node: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> AsyncIterator[PostgresStore]:
        """Connect (migrating the schema if needed) and run the writer."""
        # A transaction is short: one sitting idle for a third of a lease is a paused node.
        reopen = functools.partial(connect, url, idle_in_transaction=lease_seconds / 3)
        write = Session(await trio.to_thread.run_sync(reopen), reopen)
        read = Session(await trio.to_thread.run_sync(reopen), reopen)
        try:
            await write.transaction(migrate)
            store = cls(
                write, read, clock=clock, batch_max=batch_max, node=node or node_name(),
                lease_seconds=lease_seconds,
            )  # fmt: skip
            await store._queue.load()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store._writer.write_loop)
                try:
                    yield store
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(30):
                        await store.flush()
                    nursery.cancel_scope.cancel()
        finally:
            write.close()
            read.close()

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
    def last_error(self) -> str | None:
        return self._writer.last_error

    # -- Intake, Dispatch, Settling -------------------------------------------------------

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        return await self._queue.submit(messages)

    async def claim(self, target: str, limit: int, span: Span = ALL_PRIORITIES) -> list[Claimed]:
        return await self._queue.claim(target, limit, span)

    def park_claim(
        self, target: str, limit: int, handoff: Handoff, span: Span = ALL_PRIORITIES
    ) -> None:
        self._queue.park(target, Parked(limit, handoff, span))

    def unpark_claim(self, target: str) -> None:
        self._queue.unpark(target)

    async def record(self, settles: Sequence[Settle]) -> None:
        await self._queue.record(settles)

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        await self._queue.save_progress(message_id, integration, progress)

    # -- AuditLog (controls, queries, dead letters, alerts: ForwardsCore) -----------------

    def append_event(self, event: Event) -> None:
        self._writer.push(Op(OpKind.EVENT, event_row(event)))

    # -- Several nodes ----------------------------------------------------------------------

    async def beat(self) -> int:
        """This node is alive: its heartbeat, its in-flight leases extended (how many)."""
        return await self._nodes.beat(self._queue.held())

    async def leave(self) -> None:
        """A clean stop: this node is no longer listed."""
        await self._nodes.leave()

    async def publish_actors(self, rows: Sequence[NodeActor]) -> list[NodeActor]:
        """This node's actors as they stand, for the leader's alerts; the other nodes'."""
        return await self._nodes.publish_actors(rows)

    async def reclaim_expired(self) -> int:
        """Return other nodes' expired leases to the queue (ambiguous attempts); how many."""
        return await self._queue.reclaim_expired()

    async def nodes(self) -> list[NodeView]:
        """Every node listed, with its last heartbeat and the leases it holds."""
        return await self._nodes.views()

    async def forget_silent(self) -> list[str]:
        """Unlist the nodes silent for longer than a lease; their ids."""
        return await self._nodes.forget_silent(self._lease_seconds)

    def leadership(self, duty: str) -> Leadership:
        """Taking and keeping the lead of ``duty`` for this node."""
        return Leadership(self._reads.session, duty, self.node, self._clock, self._lease_seconds)

    async def mail_events_after(
        self, after: int, awaited: Sequence[int], limit: int
    ) -> tuple[list[int], list[MailEventRow]]:
        """Provider events by id: those ``awaited`` and those after ``after``, lowest ids
        first, at most ``limit``; every id read, and the email events among them."""
        return await self._deliverability.mail_events_after(after, awaited, limit)

    async def newest_mail_event(self) -> int:
        """The highest provider event id kept (0: none)."""
        rows = await self._reads.query("SELECT COALESCE(MAX(id), 0) FROM mail_events")
        return int(rows[0][0])

    async def versions(self) -> dict[str, int]:
        """The version of each table the nodes keep a book of (``_ddl_cluster``)."""
        rows = await self._reads.query("SELECT name, version FROM shared_versions")
        return {str(name): int(version) for name, version in rows}

    @property
    def fenced(self) -> int:
        """Settles refused since start: their lease had passed to another node."""
        return self._queue.fenced

    # -- PostgreSQL only: SQL for tests and benchmarks -------------------------------------

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read on the reading connection."""
        return await self._reads.query(sql, params)

    async def run(self, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn`` inside the writer's next transaction and return its result."""
        return await self._writer.run(fn)
