"""A provider's rate limit split among the live nodes."""

from __future__ import annotations

from ringbearer._limit_share import shared_rate
from ringbearer.resilience import RateLimitSettings


def test_each_node_keeps_its_part_and_one_token_at_least() -> None:
    limit = RateLimitSettings(per_second=100, burst=10)
    assert shared_rate(limit, 1) == limit
    assert shared_rate(limit, 3) == RateLimitSettings(per_second=100 / 3, burst=3)
    assert shared_rate(limit, 0) == limit  # never divided by nothing
    assert shared_rate(RateLimitSettings(per_second=2, burst=1), 4).burst == 1


async def test_bulk_released_after_a_wedding_day_is_split_too() -> None:
    """Each node lets deferred bulk out at its part of release_per_second."""
    from types import SimpleNamespace
    from typing import cast

    from ringbearer._fleet import Fleet
    from ringbearer._limit_share import share_limits
    from ringbearer.resilience import TokenBucket

    releasing = SimpleNamespace(release=TokenBucket(RateLimitSettings(per_second=30, burst=30)))
    idle = SimpleNamespace(release=None)
    fleet = cast(Fleet, SimpleNamespace(actors={}, dispatchers={"email": releasing, "sms": idle}))
    share_limits(fleet, 3, release_per_second=30)
    assert releasing.release.settings == RateLimitSettings(per_second=10, burst=10)
    assert idle.release is None
