"""``ringbearer_growth_k{by,cohort}``: the viral coefficient of the last 12 cohorts of each
view, read from the model at each scrape (O(cohorts), no rescan)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._cohorts import By, Growth

LAST_COHORTS = 12


@attrs.frozen
class GrowthCollector(Collector):
    model: Growth
    ready: Callable[[], bool] = lambda: True  # False while kept events are read back

    def collect(self) -> Iterator[Metric]:
        k = GaugeMetricFamily(
            "ringbearer_growth_k",
            "Viral coefficient (accepted invites per user) of the last 12 cohorts of each view",
            labels=("by", "cohort"),
        )
        for by in By if self.ready() else ():  # no partial figures after a restart
            rows = [row for row in self.model.report(by) if row.cohort is not None]
            for row in rows[-LAST_COHORTS:]:
                k.add_metric((by.value, str(row.cohort)), row.k)
        yield k


def watch_growth(
    registry: CollectorRegistry, model: Growth, ready: Callable[[], bool] = lambda: True
) -> None:
    registry.register(GrowthCollector(model, ready))
