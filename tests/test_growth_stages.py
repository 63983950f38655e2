"""Planning stages and stage rules: each boundary on both sides, in the calendar's zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import attrs
import pytest

from ringbearer.growth._stages import (
    DEFAULT_RULES,
    Hold,
    Pass,
    Planning,
    Refuse,
    RuleAction,
    Stage,
    StageBoundaries,
    StageRule,
    StageSettings,
    months_before,
)

LONDON = zoneinfo.ZoneInfo("Europe/London")
WEDDING = dt.date(2027, 6, 12)  # a Saturday, in British Summer Time
PLAN = Planning(StageSettings(), "Europe/London")


def at(day: dt.date, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """The wall time of a local time in London."""
    return dt.datetime.combine(day, dt.time(hour, minute, second), LONDON).timestamp()


def last_second_before(day: dt.date) -> float:
    return at(day - dt.timedelta(days=1), 23, 59, 59)


# --- stages ---


@pytest.mark.parametrize(
    ("first_day", "before", "after"),
    [
        (dt.date(2026, 6, 12), Stage.ENGAGED, Stage.BOOKING),  # exactly 12 months before
        (dt.date(2026, 12, 12), Stage.BOOKING, Stage.PLANNING),  # 6 months (in GMT)
        (dt.date(2027, 5, 12), Stage.PLANNING, Stage.FINAL),  # 1 month
        (dt.date(2027, 6, 13), Stage.FINAL, Stage.MARRIED),  # the day after the wedding
    ],
)
def test_each_boundary_on_both_sides(first_day: dt.date, before: Stage, after: Stage) -> None:
    """A stage begins at local midnight of its first day: one second earlier is the stage before."""
    assert PLAN.stage(WEDDING, last_second_before(first_day)) is before
    assert PLAN.stage(WEDDING, at(first_day)) is after


def test_the_wedding_day_is_final_to_its_last_second() -> None:
    """On the wedding day itself the couple is in ``final``; ``married`` starts the day after."""
    assert PLAN.stage(WEDDING, at(WEDDING)) is Stage.FINAL
    assert PLAN.stage(WEDDING, at(WEDDING, 23, 59, 59)) is Stage.FINAL
    assert PLAN.stage(WEDDING, at(WEDDING + dt.timedelta(days=400))) is Stage.MARRIED


def test_far_ahead_is_engaged() -> None:
    """Two years out the couple is engaged."""
    assert PLAN.stage(WEDDING, at(dt.date(2025, 6, 12))) is Stage.ENGAGED


def test_stages_follow_local_midnight_not_utc() -> None:
    """At 00:30 BST (23:30 UTC the evening before) London is on the new day; UTC is not."""
    instant = dt.datetime(2026, 6, 11, 23, 30, tzinfo=dt.UTC).timestamp()
    assert PLAN.stage(WEDDING, instant) is Stage.BOOKING
    assert Planning(StageSettings(), "UTC").stage(WEDDING, instant) is Stage.ENGAGED


def test_starts_lists_each_stages_first_day() -> None:
    """``starts`` gives the first day of each stage after ``engaged``, in order."""
    assert PLAN.starts(WEDDING) == (
        (Stage.BOOKING, dt.date(2026, 6, 12)),
        (Stage.PLANNING, dt.date(2026, 12, 12)),
        (Stage.FINAL, dt.date(2027, 5, 12)),
        (Stage.MARRIED, dt.date(2027, 6, 13)),
    )


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2027, 3, 31), 1, dt.date(2027, 2, 28)),  # February has no 31st
        (dt.date(2028, 3, 31), 1, dt.date(2028, 2, 29)),  # a leap year
        (dt.date(2028, 2, 29), 12, dt.date(2027, 2, 28)),
        (dt.date(2027, 1, 15), 1, dt.date(2026, 12, 15)),  # across a year
        (dt.date(2027, 8, 31), 6, dt.date(2027, 2, 28)),
        (dt.date(2027, 6, 12), 0, dt.date(2027, 6, 12)),
    ],
)
def test_months_before_clamps_to_the_months_last_day(
    day: dt.date, months: int, expected: dt.date
) -> None:
    """Calendar-month arithmetic: the same day N months earlier, or that month's last day."""
    assert months_before(day, months) == expected


