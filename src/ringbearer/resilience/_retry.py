"""When to try a failed delivery again: capped exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential bound) spreads
the retries of many messages that failed together, so a provider coming back
is not met by all of them at once. A wait the provider asked for
(``Retry-After``, a rate-limit reset) wins over the policy: it knows better.
"""

from __future__ import annotations

import random

import attrs
from attrs import validators as v


@attrs.frozen
class RetrySettings:
    """The shape of the backoff and when to give up."""

    initial_seconds: float = attrs.field(default=1.0, validator=v.gt(0.0))
    multiplier: float = attrs.field(default=2.0, validator=v.ge(1.0))
    max_seconds: float = attrs.field(default=300.0, validator=v.gt(0.0))
    max_attempts: int = attrs.field(default=8, validator=v.ge(1))
    max_age_seconds: float = attrs.field(default=86400.0, validator=v.gt(0.0))


@attrs.frozen
class RetryPolicy:
    """Turns a failed attempt into the delay before the next one, or None to give up."""

    settings: RetrySettings
    rng: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    def upper_bound(self, *, attempts: int) -> float:
        """The largest delay the jitter may draw after ``attempts`` attempts."""
        _check_attempts(attempts)
        s = self.settings
        try:
            bound = s.initial_seconds * s.multiplier ** (attempts - 1)
        except OverflowError:
            return s.max_seconds
        return min(s.max_seconds, bound)

    def next_delay(
        self, *, attempts: int, age: float, provider_wait: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when the message is exhausted.

        ``attempts`` counts the attempts made so far, the first included;
        ``age`` is the seconds since the message was created.
        """
        _check_attempts(attempts)
        if attempts >= self.settings.max_attempts:
            return None
        if provider_wait is not None:
            delay = max(0.0, provider_wait)
        else:
            delay = self.rng.uniform(0.0, self.upper_bound(attempts=attempts))
        if age + delay > self.settings.max_age_seconds:
            return None
        return delay

    def exhausted_reason(self, *, attempts: int, age: float) -> str:
        """Why :meth:`next_delay` gave up, in words for the dead-letter record."""
        if attempts >= self.settings.max_attempts:
            return f"gave up after {attempts} attempts"
        return f"gave up: older than {self.settings.max_age_seconds:g} s"


def _check_attempts(attempts: int) -> None:
    if attempts < 1:
        raise ValueError(f"attempts counts the attempts made, so at least 1, not {attempts}")
