"""A circuit breaker: stop calling a provider that keeps failing, then probe it.

The breaker is a pure state machine over an injected clock::

    CLOSED ──failure rate tripped──▶ OPEN ──open_seconds passed──▶ HALF_OPEN
      ▲                               ▲                                │
      │                               └─────────a probe failed─────────┤
      └───────────────────────every probe succeeded────────────────────┘

An operator may force it open or closed from any state; that holds until
:meth:`CircuitBreaker.reset`. Every move is looked up in one table,
``_TRANSITIONS``; a move that is not in it is a bug and raises.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from typing import Final

import attrs
import trio
from attrs import validators as v

# The sliding window is kept in this many buckets whatever its length, so its
# memory is fixed; a call stays counted for between (1 - 1/_BUCKETS) and 1
# window lengths, never longer.
_BUCKETS: Final = 60


class BreakerState(enum.Enum):
    """Where a breaker stands; ``gauge`` is its value for a metrics gauge."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def gauge(self) -> int:
        return _GAUGE[self]


_GAUGE: Final = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class _Trigger(enum.Enum):
    """What asks the breaker to move."""

    TRIPPED = "tripped"  # the failure rate over the window reached the limit
    COOLED_DOWN = "cooled_down"  # an open breaker has waited open_seconds
    PROBE_FAILED = "probe_failed"
    PROBES_PASSED = "probes_passed"
    FORCE_OPEN = "force_open"
    FORCE_CLOSE = "force_close"
    RESET = "reset"


def _build_transitions() -> dict[tuple[BreakerState, _Trigger], BreakerState]:
    closed, half_open, open_ = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
    table = {
        (closed, _Trigger.TRIPPED): open_,
        (open_, _Trigger.COOLED_DOWN): half_open,
        (half_open, _Trigger.PROBE_FAILED): open_,
        (half_open, _Trigger.PROBES_PASSED): closed,
    }
    # The operator overrides whatever the breaker has concluded.
    for state in BreakerState:
        table[state, _Trigger.FORCE_OPEN] = open_
        table[state, _Trigger.FORCE_CLOSE] = closed
        table[state, _Trigger.RESET] = closed
    return table


_TRANSITIONS: Final = _build_transitions()


@attrs.frozen
class BreakerSettings:
    """When a breaker opens, how long it stays open, and how it probes."""

    window_seconds: float = attrs.field(default=60.0, validator=v.gt(0.0))
    minimum_calls: int = attrs.field(default=10, validator=v.ge(1))
    failure_rate: float = attrs.field(default=0.5, validator=[v.gt(0.0), v.le(1.0)])
    slow_call_seconds: float = attrs.field(default=5.0, validator=v.gt(0.0))
    open_seconds: float = attrs.field(default=30.0, validator=v.ge(0.0))
    half_open_probes: int = attrs.field(default=3, validator=v.ge(1))


@attrs.frozen
class BreakerTransition:
    """A breaker changed state; handed to ``on_transition`` hooks."""

    old: BreakerState
    new: BreakerState
    reason: str
    at: float


@attrs.frozen
class BreakerSnapshot:
    """A breaker's state and window at one moment."""

    state: BreakerState
    forced: bool
    calls: int
    failures: int
    failure_rate: float
    open_remaining: float
    probes_in_flight: int


@attrs.define
class _Bucket:
    index: int
    calls: int = 0
    failures: int = 0


@attrs.define
class _Window:
    """Calls and failures over a sliding time window."""

    seconds: float
    _buckets: deque[_Bucket] = attrs.field(init=False, factory=deque)

    def add(self, now: float, *, failed: bool) -> None:
        index = self._prune(now)
        if not self._buckets or self._buckets[-1].index != index:
            self._buckets.append(_Bucket(index))
        bucket = self._buckets[-1]
        bucket.calls += 1
        bucket.failures += int(failed)

    def totals(self, now: float) -> tuple[int, int]:
        """Return (calls, failures) within the window ending at ``now``."""
        self._prune(now)
        calls = sum(b.calls for b in self._buckets)
        return calls, sum(b.failures for b in self._buckets)

    def clear(self) -> None:
        self._buckets.clear()

    def _prune(self, now: float) -> int:
        index = math.floor(now * _BUCKETS / self.seconds)
        while self._buckets and self._buckets[0].index <= index - _BUCKETS:
            self._buckets.popleft()
        return index


