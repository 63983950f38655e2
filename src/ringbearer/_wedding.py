"""Wedding-day mode: when it is on, and what it changes.

Weddings happen on Saturdays and on dates that cannot move. The mode is on on
the configured weekdays and dates (and date ranges) in the configured time
zone, or by an operator's override with an end. While it is on:

* bulk work is deferred in the store (not dropped, not held in memory) and
  released at a controlled rate once the mode ends;
* critical work goes first and has lanes held back for it (quota budgets
  already keep a critical reserve);
* for critical work, breakers re-probe sooner, may spend a reserved number of
  probes while open (the bounded "wedding-day bypass"), and retries keep
  trying for longer;
* health and alert thresholds are stricter;
* pause, breaker commands and reload need ``--force`` (a change freeze).

:class:`Calendar` is pure: it answers "is it on at this wall time, and why".
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Sequence

import attrs
from attrs import validators as v

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _zone(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        example = "an IANA name like 'Europe/London'"
        raise ValueError(f"unknown time zone {value!r} ({example})") from None


def _weekdays(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: Sequence[str]) -> None:
    unknown = [d for d in value if d not in WEEKDAYS]
    if unknown:
        raise ValueError(f"unknown weekday(s) {', '.join(unknown)}; use {', '.join(WEEKDAYS)}")


def _dates(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: Sequence[str]) -> None:
    for text in value:
        parse_span(text)


def parse_span(text: str) -> tuple[dt.date, dt.date]:
    """``2027-06-12`` or ``2027-06-11..2027-06-13`` (inclusive) as first and last date."""
    first, sep, last = text.partition("..")
    try:
        start = dt.date.fromisoformat(first.strip())
        end = dt.date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or range (A..B)") from None
    if end < start:
        raise ValueError(f"{text!r} ends before it starts")
    return start, end


@attrs.frozen
class WeddingDaySettings:
    """``[wedding_day]``: the calendar and the policy."""

    timezone: str = attrs.field(default="UTC", validator=_zone)
    weekdays: tuple[str, ...] = attrs.field(default=("saturday",), validator=_weekdays)
    dates: tuple[str, ...] = attrs.field(default=(), validator=_dates)
    # Policy while on.
    defer_bulk: bool = True
    release_per_second: float = attrs.field(default=20.0, validator=v.gt(0.0))
    critical_lanes: int = attrs.field(default=2, validator=v.ge(0))
    breaker_open_seconds: float = attrs.field(default=10.0, validator=v.gt(0.0))
    bypass_probes: int = attrs.field(default=3, validator=v.ge(0))
    retry_max_attempts: int = attrs.field(default=20, validator=v.gt(0))
    retry_max_age_seconds: float = attrs.field(default=2 * 86400.0, validator=v.gt(0.0))
    health_degraded_below: float = attrs.field(default=0.99, validator=[v.ge(0.0), v.le(1.0)])
    health_down_below: float = attrs.field(default=0.8, validator=[v.ge(0.0), v.le(1.0)])
    freeze: bool = True  # pause, breaker commands and reload need --force
    # A readiness check (preflight) this long before each wedding day starts; 0: none.
    preflight_hours_before: float = attrs.field(default=12.0, validator=v.ge(0.0))


class Cause(enum.Enum):
    WEEKDAY = "weekday"
    DATE = "date"
    OPERATOR = "operator"
    NONE = "none"


@attrs.frozen
class Mode:
    """Whether the mode is on, and why (for status, events and the metric)."""

    on: bool
    cause: Cause
    detail: str  # "saturday", "2027-06-12", "until 2027-06-12T23:00+01:00"

    def describe(self) -> str:
        state = "on" if self.on else "off"
        return f"{state} ({self.detail})" if self.detail else state


@attrs.frozen
class Override:
    """An operator's choice: on or off, until a wall time (None: until set to auto)."""

    on: bool
    until: float | None = None


@attrs.frozen
class Calendar:
    settings: WeddingDaySettings
    _spans: tuple[tuple[dt.date, dt.date], ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_spans", tuple(parse_span(d) for d in self.settings.dates))

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.settings.timezone)

    def mode_at(self, wall: float, override: Override | None = None) -> Mode:
        """The mode at wall time ``wall`` (seconds since the epoch)."""
        if override is not None and (override.until is None or wall < override.until):
            until = "" if override.until is None else f" until {self._local(override.until)}"
            return Mode(override.on, Cause.OPERATOR, f"operator{until}")
        day = dt.datetime.fromtimestamp(wall, self.zone).date()
        for start, end in self._spans:
            if start <= day <= end:
                return Mode(True, Cause.DATE, day.isoformat())
        weekday = WEEKDAYS[day.weekday()]
        if weekday in self.settings.weekdays:
            return Mode(True, Cause.WEEKDAY, weekday)
        return Mode(False, Cause.NONE, "")

    def next_change(self, wall: float, override: Override | None = None) -> float:
        """The next wall time at which the mode may change: an override's end or midnight."""
        midnight = self.next_midnight(wall)
        if override is not None and override.until is not None and override.until > wall:
            return min(override.until, midnight)
        return midnight

    def next_midnight(self, wall: float) -> float:
        local = dt.datetime.fromtimestamp(wall, self.zone)
        tomorrow = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), self.zone)
        return tomorrow.timestamp()

    def next_day_on(self, wall: float, within_days: int = 14) -> float | None:
        """The start (local midnight) of the next day the calendar turns the mode on."""
        start = self.next_midnight(wall)
        for _ in range(within_days):
            if self.mode_at(start).on:
                return start
            start = self.next_midnight(start + 1)
        return None

    def _local(self, wall: float) -> str:
        return dt.datetime.fromtimestamp(wall, self.zone).isoformat(timespec="minutes")
