"""Prometheus metrics from the project's own registry.

Counters and histograms are fed by frozen records at commit time (a settled
attempt is counted once it is durable); gauges are read from snapshots at
scrape time by one Collector. Nothing here touches the global registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._actor import ActorSnapshot
from ._delivery import Priority
from .store import QueueCounts, Settle, SettleKind

DELIVERY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    1800,
    3600,
)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_OUTCOME = {
    SettleKind.DELIVERED: "delivered",
    SettleKind.RETRIED: "retried",
    SettleKind.FAILED_OVER: "retried",
    SettleKind.DEAD_LETTERED: "dead",
}


@attrs.frozen
class DaemonGauges:
    """The daemon-wide state a scrape shows."""

    wedding_day: bool = False
    # Seconds since the oldest message still queued was submitted, by target
    # and priority label (refreshed by the heartbeat, not at scrape time).
    oldest_queued: Mapping[tuple[str, str], float] = attrs.field(factory=dict)


class _Snapshots(Collector):
    """Reads the actors' and the queue's state at scrape time."""

    def __init__(
        self,
        actors: Callable[[], Sequence[ActorSnapshot]],
        queues: Callable[[], Mapping[str, QueueCounts]],
        gauges: Callable[[], DaemonGauges],
    ) -> None:
        self._actors = actors
        self._queues = queues
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        snapshots = self._actors()
        breaker = GaugeMetricFamily(
            "ringbearer_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            labels=["integration"],
        )
        health = GaugeMetricFamily(
            "ringbearer_health_state",
            "Integration health: 0 healthy, 1 degraded, 2 down.",
            labels=["integration"],
        )
        up = GaugeMetricFamily(
            "ringbearer_actor_up",
            "1 when the integration's actor is running.",
            labels=["integration"],
        )
        restarts = CounterMetricFamily(
            "ringbearer_actor_restarts", "Actor restarts after a crash.", labels=["integration"]
        )
        for s in snapshots:
            breaker.add_metric([s.name], s.breaker.gauge)
            health.add_metric([s.name], s.health.gauge)
            up.add_metric([s.name], 1 if s.state.value == "running" else 0)
            restarts.add_metric([s.name], s.restarts)
        yield from (breaker, health, up, restarts)
        yield self._budget_family(snapshots)
        yield from self._queue_families()
        yield from self._daemon_families()

    def _daemon_families(self) -> Iterable[Metric]:
        gauges = self._gauges()
        yield GaugeMetricFamily(
            "ringbearer_wedding_day_mode",
            "1 while wedding-day mode is on.",
            value=1 if gauges.wedding_day else 0,
        )
        oldest = GaugeMetricFamily(
            "ringbearer_queue_oldest_age_seconds",
            "Seconds since the oldest message still queued was submitted (0 when none).",
            labels=["integration", "priority"],
        )
        queues = self._queues()
        for target in sorted(queues):
            for priority in Priority:
                age = gauges.oldest_queued.get((target, priority.label), 0.0)
                oldest.add_metric([target, priority.label], age)
        yield oldest

    def _budget_family(self, snapshots: Iterable[ActorSnapshot]) -> Metric:
        left = GaugeMetricFamily(
            "ringbearer_budget_remaining",
            "Messages a quota budget still allows in its window, for critical and other work.",
            labels=["integration", "per", "work"],
        )
        for s in snapshots:
            for b in s.budgets:
                left.add_metric([s.name, b.per, "critical"], b.left_for_critical)
                left.add_metric([s.name, b.per, "other"], b.left_for_others)
        return left

    def _queue_families(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "ringbearer_queue_depth",
            "Messages queued (due now or later), by target and priority.",
            labels=["integration", "priority"],
        )
        inflight = GaugeMetricFamily(
            "ringbearer_in_flight",
            "Messages claimed for delivery, by target.",
            labels=["integration"],
        )
        for target, counts in sorted(self._queues().items()):
            for priority in Priority:
                depth.add_metric([target, priority.label], counts.queued[priority])
            inflight.add_metric([target], counts.inflight)
        yield depth
        yield inflight


@attrs.frozen
class _Children:
    outcomes: dict[str, Counter]
    requests: Histogram
    delivery: Histogram


class Metrics:
    """The daemon's metrics; ``observe`` is the hook the store calls after a commit."""

    def __init__(self) -> None:
        self._by_integration: dict[str, _Children] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "ringbearer_messages",
            "Settled delivery attempts by outcome.",
            ["integration", "outcome"],
            registry=self.registry,
        )
        self.delivery = Histogram(
            "ringbearer_delivery_seconds",
            "Time from submit to delivered.",
            ["integration"],
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Histogram(
            "ringbearer_provider_request_seconds",
            "Duration of one request to a provider.",
            ["integration"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.submitted = Counter(
            "ringbearer_submitted_messages",
            "Messages accepted (committed) by target.",
            ["integration"],
            registry=self.registry,
        )

    def watch(
        self,
        actors: Callable[[], Sequence[ActorSnapshot]],
        queues: Callable[[], Mapping[str, QueueCounts]],
        gauges: Callable[[], DaemonGauges] = DaemonGauges,
    ) -> None:
        self.registry.register(_Snapshots(actors, queues, gauges))

    def submitted_to(self, target: str) -> None:
        """One message accepted (committed) for ``target``."""
        self.submitted.labels(target).inc()

    def observe(self, settles: Sequence[Settle], now: float) -> None:
        for s in settles:
            children = self._children(s.integration)
            outcome = _OUTCOME.get(s.kind)
            if outcome is not None:
                children.outcomes[outcome].inc()
            if s.attempt is not None:
                children.requests.observe(s.attempt.duration)
            if s.kind is SettleKind.DELIVERED:
                children.delivery.observe(max(0.0, now - s.created_at))

    def _children(self, integration: str) -> _Children:
        # labels() costs a lock and a tuple build each call: look each child up once.
        children = self._by_integration.get(integration)
        if children is None:
            children = self._by_integration[integration] = _Children(
                outcomes={o: self.messages.labels(integration, o) for o in set(_OUTCOME.values())},
                requests=self.requests.labels(integration),
                delivery=self.delivery.labels(integration),
            )
        return children
