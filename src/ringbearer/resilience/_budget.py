"""Quota budgets: what a provider allows per second, minute, hour or day, with a share kept
back for critical work.

Providers count some limits over a window rather than as a rate: PagerDuty
takes about 120 events a minute per routing key, Instagram publishes 50
posts a day, Resend answers two requests a second. A :class:`Budget` counts
the messages sent in the last window (a sliding log of send times, so it
matches a provider's rolling window) and lets ``normal`` and ``bulk`` work
spend only ``1 - critical_reserve`` of it: bulk traffic can never spend
what a wedding-day alert needs.

Send times are wall-clock seconds, so a restart can rebuild the log from the
audit trail's ``attempted`` events (:meth:`Budget.restore`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import attrs
from attrs import validators as v

from .._delivery import Priority

SECONDS: dict[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@attrs.frozen
class BudgetSettings:
    """``limit`` messages per ``per``; ``critical_reserve`` of them only for critical work."""

    limit: int = attrs.field(validator=v.gt(0))
    per: str = attrs.field(validator=v.in_(tuple(SECONDS)))
    critical_reserve: float = attrs.field(default=0.2, validator=[v.ge(0.0), v.lt(1.0)])

    @property
    def window(self) -> float:
        return SECONDS[self.per]

    def allowance(self, priority: Priority) -> int:
        """How much of the window ``priority`` may spend."""
        if priority is Priority.CRITICAL:
            return self.limit
        return math.floor(self.limit * (1.0 - self.critical_reserve))


@attrs.frozen
class BudgetSnapshot:
    limit: int
    per: str
    used: int
    left_for_critical: int
    left_for_others: int


@attrs.define
class Budget:
    """One quota's sliding window of send times."""

    settings: BudgetSettings
    clock: Callable[[], float]  # wall clock, seconds since the epoch
    _sent: deque[float] = attrs.field(init=False, factory=deque)

    def _expire(self, now: float) -> None:
        start = now - self.settings.window
        while self._sent and self._sent[0] <= start:
            self._sent.popleft()

    def wait_time(self, priority: Priority) -> float:
        """Seconds until ``priority`` may spend one; 0.0 if it may now."""
        now = self.clock()
        self._expire(now)
        allowance = self.settings.allowance(priority)
        excess = len(self._sent) - allowance
        if excess < 0:
            return 0.0
        if allowance == 0:
            return self.settings.window  # nothing is ever left for it: check again later
        # The send that must leave the window before one more fits.
        return max(0.0, self._sent[excess] + self.settings.window - now)

    def spend(self) -> None:
        self._sent.append(self.clock())

    def restore(self, sent_at: Iterable[float]) -> None:
        """Rebuild the window from earlier sends (e.g. the audit log's attempts)."""
        now = self.clock()
        self._sent = deque(sorted(t for t in sent_at if t <= now))
        self._expire(now)
        while len(self._sent) > self.settings.limit:
            self._sent.popleft()

    def snapshot(self) -> BudgetSnapshot:
        self._expire(self.clock())
        used = len(self._sent)
        return BudgetSnapshot(
            limit=self.settings.limit,
            per=self.settings.per,
            used=used,
            left_for_critical=max(0, self.settings.limit - used),
            left_for_others=max(0, self.settings.allowance(Priority.NORMAL) - used),
        )


@attrs.define
class Budgets:
    """All of one integration's quotas: a message is sent only when every one allows it."""

    budgets: Sequence[Budget]

    @classmethod
    def of(cls, settings: Sequence[BudgetSettings], clock: Callable[[], float]) -> Budgets:
        return cls([Budget(s, clock) for s in settings])

    def wait_time(self, priority: Priority) -> float:
        """Seconds until every budget lets ``priority`` spend; 0.0 if they do now."""
        return max((b.wait_time(priority) for b in self.budgets), default=0.0)

    def try_spend(self, priority: Priority) -> float:
        """Spend one from every budget and return 0.0, or return the wait and spend nothing."""
        wait = self.wait_time(priority)
        if wait == 0.0:
            for budget in self.budgets:
                budget.spend()
        return wait

    @property
    def longest(self) -> BudgetSettings | None:
        """The budget with the longest window (what a restart must look back over)."""
        return max((b.settings for b in self.budgets), key=lambda s: s.window, default=None)

    def restore(self, sent_at: Sequence[float]) -> None:
        for budget in self.budgets:
            budget.restore(sent_at)

    def snapshot(self) -> tuple[BudgetSnapshot, ...]:
        return tuple(b.snapshot() for b in self.budgets)