def test_a_clamped_boundary_is_crossed_on_the_clamped_day() -> None:
    """A wedding on 31 March enters ``final`` on 28 February, not in March."""
    wedding = dt.date(2027, 3, 31)
    assert PLAN.stage(wedding, last_second_before(dt.date(2027, 2, 28))) is Stage.PLANNING
    assert PLAN.stage(wedding, at(dt.date(2027, 2, 28))) is Stage.FINAL


def test_configured_boundaries_move_the_stages() -> None:
    """Boundaries come from settings: 9/3/0 months makes ``final`` the wedding day alone."""
    plan = Planning(StageSettings(StageBoundaries(booking=9, planning=3, final=0)), "Europe/London")
    assert plan.stage(WEDDING, last_second_before(dt.date(2026, 9, 12))) is Stage.ENGAGED
    assert plan.stage(WEDDING, at(dt.date(2026, 9, 12))) is Stage.BOOKING
    assert plan.stage(WEDDING, at(dt.date(2027, 3, 12))) is Stage.PLANNING
    assert plan.stage(WEDDING, last_second_before(WEDDING)) is Stage.PLANNING
    assert plan.stage(WEDDING, at(WEDDING)) is Stage.FINAL


@pytest.mark.parametrize(("booking", "planning", "final"), [(6, 6, 1), (12, 1, 6), (3, 2, 2)])
def test_boundaries_must_shrink_toward_the_wedding(booking: int, planning: int, final: int) -> None:
    """Boundaries out of order are a configuration error that says what is wrong."""
    with pytest.raises(ValueError, match="booking > planning > final"):
        StageBoundaries(booking=booking, planning=planning, final=final)


def test_days_until_counts_local_calendar_days() -> None:
    """Days until the wedding: 1 late the evening before, 0 on the day, -1 the day after."""
    assert PLAN.days_until(WEDDING, at(WEDDING - dt.timedelta(days=1), 23, 59)) == 1
    assert PLAN.days_until(WEDDING, at(WEDDING)) == 0
    assert PLAN.days_until(WEDDING, at(WEDDING + dt.timedelta(days=1))) == -1


def test_an_unknown_time_zone_is_refused() -> None:
    """A calendar needs an IANA zone."""
    with pytest.raises(ValueError, match="unknown time zone"):
        Planning(StageSettings(), "Mars/Olympus_Mons")


# --- the marketing rule ---


def test_default_rule_is_the_marketing_quiet_week() -> None:
    """By default one rule: hold marketing from day -7 through the wedding day."""
    expected = StageRule("marketing_quiet_week", "marketing", first_day=-7, last_day=0)
    rules = StageSettings().rules
    assert rules == (expected,)
    assert rules[0].action is RuleAction.HOLD


def test_marketing_passes_on_day_minus_8() -> None:
    """Eight days before the wedding marketing mail goes; the verdict names the rule it checked."""
    verdict = PLAN.verdict("marketing", WEDDING, at(WEDDING - dt.timedelta(days=8), 23, 59, 59))
    assert verdict == Pass(("marketing_quiet_week",))
    assert verdict.describe() == "passes: no stage rule holds it (checked marketing_quiet_week)"


@pytest.mark.parametrize(
    "now",
    [
        at(WEDDING - dt.timedelta(days=7)),  # the first second of day -7
        at(WEDDING - dt.timedelta(days=3), 12),
        at(WEDDING),  # the wedding day
        at(WEDDING, 23, 59, 59),  # its last second
    ],
)
def test_marketing_is_held_from_day_minus_7_through_the_wedding_day(now: float) -> None:
    """Day -7 to day 0: held until local midnight after the wedding, naming the rule."""
    verdict = PLAN.verdict("marketing", WEDDING, now)
    assert isinstance(verdict, Hold)
    assert verdict.rule.name == "marketing_quiet_week"
    assert verdict.until == at(WEDDING + dt.timedelta(days=1))
    assert verdict.describe() == (
        "held by stage rule 'marketing_quiet_week': no 'marketing' mail from 7 days before "
        "the wedding through the wedding day; such mail is held until the day after"
    )


