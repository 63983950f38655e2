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
