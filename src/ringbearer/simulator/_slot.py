"""One provider's place in the simulator: its faults, its stats, its random stream."""

from __future__ import annotations

import random

import attrs

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

    def __attrs_post_init__(self) -> None:
        self.rng = _stream(self.seed, self.name)

    def draw(self) -> FaultKind | None:
        """The fault for the next request, if any; the request counts against ``count``."""
        fault = self.faults.draw(self.rng)
        self.spend()
        return fault

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
