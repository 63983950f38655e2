"""A provider's limits, shared by the nodes that send to it (and the release of bulk
deferred by a wedding day, a limit of ours): each of ``n`` live nodes keeps
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


def share_limits(fleet: Fleet, nodes: int, release_per_second: float | None = None) -> None:
    """Give every running actor its part of its integration's rate limit and budgets, and
    every dispatcher releasing bulk after a wedding day its part of ``release_per_second``."""
    if release_per_second is not None:
        release = RateLimitSettings(release_per_second, max(1, math.ceil(release_per_second)))
        for dispatcher in fleet.dispatchers.values():
            bucket = dispatcher.release
            if bucket is not None and bucket.settings != shared_rate(release, nodes):
                bucket.retune(shared_rate(release, nodes))
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
