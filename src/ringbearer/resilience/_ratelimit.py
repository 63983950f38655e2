"""A token bucket: a steady rate of calls to a provider, with room for a burst.

The bucket fills at ``per_second`` tokens a second up to ``burst`` and starts
full, so an idle provider can take ``burst`` calls at once and then one every
``1 / per_second`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs
import trio
from attrs import validators as v

# Refilling over a float clock can land a hair short of a whole token after
# sleeping exactly the computed wait; without this slack, a waiter under a
# virtual clock could be told to sleep for less time than the clock can
# express, and spin for ever.
_SLACK: Final = 1e-6


@attrs.frozen
class RateLimitSettings:
    """The steady rate (tokens a second) and the burst (bucket size)."""

    per_second: float = attrs.field(validator=v.gt(0.0))
    burst: int = attrs.field(validator=v.gt(0))


@attrs.define
class TokenBucket:
    """Paces calls to a provider; starts full."""

    settings: RateLimitSettings
    clock: Callable[[], float] = trio.current_time
    _tokens: float = attrs.field(init=False, default=0.0)
    # None until first use: the clock may only be readable inside trio.run.
    _stamp: float | None = attrs.field(init=False, default=None)

    def available(self) -> float:
        """Tokens in the bucket now."""
        self._refill()
        return self._tokens

    def try_take(self, n: int = 1) -> bool:
        """Take ``n`` tokens if they are there now."""
        self._check(n)
        self._refill()
        if self._tokens + _SLACK < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True

    def wait_time(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are available; 0.0 if they are now."""
        self._check(n)
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= _SLACK else missing / self.settings.per_second

    async def acquire(self, n: int = 1) -> None:
        """Sleep until ``n`` tokens can be taken, then take them."""
        # A checkpoint even when the tokens are there, as every trio primitive
        # does, so a caller looping on a full bucket still yields and can be
        # cancelled; a cancelled wait takes nothing.
        await trio.lowlevel.checkpoint()
        while True:
            if self.try_take(n):
                return
            await trio.sleep(self.wait_time(n))

    def retune(self, settings: RateLimitSettings) -> None:
        """Change rate and burst, keeping the tokens already there (up to the new burst)."""
        self._refill()
        self.settings = settings
        self._tokens = min(self._tokens, float(settings.burst))

    def _refill(self) -> None:
        now = self.clock()
        if self._stamp is None:
            self._tokens = float(self.settings.burst)
        else:
            gained = (now - self._stamp) * self.settings.per_second
            self._tokens = min(float(self.settings.burst), self._tokens + gained)
        self._stamp = now

    def _check(self, n: int) -> None:
        if not 1 <= n <= self.settings.burst:
            raise ValueError(f"can take 1 to {self.settings.burst} tokens at once, not {n}")
