"""One grammar of durations and times for every flag of the CLI.

* A **duration**: seconds (``90``, ``2.5``) or amounts with units, run
  together: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``.
* A **time ahead** (``--deliver-by``, ``--until``): a duration from now, an
  ISO 8601 time (``2026-11-28T14:00`` local, ``2026-11-28T14:00Z``) or a Unix
  time in seconds. It must be in the future.
* A **time back** (``--since``): a duration back from now, an ISO 8601 time
  or a Unix time in seconds.
"""

from __future__ import annotations

import datetime
import math
import re

UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_AMOUNTS = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?\s*[smhd]\s*)+$")
DURATION_FORMS = "seconds (90) or a duration such as 90s, 15m, 2h, 1d, 1h30m"
AHEAD_FORMS = (
    "a duration from now (90s, 15m, 2h, 1d), an ISO 8601 time (2026-11-28T14:00, local time;"
    " 2026-11-28T14:00Z) or a Unix time in seconds"
)
BACK_FORMS = (
    "a duration back from now (90s, 15m, 2h, 1d), an ISO 8601 time (2026-11-28T14:00, local"
    " time; 2026-11-28T14:00Z) or a Unix time in seconds"
)


def duration(text: str) -> float:
    """A duration in seconds; ValueError naming the forms if ``text`` is none."""
    found = _duration_with_units(text)
    if found is None:
        found = _plain_number(text)
    if found is None or found < 0:
        raise ValueError(f"{text!r} is not a duration: give {DURATION_FORMS}")
    return found


def _duration_with_units(text: str) -> float | None:
    text = text.strip()
    if not _DURATION.match(text):
        return None
    return sum(float(n) * UNIT_SECONDS[u] for n, u in _AMOUNTS.findall(text))


def _plain_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def ahead(text: str, now: float) -> float:
    """A time ahead of ``now``: a duration from now, an ISO time or a Unix time."""
    relative = _duration_with_units(text)
    when = now + relative if relative is not None else _absolute(text, AHEAD_FORMS)
    if when <= now:
        shown = datetime.datetime.fromtimestamp(when).isoformat(timespec="seconds")
        raise ValueError(
            f"{text!r} ({shown}) is in the past: give a time ahead, such as 2h from now"
            + (" (write 30s for a duration in seconds)" if _plain_number(text) is not None else "")
        )
    return when


def back(text: str, now: float) -> float:
    """A time at or before now: a duration back from now, an ISO time or a Unix time."""
    relative = _duration_with_units(text)
    return now - relative if relative is not None else _absolute(text, BACK_FORMS)


def _absolute(text: str, forms: str) -> float:
    """A Unix time (seconds) or an ISO 8601 time (naive: local), checked to be representable."""
    number = _plain_number(text)
    if number is not None:
        _check_representable(text, number)
        return number
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give {forms}") from None
    return when.timestamp()


def _check_representable(text: str, seconds: float) -> None:
    try:
        datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        hint = " (milliseconds? give seconds)" if seconds > 1e11 else ""
        raise ValueError(f"{text!r} is not a representable Unix time{hint}") from None
