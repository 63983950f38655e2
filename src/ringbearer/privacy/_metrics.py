"""Privacy's metrics: erasures by outcome, subjects with a key, tokens' time left.

Registered on the registry it is given, never the global one. Labels are
bounded: outcomes are two words, integrations come from the config.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge


@attrs.define(eq=False)
class PrivacyMetrics:
    registry: CollectorRegistry
    erasures: Counter = attrs.field(init=False)
    subjects: Gauge = attrs.field(init=False)
    token_expiry: Gauge = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.erasures = Counter(
            "ringbearer_erasures",
            "Erasure jobs finished, by outcome (completed, provider_failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.subjects = Gauge(
            "ringbearer_subjects_encrypted",
            "Data subjects whose data is sealed under a key of their own",
            registry=self.registry,
        )
        self.token_expiry = Gauge(
            "ringbearer_token_expiry_seconds",
            "Seconds until an integration's OAuth access token expires",
            ["integration"],
            registry=self.registry,
        )

    def count_subjects(self, count: Callable[[], int]) -> None:
        self.subjects.set_function(lambda: float(count()))

    def erasure(self, outcome: str) -> None:
        self.erasures.labels(outcome=outcome).inc()
