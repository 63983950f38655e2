"""Planning stages and stage rules: where a couple is on the way to their wedding, and
what mail may reach them there.

A couple's **planning stage** follows from the wedding day and the wall time,
both read in the calendar's time zone (``[wedding_day] timezone``), so a stage
changes at local midnight, never at a UTC one. Each stage begins on the day
exactly N calendar months before the wedding day (:class:`StageBoundaries`;
a day that the earlier month lacks is clamped, so one month before 31 March is
28 or 29 February)::

    engaged   before the day 12 months before the wedding day
    booking   from the day 12 months before
    planning  from the day 6 months before
    final     from the day 1 month before, through the wedding day
    married   from the day after the wedding day

**Stage rules** are data (:class:`StageRule`): a name, the category of mail it
holds, a window of days counted from the wedding day (both ends included) and
what it does there. :meth:`Planning.verdict` answers, for one message, pass,
hold until a wall time, or refuse, and every answer that stops a message names
its rule in words an operator can read.

The default rule holds ``marketing`` mail from 7 days before a wedding through
the wedding day, until local midnight after it. Holding, not refusing: the
producer's message was accepted and its content is not wrong, only its timing;
a refusal would lose mail the producer cannot easily re-time, while a hold in
the store costs nothing and goes out (within the sending hours the scheduler
applies) once the couple is back from the day that matters. A rule that should
drop mail instead says ``action = "refuse"``.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import zoneinfo

import attrs
from attrs import validators as v

EVERY_CATEGORY = "*"  # a rule for every category, as suppression scopes say
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Stage(enum.Enum):
    """A couple's planning stage, in the order they pass through them."""

    ENGAGED = "engaged"
    BOOKING = "booking"
    PLANNING = "planning"
    FINAL = "final"
    MARRIED = "married"


def _decreasing(instance: StageBoundaries, _: attrs.Attribute[int], __: int) -> None:
    if not instance.booking > instance.planning > instance.final:
        raise ValueError(
            "stage boundaries must shrink toward the wedding: booking > planning > final "
            f"(months), not {instance.booking}, {instance.planning}, {instance.final}"
        )


@attrs.frozen
class StageBoundaries:
    """How many calendar months before the wedding day each stage begins."""

    booking: int = attrs.field(default=12, validator=v.ge(0))
    planning: int = attrs.field(default=6, validator=v.ge(0))
    final: int = attrs.field(default=1, validator=[v.ge(0), _decreasing])


class RuleAction(enum.Enum):
    """What a stage rule does to a message inside its window."""

    HOLD = "hold"  # kept in the store until the day after the window, then sent
    REFUSE = "refuse"  # not sent at all


def _window(instance: StageRule, _: attrs.Attribute[int], last: int) -> None:
    if last < instance.first_day:
        raise ValueError(f"rule {instance.name!r}: last_day {last} is before first_day")


@attrs.frozen
class StageRule:
    """No mail of ``category`` from ``first_day`` to ``last_day`` (days from the wedding day)."""

    name: str = attrs.field(validator=v.matches_re(_NAME))
    category: str = attrs.field(validator=v.min_len(1))
    first_day: int = -7  # 7 days before the wedding day
    last_day: int = attrs.field(default=0, validator=_window)  # the wedding day itself
    action: RuleAction = RuleAction.HOLD

    def covers(self, category: str, day: int) -> bool:
        """Does this rule stop mail of ``category`` on ``day`` (days from the wedding)?"""
        in_scope = self.category in (EVERY_CATEGORY, category)
        return in_scope and self.first_day <= day <= self.last_day

    def describe(self) -> str:
        """The rule in an operator's words; no date, so it names no one's wedding."""
        what = (
            "mail of any category" if self.category == EVERY_CATEGORY else f"{self.category!r} mail"
        )
        first, last = _day_words(self.first_day), _day_words(self.last_day)
        span = f"on {first}" if first == last else f"from {first} through {last}"
        if self.action is RuleAction.REFUSE:
            return f"no {what} {span}; such mail is refused"
        return f"no {what} {span}; such mail is held until the day after"


