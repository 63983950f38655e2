"""Liquid's ``date`` filter, rewritten: English names whatever the host's locale, a time
shown in the calendar's zone (or one given), and no clock read (no ``now``), so that a
render is the same bytes wherever and whenever it runs."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable

from ._template_errors import FilterFault

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_DIRECTIVE = re.compile(r"%(-?)(.)")


def _to_datetime(value: object, zone: zoneinfo.ZoneInfo) -> dt.datetime | dt.date:
    """A date as given, or a time in ``zone``; no clock is read, so no ``now``."""
    if isinstance(value, str) and value.strip().lower() in ("now", "today"):
        raise FilterFault(
            "date: 'now' and 'today' are not allowed: a render reads no clock", token=None
        )
    if isinstance(value, bool):
        raise FilterFault("date expects a date, an ISO 8601 text or epoch seconds", token=None)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, zone)
    if isinstance(value, str):
        value = _parse_iso(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(zone) if value.tzinfo is not None else value
    if isinstance(value, dt.date):
        return value
    raise FilterFault("date expects a date, an ISO 8601 text or epoch seconds", token=None)


def _parse_iso(text: str) -> dt.date | dt.datetime:
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
    except ValueError:
        raise FilterFault("date expects an ISO 8601 date or time", token=None) from None


def _directive(moment: dt.datetime | dt.date, unpadded: bool, code: str) -> str:
    """One strftime directive, with English names whatever the host's locale."""
    clock = moment if isinstance(moment, dt.datetime) else None
    numbers: dict[str, int | None] = {
        "Y": moment.year,
        "m": moment.month,
        "d": moment.day,
        "e": moment.day,
        "j": moment.timetuple().tm_yday,
        "H": clock.hour if clock else 0,
        "I": (clock.hour % 12 or 12) if clock else 12,
        "M": clock.minute if clock else 0,
        "S": clock.second if clock else 0,
    }
    if code in numbers:
        width = 3 if code == "j" else (4 if code == "Y" else 2)
        number = numbers[code]
        if unpadded:
            return str(number)
        return f"{number:2d}" if code == "e" else f"{number:0{width}d}"
    return _named(moment, clock, code)


def _named(moment: dt.datetime | dt.date, clock: dt.datetime | None, code: str) -> str:
    match code:
        case "A" | "a":
            name = _WEEKDAYS[moment.weekday()]
            return name if code == "A" else name[:3]
        case "B" | "b":
            name = _MONTHS[moment.month - 1]
            return name if code == "B" else name[:3]
        case "y":
            return f"{moment.year % 100:02d}"
        case "p":
            return "PM" if clock is not None and clock.hour >= 12 else "AM"
        case "z":
            return clock.strftime("%z") if clock is not None else ""
        case "Z":
            return (clock.tzname() or "") if clock is not None else ""
        case "%":
            return "%"
    raise FilterFault(f"date: the directive %{code} is not supported", token=None)


def date_filter(zone: zoneinfo.ZoneInfo) -> Callable[..., str]:
    def date(value: object, fmt: object = "%Y-%m-%d", in_zone: object = None) -> str:
        """``{{ t | date: "%-d %B %Y" }}`` (optionally ``, "Zone/Name"``)."""
        moment = _to_datetime(value, _zone_arg(in_zone, zone))
        return _DIRECTIVE.sub(lambda m: _directive(moment, m[1] == "-", m[2]), str(fmt))

    return date


def _zone_arg(name: object, default: zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    if name is None:
        return default
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise FilterFault("date: unknown time zone", token=None) from None
