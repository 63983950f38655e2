"""The circuit breaker's state machine, driven by trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

import ringbearer.resilience as resilience
from ringbearer.resilience import (
    BreakerSettings,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    _breaker,
)

CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
SETTINGS = BreakerSettings(
    window_seconds=60.0,
    minimum_calls=10,
    failure_rate=0.5,
    slow_call_seconds=5.0,
    open_seconds=30.0,
    half_open_probes=3,
)


def make() -> tuple[CircuitBreaker, list[BreakerTransition]]:
    seen: list[BreakerTransition] = []
    return CircuitBreaker(SETTINGS, on_transition=seen.append), seen


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record(ok=False, duration=0.1)


def succeed(breaker: CircuitBreaker, times: int, duration: float = 0.1) -> None:
    for _ in range(times):
        breaker.record(ok=True, duration=duration)


def moves(seen: list[BreakerTransition]) -> list[tuple[BreakerState, BreakerState]]:
    return [(t.old, t.new) for t in seen]


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, SETTINGS.minimum_calls)
    assert breaker.state is OPEN


async def half_open(breaker: CircuitBreaker) -> None:
    trip(breaker)
    await trio.sleep(SETTINGS.open_seconds)
    assert breaker.state is HALF_OPEN


def test_public_surface() -> None:
    """Every public name of the breaker module is re-exported by the package."""
    public = {
        n
        for n, obj in vars(_breaker).items()
        if getattr(obj, "__module__", "") == _breaker.__name__ and not n.startswith("_")
    }
    assert all(getattr(resilience, n) is getattr(_breaker, n) for n in public)
    assert public == {
        "BreakerSettings",
        "BreakerSnapshot",
        "BreakerState",
        "BreakerTransition",
        "CircuitBreaker",
    }


def test_gauge_values() -> None:
    """The gauge orders the states from closed (0) to open (2)."""
    assert [s.gauge for s in (CLOSED, HALF_OPEN, OPEN)] == [0, 1, 2]


async def test_stays_closed_below_minimum_calls(autojump_clock: trio.testing.MockClock) -> None:
    """Failures alone do not open the breaker until minimum_calls calls are in the window."""
    breaker, seen = make()
    fail(breaker, SETTINGS.minimum_calls - 1)
    assert breaker.state is CLOSED
    assert breaker.try_acquire()
    assert seen == []


async def test_opens_when_failure_rate_reached(autojump_clock: trio.testing.MockClock) -> None:
    """With minimum_calls in the window, a failure rate at the limit opens the breaker."""
    breaker, seen = make()
    succeed(breaker, 5)
    fail(breaker, 4)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN
    assert not breaker.try_acquire()
    assert moves(seen) == [(CLOSED, OPEN)]
    assert seen[0].reason == "5 of 10 calls failed in 60 s"
    assert seen[0].at == trio.current_time()


async def test_rate_below_limit_stays_closed(autojump_clock: trio.testing.MockClock) -> None:
    """A failure rate under the limit keeps the breaker closed however many calls there are."""
    breaker, _ = make()
    for _ in range(10):
        succeed(breaker, 6)
        fail(breaker, 4)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures, snap.failure_rate) == (CLOSED, 100, 40, 0.4)


async def test_ignores_failures_older_than_window(autojump_clock: trio.testing.MockClock) -> None:
    """Failures that have left the sliding window no longer count toward opening."""
    breaker, _ = make()
    fail(breaker, 9)
    await trio.sleep(SETTINGS.window_seconds)
    fail(breaker, 1)
    succeed(breaker, 9)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures) == (CLOSED, 10, 1)


async def test_window_keeps_recent_failures(autojump_clock: trio.testing.MockClock) -> None:
    """Failures spread across the window still add up and open the breaker."""
    breaker, _ = make()
    for _ in range(10):
        fail(breaker, 1)
        await trio.sleep(5.0)
    assert breaker.state is OPEN


async def test_slow_success_counts_as_failure(autojump_clock: trio.testing.MockClock) -> None:
    """A success slower than slow_call_seconds counts as a failure; one at the limit does not."""
    breaker, _ = make()
    succeed(breaker, 10, duration=SETTINGS.slow_call_seconds)
    assert breaker.state is CLOSED
    succeed(breaker, 10, duration=SETTINGS.slow_call_seconds + 0.01)
    assert breaker.state is OPEN


async def test_open_refuses_until_open_seconds_pass(autojump_clock: trio.testing.MockClock) -> None:
    """An open breaker refuses calls for open_seconds, then turns half-open and says so."""
    breaker, seen = make()
    trip(breaker)
    opened = trio.current_time()
    assert breaker.retry_at() == opened + SETTINGS.open_seconds
    assert breaker.snapshot().open_remaining == SETTINGS.open_seconds
    await trio.sleep(SETTINGS.open_seconds - 0.5)
    assert not breaker.try_acquire()
    assert breaker.snapshot().open_remaining == pytest.approx(0.5)
    await trio.sleep(0.5)
    assert breaker.try_acquire()
    assert breaker.state is HALF_OPEN
    assert breaker.retry_at() is None
    assert moves(seen) == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


async def test_half_open_admits_exactly_the_probes(autojump_clock: trio.testing.MockClock) -> None:
    """Half-open admits half_open_probes calls and refuses the next until one is released."""
    breaker, _ = make()
    await half_open(breaker)
    admitted = [breaker.try_acquire() for _ in range(SETTINGS.half_open_probes + 2)]
    assert admitted == [True] * SETTINGS.half_open_probes + [False, False]
    assert breaker.snapshot().probes_in_flight == SETTINGS.half_open_probes
    breaker.release()
    assert breaker.snapshot().probes_in_flight == SETTINGS.half_open_probes - 1
    assert breaker.try_acquire()
    assert not breaker.try_acquire()


async def test_finished_probes_still_use_their_slot(autojump_clock: trio.testing.MockClock) -> None:
    """A probe that succeeded keeps its slot, so half-open never admits more than the probes."""
    breaker, _ = make()
    await half_open(breaker)
    assert breaker.try_acquire()
    succeed(breaker, 1)
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    assert breaker.state is HALF_OPEN


async def test_closes_after_probes_succeed(autojump_clock: trio.testing.MockClock) -> None:
    """When every probe succeeds the breaker closes with an empty window."""
    breaker, seen = make()
    await half_open(breaker)
    for _ in range(SETTINGS.half_open_probes):
        assert breaker.try_acquire()
    succeed(breaker, SETTINGS.half_open_probes - 1)
    assert breaker.state is HALF_OPEN
    succeed(breaker, 1)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.probes_in_flight) == (CLOSED, 0, 0)
    assert moves(seen)[-1] == (HALF_OPEN, CLOSED)
    assert seen[-1].reason == "3 probes succeeded"


async def test_probe_failure_reopens(autojump_clock: trio.testing.MockClock) -> None:
    """A failed probe reopens the breaker at once and starts a fresh open period."""
    breaker, seen = make()
    await half_open(breaker)
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    succeed(breaker, 1)
    fail(breaker, 1)
    assert breaker.state is OPEN
    assert breaker.retry_at() == trio.current_time() + SETTINGS.open_seconds
    assert not breaker.try_acquire()
    assert moves(seen) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


async def test_slow_probe_reopens(autojump_clock: trio.testing.MockClock) -> None:
    """A probe that succeeds too slowly counts as a failed probe."""
    breaker, _ = make()
    await half_open(breaker)
    assert breaker.try_acquire()
    succeed(breaker, 1, duration=SETTINGS.slow_call_seconds + 1)
    assert breaker.state is OPEN


async def test_stragglers_are_ignored(autojump_clock: trio.testing.MockClock) -> None:
    """Results of calls admitted before the breaker opened change nothing while open or probing."""
    breaker, seen = make()
    trip(breaker)
    succeed(breaker, 20)
    assert breaker.state is OPEN
    await trio.sleep(SETTINGS.open_seconds)
    fail(breaker, 1)  # no probe is out, so this is not a probe's result
    assert breaker.state is HALF_OPEN
    assert len(seen) == 2


async def test_force_open_holds(autojump_clock: trio.testing.MockClock) -> None:
    """A forced-open breaker refuses every call, never half-opens, and yields only to reset."""
    breaker, seen = make()
    breaker.force_open("maintenance")
    await trio.sleep(SETTINGS.open_seconds * 10)
    snap = breaker.snapshot()
    assert (snap.state, snap.forced, snap.open_remaining) == (OPEN, True, 0.0)
    assert not breaker.try_acquire()
    assert breaker.retry_at() is None
    breaker.force_open()
    breaker.reset()
    assert breaker.state is CLOSED
    assert not breaker.forced
    assert breaker.try_acquire()
    assert [(t.old, t.new, t.reason) for t in seen] == [
        (CLOSED, OPEN, "forced open: maintenance"),
        (OPEN, CLOSED, "reset"),
    ]


async def test_force_close_holds(autojump_clock: trio.testing.MockClock) -> None:
    """A forced-closed breaker admits every call whatever fails, until reset."""
    breaker, seen = make()
    trip(breaker)
    breaker.force_close()
    fail(breaker, 50)
    assert breaker.state is CLOSED
    assert breaker.try_acquire()
    assert breaker.snapshot().forced
    breaker.reset()
    fail(breaker, SETTINGS.minimum_calls)
    assert breaker.state is OPEN
    assert moves(seen) == [(CLOSED, OPEN), (OPEN, CLOSED), (CLOSED, OPEN)]


async def test_reset_clears_the_window(autojump_clock: trio.testing.MockClock) -> None:
    """Reset forgets the failures counted so far and reports nothing when already closed."""
    breaker, seen = make()
    fail(breaker, 9)
    breaker.reset()
    fail(breaker, 1)
    assert breaker.snapshot().calls == 1
    assert seen == []


async def test_export_restore_round_trip(autojump_clock: trio.testing.MockClock) -> None:
    """An open breaker restored from its export keeps the open time it had left."""
    breaker, _ = make()
    trip(breaker)
    await trio.sleep(10.0)
    saved = breaker.export()
    assert saved[:2] == (OPEN, False)
    assert saved[2] == pytest.approx(20.0)
    await trio.sleep(100.0)  # the daemon was down for a while
    restored, seen = make()
    restored.restore(*saved)
    assert restored.state is OPEN
    assert restored.retry_at() == pytest.approx(trio.current_time() + 20.0)
    await trio.sleep(20.0)
    assert restored.state is HALF_OPEN
    assert moves(seen) == [(OPEN, HALF_OPEN)]


async def test_restore_forced_and_half_open(autojump_clock: trio.testing.MockClock) -> None:
    """Forced states survive a restore; a restored half-open starts with no probes used."""
    breaker, seen = make()
    breaker.restore(OPEN, True, 0.0)
    await trio.sleep(1000.0)
    assert breaker.export() == (OPEN, True, 0.0)
    breaker.restore(HALF_OPEN, False, 0.0)
    assert [breaker.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert seen == []
    with pytest.raises(ValueError, match="half-open"):
        breaker.restore(HALF_OPEN, True, 0.0)


async def test_illegal_transition_raises(autojump_clock: trio.testing.MockClock) -> None:
    """A move missing from the transition table is refused instead of applied."""
    breaker, seen = make()
    with pytest.raises(AssertionError, match="probes_passed in closed"):
        breaker._fire(_breaker._Trigger.PROBES_PASSED, "impossible")
    assert breaker.state is CLOSED
    assert seen == []
