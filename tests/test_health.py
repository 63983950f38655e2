"""Provider health over a rolling window, driven by trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

import ringbearer.resilience as resilience
from ringbearer.resilience import Health, HealthSettings, HealthSnapshot, HealthState, _health

HEALTHY, DEGRADED, DOWN = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.DOWN
SETTINGS = HealthSettings(
    window_seconds=300.0,
    minimum_calls=5,
    degraded_below=0.95,
    down_below=0.5,
    degraded_p95_seconds=2.0,
)
Change = tuple[HealthState, HealthState, str]


def make() -> tuple[Health, list[Change]]:
    changes: list[Change] = []
    health = Health(SETTINGS, on_change=lambda old, new, why: changes.append((old, new, why)))
    return health, changes


def feed(health: Health, *, ok: int = 0, failed: int = 0, latency: float = 0.1) -> None:
    for _ in range(ok):
        health.record(ok=True, latency=latency)
    for _ in range(failed):
        health.record(ok=False, latency=latency)


def test_public_surface() -> None:
    """Every public name of the health module is re-exported by the package."""
    public = {
        n
        for n, obj in vars(_health).items()
        if getattr(obj, "__module__", "") == _health.__name__ and not n.startswith("_")
    }
    assert all(getattr(resilience, n) is getattr(_health, n) for n in public)
    assert public == {"Health", "HealthSettings", "HealthSnapshot", "HealthState"}


def test_gauge_values() -> None:
    """The gauge orders the states from healthy (0) to down (2)."""
    assert [s.gauge for s in (HEALTHY, DEGRADED, DOWN)] == [0, 1, 2]


async def test_too_few_calls_is_healthy(autojump_clock: trio.testing.MockClock) -> None:
    """Below minimum_calls there is not enough evidence, so the provider counts as healthy."""
    health, changes = make()
    feed(health, failed=SETTINGS.minimum_calls - 1)
    assert health.state is HEALTHY
    assert changes == []


async def test_success_rate_thresholds(autojump_clock: trio.testing.MockClock) -> None:
    """A rate at degraded_below is healthy, under it degraded, under down_below down."""
    health, _ = make()
    feed(health, ok=19, failed=1)
    assert health.state is HEALTHY
    feed(health, failed=1)
    assert health.state is DEGRADED
    feed(health, failed=18)
    assert health.snapshot().success_rate == pytest.approx(19 / 39)
    assert health.state is DOWN


async def test_rate_at_down_threshold_is_degraded(autojump_clock: trio.testing.MockClock) -> None:
    """A success rate exactly at down_below is degraded, not down."""
    health, _ = make()
    feed(health, ok=5, failed=5)
    assert health.state is DEGRADED


async def test_slow_p95_degrades(autojump_clock: trio.testing.MockClock) -> None:
    """All calls succeeding is still degraded when the p95 latency exceeds the limit."""
    health, changes = make()
    feed(health, ok=19, latency=0.1)
    feed(health, ok=1, latency=3.0)
    assert health.state is HEALTHY  # one slow call in twenty is the p100, not the p95
    feed(health, ok=1, latency=3.0)
    assert health.state is DEGRADED
    assert changes == [(HEALTHY, DEGRADED, "p95 latency 3.00 s above 2.00 s")]


async def test_window_expiry(autojump_clock: trio.testing.MockClock) -> None:
    """Calls older than the window are forgotten, and the change that brings is reported."""
    health, changes = make()
    feed(health, failed=10)
    await trio.sleep(SETTINGS.window_seconds - 1.0)
    assert health.state is DOWN
    await trio.sleep(1.0)
    assert health.state is HEALTHY
    assert health.snapshot() == HealthSnapshot(HEALTHY, 0, 1.0, 0.0, 0.0, 0.0)
    assert [(old, new) for old, new, _ in changes] == [(HEALTHY, DOWN), (DOWN, HEALTHY)]


async def test_on_change_only_on_change(autojump_clock: trio.testing.MockClock) -> None:
    """on_change is called once per change of state, with a reason, not once per call."""
    health, changes = make()
    feed(health, failed=20)
    feed(health, ok=20)
    feed(health, ok=360)
    assert changes == [
        (HEALTHY, DOWN, "success rate 0.00 below 0.50"),
        (DOWN, DEGRADED, "success rate 0.50 below 0.95"),
        (DEGRADED, HEALTHY, "success rate 0.95, p95 latency 0.10 s"),
    ]


async def test_snapshot_percentiles(autojump_clock: trio.testing.MockClock) -> None:
    """The snapshot reports nearest-rank latency percentiles and the success rate."""
    health, _ = make()
    for ms in range(1, 101):
        health.record(ok=ms % 10 != 0, latency=ms / 100)
    snap = health.snapshot()
    assert (snap.calls, snap.success_rate) == (100, 0.9)
    assert (snap.p50, snap.p95, snap.p99) == (0.5, 0.95, 0.99)
    assert snap.state is DEGRADED


async def test_samples_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """However many calls arrive inside the window, only the newest 2048 are kept."""
    health, _ = make()
    feed(health, failed=3000)
    feed(health, ok=2048)
    snap = health.snapshot()
    assert (snap.calls, snap.state) == (2048, HEALTHY)


async def test_open_breaker_means_down(autojump_clock: trio.testing.MockClock) -> None:
    """state_with reports down while the breaker is open, and the own state otherwise."""
    health, changes = make()
    feed(health, ok=10)
    assert health.state_with(breaker_open=True) is DOWN
    assert health.state_with(breaker_open=False) is HEALTHY
    assert changes == []


def test_settings_are_validated() -> None:
    """A down threshold above the degraded one is refused when built."""
    with pytest.raises(ValueError, match="down_below"):
        HealthSettings(degraded_below=0.4, down_below=0.5)
