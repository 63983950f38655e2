"""The wedding helpers a template reads under ``wedding``: from the vars ``couple`` and
``wedding_date`` and the wall time, on the calendar's time zone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from ._stages import Planning
from ._template_errors import BadVariable


def wedding_helpers(
    template: str, variables: Mapping[str, object], planning: Planning, now: float
) -> dict[str, object]:
    """The ``wedding`` namespace from the vars ``couple`` and ``wedding_date``, at ``now``."""
    helpers: dict[str, object] = {"timezone": planning.timezone}
    if "couple" in variables:
        names = _couple(template, variables["couple"])
        helpers["names"] = list(names)
        helpers["couple"] = _join(names)
    if "wedding_date" in variables:
        day, at = _wedding_day(template, variables["wedding_date"], planning)
        helpers["date"] = day.isoformat()
        if at is not None:
            helpers["at"] = at.isoformat()
        helpers["days_until"] = planning.days_until(day, now)
        helpers["stage"] = planning.stage(day, now).value
    return helpers


def _couple(template: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise BadVariable(template, "couple", "must be a list of one or more names")
    if not all(isinstance(n, str) and n.strip() for n in value):
        raise BadVariable(template, "couple", "each name must be non-empty text")
    return tuple(n.strip() for n in value)


def _join(names: tuple[str, ...]) -> str:
    """``Ana``, ``Ana & Ben``, ``Ana, Ben & Cleo``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} & {names[-1]}"


def _wedding_day(
    template: str, value: object, planning: Planning
) -> tuple[dt.date, dt.datetime | None]:
    """The wedding's local date (and local time, when one was given)."""
    reason = "must be a date YYYY-MM-DD or an ISO 8601 time with its UTC offset"
    if not isinstance(value, str):
        raise BadVariable(template, "wedding_date", reason)
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value), None
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadVariable(template, "wedding_date", reason) from None
    if moment.tzinfo is None:
        raise BadVariable(template, "wedding_date", "a time needs its UTC offset")
    local = moment.astimezone(planning.zone)
    return local.date(), local
