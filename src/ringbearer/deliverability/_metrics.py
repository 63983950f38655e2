"""Deliverability's metrics: provider events, complaint ratios, suppressed messages.

Registered on the registry it is given (the daemon's own, or a fresh one in a
test), never the global one. Label values are bounded: integrations and
sending domains come from the config, events and reasons are enums.
"""

from __future__ import annotations

import contextlib

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge

from ._model import EventType


@attrs.define(eq=False)
class DeliverabilityMetrics:
    """The three families of the issue, fed by the ingest, the guard, the intake and the gate."""

    registry: CollectorRegistry
    events: Counter = attrs.field(init=False)
    complaints: Gauge = attrs.field(init=False)
    suppressions: Counter = attrs.field(init=False)
    _event_children: dict[tuple[str, EventType], Counter] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.events = Counter(
            "ringbearer_email_events",
            "Provider events kept (each once), by integration and event",
            ["integration", "event"],
            registry=self.registry,
        )
        self.complaints = Gauge(
            "ringbearer_email_complaint_ratio",
            "Complaints over delivered email in the reputation guard's window, by sending domain",
            ["domain"],
            registry=self.registry,
        )
        self.suppressions = Counter(
            "ringbearer_suppressed",
            "Messages refused at submit or dropped before sending, by reason",
            ["reason"],
            registry=self.registry,
        )

    def event(self, integration: str, event_type: EventType) -> None:
        # Each event counts: the labelled child is looked up once, not on every event.
        key = (integration, event_type)
        child = self._event_children.get(key)
        if child is None:
            child = self._event_children[key] = self.events.labels(integration, event_type.value)
        child.inc()

    def suppressed(self, reason: str) -> None:
        """``reason``: a Reason's value, or ``frequency_cap``."""
        self.suppressions.labels(reason=reason).inc()

    def complaint_ratio(self, domain: str, value: float) -> None:
        self.complaints.labels(domain=domain).set(value)

    def forget_domain(self, domain: str) -> None:
        """A domain the guard no longer watches: its gauge goes rather than lie at a stale value."""
        with contextlib.suppress(KeyError):
            self.complaints.remove(domain)
