"""A node's duty when several daemons share one PostgreSQL: beat, and take back the work
of nodes that went silent.

Every ``heartbeat_seconds`` the node writes its heartbeat (extending the leases of what
it has in flight), returns to the queue the messages whose lease expired (their node
went silent for ``lease_seconds``: each an ambiguous attempt, sent again with the same
key) and unlists silent nodes. Metrics: ``ringbearer_nodes`` (nodes listed),
``ringbearer_lease_reclaims_total`` (messages taken back) and
``ringbearer_fenced_settles_total`` (this node's settles refused because its lease had
passed to another node: a long pause, a partition). Work submitted on another node, or
taken back, reaches this node's dispatchers at its next beat, and each provider's rate
limit and budgets are split anew among the live nodes (``_limit_share``), and what
other nodes set is taken up (``follows``: pauses, domain holds and the wedding-day
override, ``_shared_controls``; keys destroyed, ``privacy._key_follow``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from ._errors import RingbearerError
from ._logging import fields
from .store import StoreListener
from .store._pg._nodes import NodeView

log = logging.getLogger("ringbearer.nodes")


class ClusterStore(Protocol):
    node: str
    listener: StoreListener

    async def beat(self) -> int: ...

    async def reclaim_expired(self) -> int: ...

    async def forget_silent(self) -> list[str]: ...

    async def nodes(self) -> list[NodeView]: ...

    async def leave(self) -> None: ...

    @property
    def fenced(self) -> int: ...


@attrs.frozen
class NodeMetrics:
    nodes: Gauge
    reclaims: Counter
    fenced: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> NodeMetrics:
        return cls(
            Gauge("ringbearer_nodes", "Daemons listed on the shared database",
                  registry=registry),
            Counter("ringbearer_lease_reclaims", "Messages taken back from a node whose "
                    "lease expired", registry=registry),
            Counter("ringbearer_fenced_settles", "This node's settles refused: its lease "
                    "had passed to another node", registry=registry),
        )  # fmt: skip


@attrs.define(eq=False)
class NodeDuty:
    store: ClusterStore
    every: float
    metrics: NodeMetrics
    targets: Callable[[], Iterable[str]] = lambda: ()  # what this node's dispatchers serve
    share: Callable[[int], None] = lambda nodes: None  # a provider's limits among live nodes
    # What other nodes set, taken up each beat: pauses, holds, the override, destroyed keys.
    follows: Sequence[Callable[[], Awaitable[object]]] = ()
    _fenced_seen: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.tick()  # listed before the daemon says it is ready
        if await self._make_room():
            await self.tick()  # the share as the others now count it
        task_status.started()
        try:
            while True:
                await trio.sleep(self.every)
                await self.tick()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._leave()

    async def tick(self) -> None:
        """One beat; a store failure is logged, and the next beat tries again."""
        try:
            await self.store.beat()
            reclaimed = await self.store.reclaim_expired()
            gone = await self.store.forget_silent()
            listed = await self.store.nodes()
        except RingbearerError as exc:
            log.error("heartbeat failed", extra=fields(node=self.store.node, error=str(exc)))
            return
        if reclaimed:
            self.metrics.reclaims.inc(reclaimed)
            log.warning("took back expired leases", extra=fields(messages=reclaimed))
        if gone:
            log.warning("nodes went silent", extra=fields(nodes=",".join(gone)))
        self.metrics.nodes.set(len(listed))
        self.share(len(listed))  # silent nodes were unlisted above: these are the live ones
        # Work another node submitted, or took back, reaches this node's dispatchers only
        # through the database: each beat they look again (a claim each, if nothing is due).
        self.store.listener.submitted(set(self.targets()))
        fenced = self.store.fenced
        if fenced > self._fenced_seen:
            self.metrics.fenced.inc(fenced - self._fenced_seen)
            self._fenced_seen = fenced
        await self._follow()

    async def _follow(self) -> None:
        for follow in self.follows:  # each on its own: one failing leaves the others
            try:
                await follow()
            except RingbearerError as exc:
                log.error("could not follow the shared state", extra=fields(error=str(exc)))

    async def _make_room(self) -> bool:
        """Joining live nodes: wait until each has beaten since this node was listed, so
        each has shrunk its share of the limits before this one sends with its own (at
        most two beats: a node that does not beat is dead, and will be unlisted).
        Whether it waited."""
        deadline = trio.current_time() + 2 * self.every
        while trio.current_time() < deadline:
            try:
                listed = await self.store.nodes()
            except RingbearerError:
                return False  # the first beat says it already; send on the share it set
            joined = next((v.started_at for v in listed if v.node == self.store.node), None)
            behind = [v.node for v in listed if v.node != self.store.node
                      and (joined is None or v.heartbeat_at < joined)]  # fmt: skip
            if not behind:
                return len(listed) > 1
            await trio.sleep(self.every / 5)
        log.warning("nodes did not beat since this one joined",
                    extra=fields(nodes=",".join(behind)))  # fmt: skip
        return True

    async def _leave(self) -> None:
        try:
            await self.store.leave()
        except RingbearerError as exc:
            log.warning("could not unlist this node", extra=fields(error=str(exc)))
