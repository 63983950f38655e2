"""Wedding-day mode as one actor applies it: its own settings, and the bypass.

While the mode is on, an actor's breaker waits less before probing again, its
health is judged more strictly, critical work may keep trying for longer, some
lanes stay free for critical work, and an open breaker may still let a few
critical messages through (the bypass, a fresh budget each time it opens).
"""

from __future__ import annotations

import attrs

from ._delivery import Priority
from ._wedding import WeddingDaySettings
from .resilience import CircuitBreaker, Health, HealthSettings, RetryPolicy


@attrs.define
class WeddingRules:
    retry: RetryPolicy  # the integration's own
    base_open_seconds: float
    base_health: HealthSettings
    settings: WeddingDaySettings | None = None  # None: the mode is off
    critical_retry: RetryPolicy | None = None
    bypass_left: int = 0
    bypass: set[int] = attrs.Factory(set)  # envelopes handed over under the bypass

    def apply(
        self, wedding: WeddingDaySettings | None, breaker: CircuitBreaker, health: Health
    ) -> None:
        """The mode's policy (None: back to the integration's own settings)."""
        self.settings = wedding
        if wedding is None:
            breaker.set_open_seconds(self.base_open_seconds)
            health.settings = self.base_health
            self.bypass_left, self.critical_retry = 0, None
            return
        own = self.retry.settings
        self.critical_retry = RetryPolicy(
            attrs.evolve(
                own,
                max_attempts=max(own.max_attempts, wedding.retry_max_attempts),
                max_age_seconds=max(own.max_age_seconds, wedding.retry_max_age_seconds),
            )
        )
        breaker.set_open_seconds(min(self.base_open_seconds, wedding.breaker_open_seconds))
        health.settings = attrs.evolve(
            self.base_health,
            degraded_below=max(self.base_health.degraded_below, wedding.health_degraded_below),
            down_below=max(self.base_health.down_below, wedding.health_down_below),
        )
        self.bypass_left = wedding.bypass_probes

    def breaker_opened(self) -> None:
        if self.settings is not None:
            self.bypass_left = self.settings.bypass_probes  # a fresh budget each open spell

    def held_lanes(self, lanes: int) -> int:
        """Lanes kept for critical work; at least one is left for other work."""
        if self.settings is None:
            return 0
        return min(self.settings.critical_lanes, lanes - 1)

    def handed(self, envelope_id: int, priority: Priority, breaker_open: bool) -> None:
        """A critical message handed over while the breaker is open spends the bypass."""
        if priority is Priority.CRITICAL and breaker_open and self.bypass_left > 0:
            self.bypass_left -= 1
            self.bypass.add(envelope_id)

    def bypassing(self, ids: set[int]) -> bool:
        """Was this batch handed over under the bypass (then it goes despite the breaker)?"""
        if not ids <= self.bypass:
            return False
        self.bypass -= ids
        return True

    def retry_for(self, priority: Priority) -> RetryPolicy:
        if self.critical_retry is not None and priority is Priority.CRITICAL:
            return self.critical_retry  # critical work keeps trying for longer
        return self.retry
