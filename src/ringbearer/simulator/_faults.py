"""The faults a simulated provider can be told to show, and the draw that picks one.

Every request draws one number from its provider's seeded random stream; the
``*_rate`` fields are consecutive bands of that number, so each rate is the
share of requests that get that fault, and they may add up to at most 1.
``outage`` and ``storm`` need no draw: they strike every request. With a
``count`` the faults last that many requests (for SMTP: messages, and
connections refused by an outage), then the provider is healthy again.
"""

from __future__ import annotations

import enum
import functools
import random

import attrs

_MAX_LATENCY_MS = 600_000.0


class FaultKind(enum.Enum):
    """What goes wrong with one request."""

    OUTAGE = "outage"  # the provider's 5xx/503 (SMTP: 421 at the greeting)
    RATE_LIMIT = "rate_limit"  # the provider's 429 with its own headers
    ERROR = "error"  # the provider's own transient 5xx
    PERMANENT = "permanent"  # the provider's own 4xx validation or auth error
    RESET = "reset"  # TCP reset, request not processed
    HANG = "hang"  # no answer until the client gives up, request not processed
    TRUNCATE = "truncate"  # processed; the answer is cut off mid-body
    MALFORMED = "malformed"  # processed; the answer is garbled


def _rate(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value}")


def _latency(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= _MAX_LATENCY_MS:
        raise ValueError(f"{attribute.name} must be between 0 and {_MAX_LATENCY_MS:g}")


def _seconds(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 86_400:
        raise ValueError(f"{attribute.name} must be between 0 and 86400 seconds, got {value}")


def _count(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1 (or null: until cleared)")


@attrs.frozen(kw_only=True)
class Faults:
    """One provider's faults; the defaults are a healthy provider."""

    error_rate: float = attrs.field(default=0.0, validator=_rate)
    permanent_rate: float = attrs.field(default=0.0, validator=_rate)
    rate_limit_rate: float = attrs.field(default=0.0, validator=_rate)
    reset_rate: float = attrs.field(default=0.0, validator=_rate)
    hang_rate: float = attrs.field(default=0.0, validator=_rate)
    truncate_rate: float = attrs.field(default=0.0, validator=_rate)
    malformed_rate: float = attrs.field(default=0.0, validator=_rate)
    latency_ms: float = attrs.field(default=0.0, validator=_latency)
    # A real rate limit, as a provider enforces one: a token bucket of ``limit_burst``
    # filling at ``limit_per_second``; a request finding it empty gets the 429
    # (0: no limit). Unlike ``rate_limit_rate`` it depends on how fast requests come.
    limit_per_second: float = attrs.field(default=0.0, validator=_latency)
    limit_burst: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    outage: bool = False
    storm: bool = False
    retry_after: int = attrs.field(default=1, validator=_seconds)
    count: int | None = attrs.field(default=None, validator=_count)  # None: until cleared

    def __attrs_post_init__(self) -> None:
        if sum(rate for rate, _ in self._bands) > 1.0 + 1e-9:
            raise ValueError("the *_rate fields add up to more than 1")

    def draw(self, rng: random.Random) -> FaultKind | None:
        """The fault for the next request, if any."""
        if self.outage:
            return FaultKind.OUTAGE
        if self.storm:
            return FaultKind.RATE_LIMIT
        # Always draw, so a request's fate depends only on how many came before.
        x = rng.random()
        for rate, kind in self._bands:
            if x < rate:
                return kind
            x -= rate
        return None

    @functools.cached_property
    def _bands(self) -> tuple[tuple[float, FaultKind], ...]:
        """The non-zero rates in draw order; cached, as every request walks them."""
        bands = (
            (self.reset_rate, FaultKind.RESET),
            (self.hang_rate, FaultKind.HANG),
            (self.truncate_rate, FaultKind.TRUNCATE),
            (self.rate_limit_rate, FaultKind.RATE_LIMIT),
            (self.error_rate, FaultKind.ERROR),
            (self.permanent_rate, FaultKind.PERMANENT),
            (self.malformed_rate, FaultKind.MALFORMED),
        )
        return tuple(band for band in bands if band[0] > 0)