def test_marketing_passes_on_day_plus_1() -> None:
    """From local midnight after the wedding, marketing mail goes again."""
    verdict = PLAN.verdict("marketing", WEDDING, at(WEDDING + dt.timedelta(days=1)))
    assert isinstance(verdict, Pass)


def test_the_window_follows_the_calendars_zone() -> None:
    """23:30 UTC on day -8 is already day -7 in London (BST): held there, not in UTC."""
    instant = dt.datetime(2027, 6, 4, 23, 30, tzinfo=dt.UTC).timestamp()
    assert isinstance(PLAN.verdict("marketing", WEDDING, instant), Hold)
    utc = Planning(StageSettings(), "UTC")
    assert isinstance(utc.verdict("marketing", WEDDING, instant), Pass)


def test_other_categories_pass_the_marketing_rule() -> None:
    """A transactional email on the wedding day is not the marketing rule's business."""
    assert isinstance(PLAN.verdict("transactional", WEDDING, at(WEDDING, 10)), Pass)


def test_with_no_rules_every_verdict_passes() -> None:
    """No rules configured: everything passes, and the verdict says so."""
    plan = Planning(StageSettings(rules=()), "Europe/London")
    verdict = plan.verdict("marketing", WEDDING, at(WEDDING))
    assert verdict == Pass(())
    assert verdict.describe() == "passes: no stage rule is configured"


# --- rules as data ---


def test_a_refusing_rule_refuses_and_beats_a_hold() -> None:
    """Where a refusing rule and a holding rule both apply, the message is refused, by name."""
    refuse = StageRule(
        "no_surveys_on_the_day", "*", first_day=0, last_day=0, action=RuleAction.REFUSE
    )
    plan = Planning(StageSettings(rules=(*DEFAULT_RULES, refuse)), "Europe/London")
    verdict = plan.verdict("marketing", WEDDING, at(WEDDING, 9))
    assert verdict == Refuse(refuse)
    assert verdict.describe() == (
        "refused by stage rule 'no_surveys_on_the_day': no mail of any category on the wedding "
        "day; such mail is refused"
    )
    assert isinstance(plan.verdict("marketing", WEDDING, at(WEDDING, 9) - 86_400), Hold)


def test_of_two_holds_the_longer_decides() -> None:
    """Two holds at once: the message waits for the one that ends later, so it goes once."""
    long = StageRule("honeymoon", "marketing", first_day=-2, last_day=14)
    plan = Planning(StageSettings(rules=(*DEFAULT_RULES, long)), "Europe/London")
    verdict = plan.verdict("marketing", WEDDING, at(WEDDING))
    assert verdict == Hold(long, at(WEDDING + dt.timedelta(days=15)))


def test_a_rule_for_every_category() -> None:
    """A rule for ``*`` holds every category."""
    rule = StageRule("quiet_day", "*", first_day=0, last_day=0)
    plan = Planning(StageSettings(rules=(rule,)), "Europe/London")
    assert isinstance(plan.verdict("reminders", WEDDING, at(WEDDING, 8)), Hold)
    assert "no mail of any category on the wedding day" in rule.describe()


def test_rule_descriptions_read_as_words() -> None:
    """Windows are told in days around the wedding, without a date that would name a wedding."""
    after = StageRule("thanks_later", "marketing", first_day=1, last_day=3)
    assert "from the day after the wedding through 3 days after the wedding" in after.describe()
    before = StageRule("eve", "marketing", first_day=-1, last_day=-1)
    assert "on the day before the wedding" in before.describe()


def test_a_window_must_not_end_before_it_starts() -> None:
    """``last_day`` before ``first_day`` is refused, naming the rule."""
    with pytest.raises(ValueError, match="rule 'backwards'"):
        StageRule("backwards", "marketing", first_day=0, last_day=-3)


def test_rule_names_are_identifiers() -> None:
    """A rule name is what operators grep for: lower-case words joined by underscores."""
    with pytest.raises(ValueError, match="must match"):
        StageRule("Quiet Week!", "marketing")


def test_settings_are_frozen_values() -> None:
    """Settings are frozen attrs values, as the configuration model wants them."""
    settings = StageSettings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.rules = ()  # type: ignore[misc]
