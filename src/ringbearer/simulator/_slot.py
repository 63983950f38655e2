"""One provider's place in the simulator: its faults, its stats, its random stream."""

from __future__ import annotations

import random

import attrs

from ..resilience import RateLimitSettings, TokenBucket
from ._faults import FaultKind, Faults
from ._stats import Stats


def _stream(seed: int, name: str) -> random.Random:
    # One stream per provider, so traffic to one never shifts another's faults.
    return random.Random(f"{seed}/{name}")


@attrs.define
class ProviderSlot:
    """The bookkeeping every provider shares, whatever protocol it speaks."""

    name: str
    seed: int
    faults: Faults = attrs.Factory(Faults)
    stats: Stats = attrs.Factory(Stats)
    rng: random.Random = attrs.field(init=False)
    _bucket: TokenBucket | None = None  # the rate limit's, made for the faults set

    def __attrs_post_init__(self) -> None:
        self.rng = _stream(self.seed, self.name)

    def draw(self) -> FaultKind | None:
        """The fault for the next request, if any; the request counts against ``count``."""
        fault = self.faults.draw(self.rng)
        if fault is None and not self._within_limit():
            fault = FaultKind.RATE_LIMIT
        self.spend()
        return fault

    def _within_limit(self) -> bool:
        """Whether the provider's rate limit lets one more request in now."""
        faults = self.faults
        if not faults.limit_per_second:
            self._bucket = None
            return True
        wanted = RateLimitSettings(faults.limit_per_second, faults.limit_burst)
        if self._bucket is None or self._bucket.settings != wanted:
            self._bucket = TokenBucket(wanted)
        return self._bucket.try_take()

    def spend(self) -> None:
        """One request met the faults: with a ``count``, the last one heals the provider."""
        count = self.faults.count
        if count is not None:
            self.faults = Faults() if count <= 1 else attrs.evolve(self.faults, count=count - 1)

    def reset(self) -> None:
        """Back to a healthy provider with empty stats and a fresh random stream."""
        self.faults = Faults()
        self.stats = Stats()
        self.rng = _stream(self.seed, self.name)