@attrs.define
class CircuitBreaker:
    """Decides whether a call to one provider may go, from the results of earlier calls."""

    # Only open_seconds ever changes (set_open_seconds): the window's buckets
    # were cut to its window_seconds when it was built.
    # (An attrs on_setattr guard would make every tally update go through a
    # generated __setattr__, on the hot path of each delivery.)
    settings: BreakerSettings
    clock: Callable[[], float] = trio.current_time
    on_transition: Callable[[BreakerTransition], None] | None = None
    _state: BreakerState = attrs.field(init=False, default=BreakerState.CLOSED)
    _forced: bool = attrs.field(init=False, default=False)
    _open_until: float = attrs.field(init=False, default=0.0)
    _probes_taken: int = attrs.field(init=False, default=0)
    _probes_passed: int = attrs.field(init=False, default=0)
    _window: _Window = attrs.field(init=False)

    @_window.default
    def _new_window(self) -> _Window:
        return _Window(self.settings.window_seconds)

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose time has passed becomes half-open here."""
        if self._cooled_down():
            self._fire(_Trigger.COOLED_DOWN, f"open for {self.settings.open_seconds:g} s")
        return self._state

    @property
    def forced(self) -> bool:
        return self._forced

    def try_acquire(self) -> bool:
        """May a call go now? In half-open, a True takes one of the probe slots."""
        if self._forced:
            return self._state is BreakerState.CLOSED
        match self.state:
            case BreakerState.CLOSED:
                return True
            case BreakerState.OPEN:
                return False
            case BreakerState.HALF_OPEN:
                if self._probes_taken >= self.settings.half_open_probes:
                    return False
                self._probes_taken += 1
                return True

    def release(self) -> None:
        """Give back a permit that was acquired but not used."""
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight() > 0:
            self._probes_taken -= 1

    def record(self, *, ok: bool, duration: float) -> None:
        """Take the result of an admitted call; a slow success counts as a failure."""
        failed = not ok or duration > self.settings.slow_call_seconds
        match self.state:
            case BreakerState.CLOSED:
                self._record_closed(failed)
            case BreakerState.HALF_OPEN:
                self._record_probe(failed)
            case BreakerState.OPEN:
                # A call admitted before the breaker opened: the decision is
                # already made, and counting it would only muddy the next window.
                pass

    def force_open(self, reason: str = "operator") -> None:
        """Refuse every call until :meth:`reset`."""
        self._forced = True
        self._fire(_Trigger.FORCE_OPEN, f"forced open: {reason}")

    def force_close(self, reason: str = "operator") -> None:
        """Admit every call, whatever fails, until :meth:`reset`."""
        self._forced = True
        self._fire(_Trigger.FORCE_CLOSE, f"forced closed: {reason}")

    def reset(self) -> None:
        """Back to closed and unforced, with an empty window."""
        self._forced = False
        self._fire(_Trigger.RESET, "reset")

    def set_open_seconds(self, seconds: float) -> None:
        """Change how long an open breaker waits before probing (the window stays as built).

        An open breaker waiting longer than ``seconds`` from now probes sooner.
        """
        self.settings = attrs.evolve(self.settings, open_seconds=seconds)
        if self._state is BreakerState.OPEN:
            self._open_until = min(self._open_until, self.clock() + seconds)

    def retry_at(self) -> float | None:
        """Clock time at which an open breaker admits probes; None if not open or forced."""
        if self.state is BreakerState.OPEN and not self._forced:
            return self._open_until
        return None

    def snapshot(self) -> BreakerSnapshot:
        now = self.clock()
        state = self.state
        calls, failures = self._window.totals(now)
        return BreakerSnapshot(
            state=state,
            forced=self._forced,
            calls=calls,
            failures=failures,
            failure_rate=failures / calls if calls else 0.0,
            open_remaining=self._open_remaining(now),
            probes_in_flight=self._probes_in_flight(),
        )

    def export(self) -> tuple[BreakerState, bool, float]:
        """What must survive a restart: (state, forced, seconds left open)."""
        state = self.state
        return state, self._forced, self._open_remaining(self.clock())

    def restore(self, state: BreakerState, forced: bool, open_remaining: float) -> None:
        """Take back what :meth:`export` gave, without reporting a transition."""
        if forced and state is BreakerState.HALF_OPEN:
            raise ValueError("a breaker can be forced open or closed, not half-open")
        self._state = state
        self._forced = forced
        # A negative remainder only means the open time passed while we were down.
        self._open_until = self.clock() + max(0.0, open_remaining)
        self._clear_probes()
        self._window.clear()

    def _record_closed(self, failed: bool) -> None:
        now = self.clock()
        self._window.add(now, failed=failed)
        if self._forced:
            return
        calls, failures = self._window.totals(now)
        s = self.settings
        if calls >= s.minimum_calls and failures / calls >= s.failure_rate:
            reason = f"{failures} of {calls} calls failed in {s.window_seconds:g} s"
            self._fire(_Trigger.TRIPPED, reason)

    def _record_probe(self, failed: bool) -> None:
        if self._probes_in_flight() == 0:
            return  # a straggler admitted while closed, not one of our probes
        if failed:
            self._fire(_Trigger.PROBE_FAILED, "a probe failed")
            return
        self._probes_passed += 1
        if self._probes_passed >= self.settings.half_open_probes:
            self._fire(_Trigger.PROBES_PASSED, f"{self._probes_passed} probes succeeded")

    def _fire(self, trigger: _Trigger, reason: str) -> None:
        old = self._state
        new = _TRANSITIONS.get((old, trigger))
        if new is None:
            raise AssertionError(f"illegal breaker transition: {trigger.value} in {old.value}")
        self._state = new
        self._enter(new)
        if new is not old and self.on_transition is not None:
            self.on_transition(BreakerTransition(old, new, reason, self.clock()))

    def _enter(self, state: BreakerState) -> None:
        self._clear_probes()
        match state:
            case BreakerState.OPEN:
                self._open_until = self.clock() + self.settings.open_seconds
            case BreakerState.CLOSED:
                # Failures from before the breaker last opened say nothing
                # about the provider that the probes just vouched for.
                self._window.clear()
            case BreakerState.HALF_OPEN:
                pass

    def _cooled_down(self) -> bool:
        open_ = self._state is BreakerState.OPEN and not self._forced
        return open_ and self.clock() >= self._open_until

    def _open_remaining(self, now: float) -> float:
        if self._state is BreakerState.OPEN and not self._forced:
            return max(0.0, self._open_until - now)
        return 0.0

    def _probes_in_flight(self) -> int:
        return self._probes_taken - self._probes_passed

    def _clear_probes(self) -> None:
        self._probes_taken = 0
        self._probes_passed = 0
