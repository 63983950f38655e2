"""The simulator's real rate limit: a token bucket a provider enforces, so that a test can
tell whether senders together kept under it (each request past it is a 429, counted)."""

from __future__ import annotations

import trio
import trio.testing

from ringbearer.simulator._faults import FaultKind, Faults
from ringbearer.simulator._slot import ProviderSlot


async def test_requests_past_the_limit_are_refused_until_the_bucket_fills(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slot = ProviderSlot("resend", 7, faults=Faults(limit_per_second=5, limit_burst=3))
    burst = [slot.draw() for _ in range(10)]
    assert burst.count(None) == 3 and burst.count(FaultKind.RATE_LIMIT) == 7
    await trio.sleep(1.0)  # five tokens more, up to the burst of three
    again = [slot.draw() for _ in range(5)]
    assert again == [None, None, None, FaultKind.RATE_LIMIT, FaultKind.RATE_LIMIT]
    slot.faults = Faults()  # no limit: all pass
    assert [slot.draw() for _ in range(20)] == [None] * 20
