"""How well a provider is doing, judged over a rolling time window.

Health is for people and for routing, not for admission (that is the
breaker's job): it says *healthy*, *degraded* (failing now and then, or slow)
or *down* (failing most of the time), from the success rate and the latency
percentiles of the recent calls.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio
from attrs import validators as v

# Enough samples for a steady p99, few enough that a busy provider cannot
# make the window grow without bound; older samples give way first.
_MAX_SAMPLES: Final = 2048


class HealthState(enum.Enum):
    """How a provider is doing; ``gauge`` is its value for a metrics gauge."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"

    @property
    def gauge(self) -> int:
        return _GAUGE[self]


_GAUGE: Final = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.DOWN: 2}


@attrs.frozen
class HealthSettings:
    """The window and the thresholds that separate the states."""

    window_seconds: float = attrs.field(default=300.0, validator=v.gt(0.0))
    minimum_calls: int = attrs.field(default=5, validator=v.ge(1))
    degraded_below: float = attrs.field(default=0.95, validator=[v.ge(0.0), v.le(1.0)])
    down_below: float = attrs.field(default=0.5, validator=[v.ge(0.0), v.le(1.0)])
    degraded_p95_seconds: float = attrs.field(default=2.0, validator=v.gt(0.0))

    def __attrs_post_init__(self) -> None:
        if self.down_below > self.degraded_below:
            raise ValueError(
                f"down_below ({self.down_below}) must not exceed"
                f" degraded_below ({self.degraded_below})"
            )


@attrs.frozen
class HealthSnapshot:
    """A provider's health and the figures behind it; latencies in seconds.

    With no calls in the window the success rate reads 1.0 (nothing has
    failed) and the latencies 0.0.
    """

    state: HealthState
    calls: int
    success_rate: float
    p50: float
    p95: float
    p99: float


@attrs.frozen
class _Sample:
    at: float
    ok: bool
    latency: float


@attrs.define
class Health:
    """Rolling success rate and latency of one provider, and the state they imply."""

    # Fixed once built (never reassigned): the running tallies below were counted against it.
    # (An attrs on_setattr guard would make every tally update go through a
    # generated __setattr__, on the hot path of each delivery.)
    settings: HealthSettings
    clock: Callable[[], float] = trio.current_time
    on_change: Callable[[HealthState, HealthState, str], None] | None = None
    _samples: deque[_Sample] = attrs.field(init=False, factory=deque)
    # Kept as samples come and go so that judging a call costs no sort; the
    # percentiles themselves are only computed for snapshots and reasons.
    _successes: int = attrs.field(init=False, default=0)
    _slow: int = attrs.field(init=False, default=0)
    _state: HealthState = attrs.field(init=False, default=HealthState.HEALTHY)

    def record(self, *, ok: bool, latency: float) -> None:
        """Take the result of one call."""
        if len(self._samples) >= _MAX_SAMPLES:
            self._drop_oldest()
        self._samples.append(_Sample(self.clock(), ok, latency))
        self._successes += ok
        self._slow += latency > self.settings.degraded_p95_seconds
        self._evaluate()

    @property
    def state(self) -> HealthState:
        """The current state; samples leaving the window can change it (and report it)."""
        return self._evaluate()

    def state_with(self, breaker_open: bool) -> HealthState:
        """The state to show when the breaker's view is known: an open breaker means down."""
        return HealthState.DOWN if breaker_open else self.state

    def snapshot(self) -> HealthSnapshot:
        state = self._evaluate()
        return _summarise(self._samples).with_state(state)

    def _evaluate(self) -> HealthState:
        self._prune()
        new = self._judge()
        if new is not self._state:
            old, self._state = self._state, new
            if self.on_change is not None:
                self.on_change(old, new, self._reason(new))
        return new

    def _judge(self) -> HealthState:
        s, calls = self.settings, len(self._samples)
        if calls < s.minimum_calls:
            return HealthState.HEALTHY
        rate = self._successes / calls
        if rate < s.down_below:
            return HealthState.DOWN
        # The p95 is above the limit exactly when more calls were slow than
        # the 5 % above the 95th rank.
        if rate < s.degraded_below or self._slow > calls - _rank(calls, 95):
            return HealthState.DEGRADED
        return HealthState.HEALTHY

    def _reason(self, state: HealthState) -> str:
        s, figures = self.settings, _summarise(self._samples)
        rate, p95 = figures.success_rate, figures.p95
        if figures.calls < s.minimum_calls:
            return f"{figures.calls} calls in the window, too few to judge"
        match state:
            case HealthState.DOWN:
                return f"success rate {rate:.2f} below {s.down_below:.2f}"
            case HealthState.DEGRADED if rate < s.degraded_below:
                return f"success rate {rate:.2f} below {s.degraded_below:.2f}"
            case HealthState.DEGRADED:
                return f"p95 latency {p95:.2f} s above {s.degraded_p95_seconds:.2f} s"
            case HealthState.HEALTHY:
                return f"success rate {rate:.2f}, p95 latency {p95:.2f} s"

    def _prune(self) -> None:
        oldest = self.clock() - self.settings.window_seconds
        while self._samples and self._samples[0].at <= oldest:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        sample = self._samples.popleft()
        self._successes -= sample.ok
        self._slow -= sample.latency > self.settings.degraded_p95_seconds


@attrs.frozen
class _Figures:
    calls: int
    success_rate: float
    p50: float
    p95: float
    p99: float

    def with_state(self, state: HealthState) -> HealthSnapshot:
        return HealthSnapshot(state, self.calls, self.success_rate, self.p50, self.p95, self.p99)


def _summarise(samples: Sequence[_Sample]) -> _Figures:
    if not samples:
        return _Figures(calls=0, success_rate=1.0, p50=0.0, p95=0.0, p99=0.0)
    latencies = sorted(s.latency for s in samples)
    successes = sum(1 for s in samples if s.ok)
    return _Figures(
        calls=len(samples),
        success_rate=successes / len(samples),
        p50=latencies[_rank(len(latencies), 50) - 1],
        p95=latencies[_rank(len(latencies), 95) - 1],
        p99=latencies[_rank(len(latencies), 99) - 1],
    )


def _rank(count: int, percent: int) -> int:
    """The 1-based nearest rank of a percentile among ``count`` values, in exact integers."""
    return max(1, -(-count * percent // 100))