def _day_words(day: int) -> str:
    """A day counted from the wedding day, in words: -7 → '7 days before the wedding'."""
    if day == 0:
        return "the wedding day"
    side = "before" if day < 0 else "after"
    count = abs(day)
    return f"the day {side} the wedding" if count == 1 else f"{count} days {side} the wedding"


DEFAULT_RULES = (
    StageRule(name="marketing_quiet_week", category="marketing", first_day=-7, last_day=0),
)


@attrs.frozen
class StageSettings:
    """``[growth.stages]``: the stage boundaries and the stage rules."""

    boundaries: StageBoundaries = attrs.Factory(StageBoundaries)
    rules: tuple[StageRule, ...] = DEFAULT_RULES


@attrs.frozen
class Pass:
    """No stage rule stops the message; ``checked`` names the rules that were asked."""

    checked: tuple[str, ...] = ()

    def describe(self) -> str:
        if not self.checked:
            return "passes: no stage rule is configured"
        return f"passes: no stage rule holds it (checked {', '.join(self.checked)})"


@attrs.frozen
class Hold:
    """Held by ``rule`` until wall time ``until`` (local midnight after its window)."""

    rule: StageRule
    until: float

    def describe(self) -> str:
        return f"held by stage rule {self.rule.name!r}: {self.rule.describe()}"


@attrs.frozen
class Refuse:
    """Refused by ``rule``."""

    rule: StageRule

    def describe(self) -> str:
        return f"refused by stage rule {self.rule.name!r}: {self.rule.describe()}"


Verdict = Pass | Hold | Refuse


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` calendar months earlier, clamped to the month's last day."""
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, _days_in_month(year, month + 1)))


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


@attrs.frozen
class Planning:
    """Stages and stage rules on one calendar (its IANA time zone)."""

    settings: StageSettings
    timezone: str = "UTC"
    _zone: zoneinfo.ZoneInfo = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        try:
            zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        object.__setattr__(self, "_zone", zone)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

    def today(self, now: float) -> dt.date:
        """The calendar's date at wall time ``now`` (seconds since the epoch)."""
        return dt.datetime.fromtimestamp(now, self._zone).date()

    def days_until(self, wedding: dt.date, now: float) -> int:
        """Calendar days from today to the wedding day: 0 on it, negative after it."""
        return (wedding - self.today(now)).days

    def starts(self, wedding: dt.date) -> tuple[tuple[Stage, dt.date], ...]:
        """The first day of each stage for a wedding on ``wedding``, in order."""
        b = self.settings.boundaries
        return (
            (Stage.BOOKING, months_before(wedding, b.booking)),
            (Stage.PLANNING, months_before(wedding, b.planning)),
            (Stage.FINAL, months_before(wedding, b.final)),
            (Stage.MARRIED, wedding + dt.timedelta(days=1)),
        )

    def stage(self, wedding: dt.date, now: float) -> Stage:
        """The planning stage at wall time ``now`` of a couple marrying on ``wedding``."""
        today = self.today(now)
        current = Stage.ENGAGED
        for stage, first in self.starts(wedding):
            if today >= first:
                current = stage
        return current

    def midnight(self, day: dt.date) -> float:
        """The wall time at which ``day`` begins in the calendar's zone."""
        return dt.datetime.combine(day, dt.time(), self._zone).timestamp()

    def verdict(self, category: str, wedding: dt.date, now: float) -> Verdict:
        """Pass, hold or refuse mail of ``category`` to a couple marrying on ``wedding``."""
        day = -self.days_until(wedding, now)
        rules = self.settings.rules
        found = [r for r in rules if r.covers(category, day)]
        refusing = [r for r in found if r.action is RuleAction.REFUSE]
        if refusing:
            return Refuse(min(refusing, key=lambda r: r.name))
        if found:
            # Several holds: the one that holds longest decides, so the message goes once.
            rule = max(found, key=lambda r: (r.last_day, r.name))
            return Hold(rule, self.midnight(wedding + dt.timedelta(days=rule.last_day + 1)))
        return Pass(tuple(r.name for r in rules))
