"""A provider's limits, shared by the nodes that send to it: each of ``n`` live nodes keeps
``1/n`` of every rate limit (its rate and burst), so together they never send more than
the provider allows. Rebalanced at every beat as nodes come and go; a node alone (or on
the embedded store) keeps the whole limit.

Quota budgets likewise: each node keeps to ``1/n`` of each budget's limit, counting its
own sends (and, from its start, every node's sends read from the shared attempts: a
node restarted among others errs on the side of sending less).
"""

from __future__ import annotations

import math

import attrs

from ._fleet import Fleet
from .resilience import RateLimitSettings


def shared_rate(limit: RateLimitSettings, nodes: int) -> RateLimitSettings:
    """This node's part of ``limit`` among ``nodes`` live nodes (at least one token a burst)."""
    nodes = max(1, nodes)
    return RateLimitSettings(limit.per_second / nodes, max(1, math.floor(limit.burst / nodes)))


def share_limits(fleet: Fleet, nodes: int) -> None:
    """Give every running actor its part of its integration's rate limit and budgets."""
    for actor in fleet.actors.values():
        limit = actor.settings.rate_limit
        if actor.limiter is not None and limit is not None:
            wanted = shared_rate(limit, nodes)
            if actor.limiter.settings != wanted:
                actor.limiter.retune(wanted)
        for budget, quota in zip(actor.budgets.budgets, actor.settings.budgets, strict=False):
            part = attrs.evolve(quota, limit=max(1, quota.limit // max(1, nodes)))
            if budget.settings != part:
                budget.settings = part
