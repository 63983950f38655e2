"""The token bucket, paced by trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

import ringbearer.resilience as resilience
from ringbearer.resilience import RateLimitSettings, TokenBucket, _ratelimit

TEN_A_SECOND = RateLimitSettings(per_second=10.0, burst=10)


def test_public_surface() -> None:
    """Every public name of the rate-limit module is re-exported by the package."""
    public = {
        n
        for n, obj in vars(_ratelimit).items()
        if getattr(obj, "__module__", "") == _ratelimit.__name__ and not n.startswith("_")
    }
    assert all(getattr(resilience, n) is getattr(_ratelimit, n) for n in public)
    assert public == {"RateLimitSettings", "TokenBucket"}


async def test_burst_then_steady_rate(autojump_clock: trio.testing.MockClock) -> None:
    """100 acquisitions at 10/s with a burst of 10 take 9 seconds: the burst is free."""
    bucket = TokenBucket(TEN_A_SECOND)
    start = trio.current_time()
    for _ in range(10):
        await bucket.acquire()
    assert trio.current_time() == start
    for _ in range(90):
        await bucket.acquire()
    assert trio.current_time() - start == pytest.approx(9.0)


async def test_concurrent_acquirers_share_the_rate(autojump_clock: trio.testing.MockClock) -> None:
    """Tasks acquiring at once are paced together, not each at the full rate."""
    bucket = TokenBucket(TEN_A_SECOND)
    finished: list[float] = []

    async def worker() -> None:
        await bucket.acquire(2)
        finished.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(15):
            nursery.start_soon(worker)
    assert len(finished) == 15
    assert max(finished) - start == pytest.approx(2.0)


async def test_try_take(autojump_clock: trio.testing.MockClock) -> None:
    """try_take empties the full bucket, fails, and succeeds again once a token has refilled."""
    bucket = TokenBucket(TEN_A_SECOND)
    assert bucket.available() == 10.0
    assert bucket.try_take(4)
    assert [bucket.try_take() for _ in range(7)] == [True] * 6 + [False]
    await trio.sleep(0.1)
    assert bucket.try_take()
    assert not bucket.try_take()


async def test_wait_time(autojump_clock: trio.testing.MockClock) -> None:
    """wait_time is zero while tokens are there and the refill time of the shortfall after."""
    bucket = TokenBucket(TEN_A_SECOND)
    assert bucket.wait_time(10) == 0.0
    assert bucket.try_take(10)
    assert bucket.wait_time() == pytest.approx(0.1)
    assert bucket.wait_time(5) == pytest.approx(0.5)
    await trio.sleep(0.3)
    assert bucket.wait_time(5) == pytest.approx(0.2)
    assert bucket.available() == pytest.approx(3.0)


async def test_refill_stops_at_burst(autojump_clock: trio.testing.MockClock) -> None:
    """An idle bucket fills up to its burst and no further."""
    bucket = TokenBucket(TEN_A_SECOND)
    assert bucket.try_take(10)
    await trio.sleep(3600.0)
    assert bucket.available() == 10.0


async def test_retune_keeps_the_fill(autojump_clock: trio.testing.MockClock) -> None:
    """Retuning keeps the tokens there (capped at the new burst) and refills at the new rate."""
    bucket = TokenBucket(TEN_A_SECOND)
    bucket.retune(RateLimitSettings(per_second=1.0, burst=4))
    assert bucket.available() == 4.0
    assert bucket.try_take(4)
    await trio.sleep(1.0)
    bucket.retune(RateLimitSettings(per_second=100.0, burst=50))
    assert bucket.available() == pytest.approx(1.0)
    await trio.sleep(0.1)
    assert bucket.available() == pytest.approx(11.0)


async def test_impossible_requests_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    """Asking for more tokens than the bucket holds, or none, is an error, not a hang."""
    bucket = TokenBucket(TEN_A_SECOND)
    for n in (0, 11):
        with pytest.raises(ValueError, match="1 to 10"):
            bucket.try_take(n)
        with pytest.raises(ValueError, match="1 to 10"):
            await bucket.acquire(n)


async def test_cancelled_acquire_takes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    """A waiter cancelled before its tokens arrive leaves them in the bucket."""
    bucket = TokenBucket(TEN_A_SECOND)
    assert bucket.try_take(10)
    with trio.move_on_after(0.5):
        await bucket.acquire(10)
    assert bucket.available() == pytest.approx(5.0)


def test_settings_are_validated() -> None:
    """A rate or burst that is not positive is refused when built."""
    with pytest.raises(ValueError):
        RateLimitSettings(per_second=0.0, burst=1)
    with pytest.raises(ValueError):
        RateLimitSettings(per_second=1.0, burst=0)
