"""Status: each integration's state and queues, the groups, the mode, the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio

from .. import __version__
from .._actor import ActorSnapshot, ActorState
from .._delivery import Priority
from .._fleet import Fleet
from .._mode import ModeController
from .._reload import CurrentConfig
from .._wakeups import Wakeups
from ..control import PROTOCOL_VERSION, Status
from ..control import _replies as r
from ..resilience import BreakerState
from ..store import QueueCounts, Store


@attrs.define(eq=False)
class Addresses:
    """Where the daemon can be reached, once its listeners are bound."""

    sandbox: str | None = None
    metrics: str | None = None
    webhooks: str | None = None


def depth(counts: QueueCounts | None) -> tuple[r.QueueDepth, int]:
    """Queued by priority, and in flight."""
    if counts is None:
        return r.QueueDepth(), 0
    q = counts.queued
    queued = r.QueueDepth(q[Priority.CRITICAL], q[Priority.NORMAL], q[Priority.BULK])
    return queued, counts.inflight


def integration_status(s: ActorSnapshot, counts: QueueCounts | None) -> r.IntegrationStatus:
    queued, in_flight = depth(counts)
    return r.IntegrationStatus(
        name=s.name,
        kind=s.kind,
        state=s.state.value,
        paused=s.paused,
        breaker=s.breaker.value,
        breaker_forced=s.breaker_forced,
        health=s.health.value,
        success_rate=round(s.success_rate, 4),
        latency_p50=round(s.p50, 4),
        latency_p95=round(s.p95, 4),
        latency_p99=round(s.p99, 4),
        lanes=s.lanes,
        restarts=s.restarts,
        delivered=s.delivered,
        retried=s.retried,
        dead=s.dead,
        last_error=s.last_error,
        queued=queued,
        in_flight=in_flight,
        attempting=s.in_flight,
        budgets=[r.BudgetView(**attrs.asdict(b)) for b in s.budgets],
    )


@attrs.frozen
class StatusHandler:
    current: CurrentConfig
    fleet: Fleet
    mode: ModeController
    store: Store
    addresses: Addresses
    started_at: float  # trio's clock
    stalls: Callable[[], list[r.StallView]] = lambda: []  # the stall detector's findings
    privacy: Callable[[], r.PrivacyStatus | None] = lambda: None
    cluster: Callable[[], Awaitable[r.ClusterStatus | None]] | None = None

    async def __call__(self, request: Status) -> r.StatusReply:
        status = self.status()
        if self.cluster is None:
            return status
        return attrs.evolve(status, cluster=await self.cluster())

    def status(self) -> r.StatusReply:
        config, counts = self.current.value, self.store.counters.by_target
        stats = self.store.statistics()
        return r.StatusReply(
            version=__version__,
            protocol=PROTOCOL_VERSION,
            uptime_seconds=round(trio.current_time() - self.started_at, 3),
            config=str(config.source),
            mode="wedding_day" if self.mode.mode.on else "normal",
            wedding_day=self.mode.reply(),
            sandbox=self.addresses.sandbox,
            metrics=self.addresses.metrics,
            integrations=[
                integration_status(s, counts.get(s.name)) for s in self.fleet.snapshots()
            ],
            groups=self._groups(),
            store=r.StoreStatus(
                str(config.db_path), stats.commits, stats.committed_ops, stats.pending_ops
            ),
            stalls=self.stalls(),
            webhooks=self.addresses.webhooks,
            privacy=self.privacy(),
        )

    def _groups(self) -> dict[str, r.GroupStatus]:
        counts, groups = self.store.counters.by_target, {}
        for name, members in self.current.value.groups.items():
            dispatcher = self.fleet.dispatchers.get(name)
            if dispatcher is not None:
                queued, in_flight = depth(counts.get(name))
                groups[name] = r.GroupStatus(list(members), dispatcher.paused, queued, in_flight)
        return groups


def summary_line(fleet: Fleet, wakeups: Wakeups) -> Callable[[], str]:
    """One line for systemd's STATUS=: integrations running, queued, breakers open."""

    def line() -> str:
        snapshots = fleet.snapshots()
        running = sum(1 for s in snapshots if s.state is ActorState.RUNNING)
        open_breakers = [s.name for s in snapshots if s.breaker is BreakerState.OPEN]
        text = f"{running}/{len(snapshots)} integrations running, {wakeups.queued_total()} queued"
        if open_breakers:
            text += f", breaker open: {', '.join(open_breakers)}"
        return text

    return line
