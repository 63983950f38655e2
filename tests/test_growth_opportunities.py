"""Opportunity rules and sending hours: every edge in the calendar's zone, every skip named."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import attrs
import pytest

from ringbearer.growth._events import VendorBooked
from ringbearer.growth._opportunities import (
    COUPLE_VAR,
    Candidate,
    OpportunitySettings,
    Rule,
    RuleSettings,
    SendingHours,
    Skip,
    parse_hours,
    parse_settings,
    referral_ask,
    referral_due,
    vendor_invite,
)
from ringbearer.growth._stages import Planning, StageSettings
from ringbearer.growth._templates import Engine, Part, Template

LONDON = zoneinfo.ZoneInfo("Europe/London")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")  # +05:30 all year
UTC = dt.UTC
HOURS = SendingHours()  # 09:00 to 18:00, Monday to Saturday
EVERY_DAY = SendingHours(days=frozenset(range(7)))
SETTINGS = OpportunitySettings()

VENDOR_ADDRESS = "Florist@Petals.example"
VENDOR_NAME = "Petal & Stem"
VENDOR_ID = "s_5f0c2a9e71d84b36"
COUPLE_ADDRESS = "ana.and.ben@mail.example"
WEDDING = dt.date(2027, 6, 12)  # a Saturday, in British Summer Time


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """A wall time given in UTC."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def local(
    zone: zoneinfo.ZoneInfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
) -> float:
    """A wall time given as a local time in ``zone``."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp()


def booking(couple: str = "u_ana") -> VendorBooked:
    return VendorBooked(
        couple=couple,
        vendor_email=VENDOR_ADDRESS,
        vendor_name=VENDOR_NAME,
        vendor_type="florist",
        at=utc(2026, 6, 1, 10),
    )


def invite(**overrides: object) -> Candidate | Skip:
    given: dict[str, object] = {
        "vendor_id": VENDOR_ID,
        "vendor_on_platform": False,
        "couple_known": True,
        "now": utc(2026, 6, 2, 10),  # Tuesday 11:00 BST
        "zone": LONDON,
    }
    given.update(overrides)
    settings = given.pop("settings", SETTINGS)
    event = given.pop("booking", booking())
    return vendor_invite(settings, event, **given)  # type: ignore[arg-type]


def ask(**overrides: object) -> Candidate | Skip:
    given: dict[str, object] = {
        "user": "u_ana",
        "address": COUPLE_ADDRESS,
        "wedding": WEDDING,
        "asked": False,
        "now": local(LONDON, 2027, 7, 1, 10),  # 19 days after, a Thursday
        "zone": LONDON,
    }
    given.update(overrides)
    settings = given.pop("settings", SETTINGS)
    return referral_ask(settings, **given)  # type: ignore[arg-type]


# --- sending hours ---


def test_inside_the_hours_now_is_the_answer() -> None:
    """On a Tuesday at 11:00 local time an email may go at once."""
    now = utc(2026, 6, 2, 10, 0, 5)
    assert HOURS.next_open(now, LONDON) == now


def test_exactly_at_the_start_is_open() -> None:
    """09:00:00 is inside the hours; one second before waits that one second."""
    assert HOURS.next_open(utc(2026, 6, 2, 8), LONDON) == utc(2026, 6, 2, 8)
    assert HOURS.next_open(utc(2026, 6, 2, 7, 59, 59), LONDON) == utc(2026, 6, 2, 8)


def test_exactly_at_the_end_is_closed() -> None:
    """17:59:59 is inside; 18:00:00 waits for 09:00 the next day (both BST, UTC+1)."""
    assert HOURS.next_open(utc(2026, 6, 2, 16, 59, 59), LONDON) == utc(2026, 6, 2, 16, 59, 59)
    assert HOURS.next_open(utc(2026, 6, 2, 17), LONDON) == utc(2026, 6, 3, 8)


def test_sunday_is_skipped_by_default() -> None:
    """Sunday noon waits for Monday 09:00; with Sunday allowed it goes at once."""
    sunday_noon = local(LONDON, 2026, 6, 7, 12)
    assert HOURS.next_open(sunday_noon, LONDON) == utc(2026, 6, 8, 8)
    assert EVERY_DAY.next_open(sunday_noon, LONDON) == sunday_noon


def test_saturday_evening_waits_for_monday() -> None:
    """Saturday after 18:00 skips the Sunday and opens Monday at 09:00."""
    assert HOURS.next_open(local(LONDON, 2026, 6, 6, 19), LONDON) == utc(2026, 6, 8, 8)


def test_only_day_past_closing_waits_a_week() -> None:
    """With Tuesday the only sending day, Tuesday evening waits for next Tuesday."""
    tuesdays = SendingHours(days=frozenset({1}))
    assert tuesdays.next_open(local(LONDON, 2026, 6, 2, 18), LONDON) == utc(2026, 6, 9, 8)


def test_spring_forward_in_london() -> None:
    """Clocks go forward on Sunday 29 March 2026: 09:00 that day is 08:00 UTC, 13 h after
    Saturday 19:00 GMT; with Sunday off, Monday 09:00 BST is 08:00 UTC."""
    saturday_evening = utc(2026, 3, 28, 19)  # 19:00 GMT
    assert EVERY_DAY.next_open(saturday_evening, LONDON) == utc(2026, 3, 29, 8)
    assert EVERY_DAY.next_open(saturday_evening, LONDON) - saturday_evening == 13 * 3600
    assert HOURS.next_open(saturday_evening, LONDON) == utc(2026, 3, 30, 8)


def test_fall_back_in_london() -> None:
    """Clocks go back on Sunday 25 October 2026: 09:00 that day is 09:00 UTC, 15 h after
    Saturday 19:00 BST; with Sunday off, Monday 09:00 GMT is 09:00 UTC."""
    saturday_evening = utc(2026, 10, 24, 18)  # 19:00 BST
    assert EVERY_DAY.next_open(saturday_evening, LONDON) == utc(2026, 10, 25, 9)
    assert EVERY_DAY.next_open(saturday_evening, LONDON) - saturday_evening == 15 * 3600
    assert HOURS.next_open(saturday_evening, LONDON) == utc(2026, 10, 26, 9)


def test_a_start_the_clocks_skip_opens_after_the_jump() -> None:
    """01:30 does not exist on 29 March 2026 in London: the hours open at 02:30 BST."""
    night = SendingHours(start=dt.time(1, 30), end=dt.time(5), days=frozenset(range(7)))
    assert night.next_open(utc(2026, 3, 29, 0), LONDON) == utc(2026, 3, 29, 1, 30)


def test_a_half_hour_offset() -> None:
    """Kolkata is UTC+05:30: 09:00 is 03:30 UTC, 18:00 is 12:30 UTC."""
    monday = (2026, 6, 1)
    assert HOURS.next_open(utc(*monday, 3), KOLKATA) == utc(*monday, 3, 30)
    assert HOURS.next_open(utc(*monday, 3, 30), KOLKATA) == utc(*monday, 3, 30)
    assert HOURS.next_open(utc(*monday, 12, 29, 59), KOLKATA) == utc(*monday, 12, 29, 59)
    assert HOURS.next_open(utc(*monday, 12, 30), KOLKATA) == utc(2026, 6, 2, 3, 30)


def test_the_local_date_decides_the_day() -> None:
    """Sunday 23:00 UTC is already Monday 04:30 in Kolkata: it waits until 09:00 Monday there."""
    assert HOURS.next_open(utc(2026, 6, 7, 23), KOLKATA) == utc(2026, 6, 8, 3, 30)


@pytest.mark.parametrize(
    ("start", "end", "days", "says"),
    [
        (dt.time(18), dt.time(9), frozenset({0}), "start must be before end"),
        (dt.time(9), dt.time(9), frozenset({0}), "start must be before end"),
        (dt.time(9), dt.time(18), frozenset(), "one or more of 0 (Monday) to 6"),
        (dt.time(9), dt.time(18), frozenset({7}), "one or more of 0 (Monday) to 6"),
    ],
)
def test_sending_hours_are_checked(
    start: dt.time, end: dt.time, days: frozenset[int], says: str
) -> None:
    """Hours that end before they start, or no sending day, are refused."""
    with pytest.raises(ValueError, match=re.escape(says)):
        SendingHours(start, end, days)


def test_parse_hours() -> None:
    """``HH:MM-HH:MM``, spaces around the dash allowed."""
    assert parse_hours("09:00-18:00") == (dt.time(9), dt.time(18))
    assert parse_hours(" 07:30 - 21:15 ") == (dt.time(7, 30), dt.time(21, 15))
    assert parse_hours("00:00-24:00") == (dt.time(0), dt.time.max)  # the whole day


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("9:00-18:00", "hours: expected HH:MM-HH:MM"),
        ("09:00", "hours: expected HH:MM-HH:MM"),
        ("", "hours: expected HH:MM-HH:MM"),
        ("24:00-24:00", "hours: each time is from 00:00 to 23:59"),
        ("09:00-24:01", "hours: each time is from 00:00 to 23:59"),
        ("09:60-18:00", "hours: each time is from 00:00 to 23:59"),
        ("18:00-09:00", "hours: the start must be before the end"),
        ("09:00-09:00", "hours: the start must be before the end"),
    ],
)
def test_parse_hours_errors_name_the_field(text: str, says: str) -> None:
    """Each bad text is refused with a message naming ``hours``."""
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_hours(text)


# --- settings ---


def test_empty_table_gives_the_defaults() -> None:
    """No keys: email target, 09:00-18:00 Monday to Saturday, both rules on, 14 to 56 days."""
    settings = parse_settings({})
    assert settings == OpportunitySettings()
    assert settings.target == "email"
    assert settings.hours == SendingHours(dt.time(9), dt.time(18), frozenset({0, 1, 2, 3, 4, 5}))
    assert settings.vendor_invite == RuleSettings(
        enabled=True, template="vendor_invite", category="invites"
    )
    assert settings.referral_ask == RuleSettings(
        enabled=True, template="referral_ask", category="marketing"
    )
    assert (settings.referral_after_days, settings.referral_until_days) == (14, 56)


def test_a_full_table() -> None:
    """Every key is read; a rule table may give only some of its keys."""
    settings = parse_settings(
        {
            "target": "resend-main",
            "sender": "Ringbearer <hello@ringbearer.example>",
            "hours": "10:00-16:30",
            "days": ["mon", "wed", "fri"],
            "vendor_invite": {"template": "vendor_invite_v2", "category": "transactional"},
            "referral_ask": {"enabled": False},
            "referral_after_days": 7,
            "referral_until_days": 30,
        }
    )
    assert settings == OpportunitySettings(
        target="resend-main",
        sender="Ringbearer <hello@ringbearer.example>",
        hours=SendingHours(dt.time(10), dt.time(16, 30), frozenset({0, 2, 4})),
        vendor_invite=RuleSettings(template="vendor_invite_v2", category="transactional"),
        referral_ask=RuleSettings(enabled=False, template="referral_ask", category="marketing"),
        referral_after_days=7,
        referral_until_days=30,
    )


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"hourz": "09:00-18:00"}, "growth.opportunities: unknown key(s) 'hourz'"),
        (
            {"vendor_invite": {"on": True}},
            "growth.opportunities.vendor_invite: unknown key(s) 'on'",
        ),
        ({"vendor_invite": "off"}, "growth.opportunities.vendor_invite: expected a table"),
        ({"referral_ask": {"enabled": "yes"}}, "growth.opportunities.referral_ask.enabled:"),
        ({"referral_ask": {"template": "Bad Name"}}, "growth.opportunities.referral_ask.template:"),
        ({"vendor_invite": {"category": ""}}, "growth.opportunities.vendor_invite.category:"),
        ({"target": 3}, "growth.opportunities.target:"),
        ({"sender": "not an address"}, "growth.opportunities.sender: expected an email address"),
        ({"hours": "9-5"}, "growth.opportunities.hours: expected HH:MM-HH:MM"),
        ({"hours": 9}, "growth.opportunities.hours: expected HH:MM-HH:MM"),
        ({"days": []}, "growth.opportunities.days: expected a list of days"),
        ({"days": ["mon", "sunday"]}, "growth.opportunities.days[1]: one of mon, tue"),
        ({"referral_after_days": True}, "growth.opportunities.referral_after_days: expected a"),
        ({"referral_until_days": -1}, "growth.opportunities.referral_until_days: expected a"),
        ({"referral_after_days": 60}, "growth.opportunities.referral_until_days: must not be"),
    ],
)
def test_settings_errors_name_the_key(table: dict[str, object], says: str) -> None:
    """Every refusal names the key at fault, from the section down."""
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_settings(table)


def test_settings_errors_do_not_echo_the_value() -> None:
    """A bad sender is not repeated in the error."""
    with pytest.raises(ValueError) as caught:
        parse_settings({"sender": "secret-person-name"})
    assert "secret-person-name" not in str(caught.value)


# --- vendor_invite ---


def test_vendor_invite_candidate() -> None:
    """Every field of the email: payload, key, invite id, vars, category, template, subjects."""
    found = invite()
    key = "growth:vendor_invite:u_ana:s_5f0c2a9e71d84b36"
    assert isinstance(found, Candidate)
    assert (found.rule, found.user, found.key, found.invite) == (
        Rule.VENDOR_INVITE,
        "u_ana",
        key,
        "vi_8ed629b231484e0fcfc4",  # sha256 of the key, its first 20 hex digits
    )
    message = found.message
    assert message.target == "email"
    assert message.payload == {"to": VENDOR_ADDRESS, "from": "hello@example.com"}
    assert message.key == key
    assert (message.category, message.template) == ("invites", "vendor_invite")
    assert message.vars == {
        "vendor_name": VENDOR_NAME,
        "vendor_type": "florist",
        "couple_id": "u_ana",
        "invite": "vi_8ed629b231484e0fcfc4",
    }
    assert message.subjects == [VENDOR_ADDRESS]
    assert message.not_before == utc(2026, 6, 2, 10)  # within the hours: at once
    assert message.wedding_date is None
    assert message.priority == "normal"


def test_vendor_invite_is_deterministic() -> None:
    """The same booking seen later, outside the hours, has the same key and invite id."""
    first = invite()
    later = invite(now=local(LONDON, 2026, 6, 7, 12))  # a Sunday
    assert isinstance(first, Candidate)
    assert isinstance(later, Candidate)
    assert (later.key, later.invite) == (first.key, first.invite)
    assert later.message.not_before == utc(2026, 6, 8, 8)  # Monday 09:00 BST
    other = invite(vendor_id="s_0000000000000000")
    assert isinstance(other, Candidate)
    assert other.key != first.key
    assert other.invite != first.invite


def test_vendor_invite_carries_a_known_wedding_date() -> None:
    """A wedding date, when known, is passed on for the stage rules."""
    found = invite(wedding=WEDDING)
    assert isinstance(found, Candidate)
    assert found.message.wedding_date == "2027-06-12"


def test_vendor_invite_uses_the_settings() -> None:
    """Target, sender, template and category come from the settings."""
    settings = OpportunitySettings(
        target="mailgun",
        sender="Team <team@ringbearer.example>",
        vendor_invite=RuleSettings(template="vi2", category="transactional"),
    )
    found = invite(settings=settings)
    assert isinstance(found, Candidate)
    assert found.message.target == "mailgun"
    assert found.message.payload["from"] == "Team <team@ringbearer.example>"
    assert (found.message.template, found.message.category) == ("vi2", "transactional")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"vendor_on_platform": True}, "vendor already on the platform"),
        ({"couple_known": False}, "couple unknown"),
        ({"vendor_on_platform": True, "couple_known": False}, "vendor already on the platform"),
        (
            {
                "settings": attrs.evolve(
                    SETTINGS,
                    vendor_invite=RuleSettings(
                        enabled=False, template="vendor_invite", category="invites"
                    ),
                ),
                "vendor_on_platform": True,
            },
            "rule disabled",
        ),
    ],
)
def test_vendor_invite_skips(overrides: dict[str, object], reason: str) -> None:
    """Each skip names its reason; a disabled rule says so before anything else."""
    assert invite(**overrides) == Skip(Rule.VENDOR_INVITE, "u_ana", reason)


def test_vendor_invite_key_is_key_safe() -> None:
    """A couple id with a space or a non-ASCII letter is hashed into the key."""
    found = invite(booking=booking(couple="Ana Müller"))
    assert isinstance(found, Candidate)
    assert found.key == (
        "growth:vendor_invite:sha256-b4f6ae1eebecc15186595c5555586a3e:s_5f0c2a9e71d84b36"
    )
    assert re.fullmatch(r"[!-~]{1,256}", found.key)
    assert found.message.vars is not None
    assert found.message.vars["couple_id"] == "Ana Müller"


def test_vendor_invite_refuses_an_address_as_vendor_id() -> None:
    """The key must never hold an address: an address passed as the id is refused, unechoed."""
    with pytest.raises(ValueError, match="vendor_id: expected a subject id") as caught:
        invite(vendor_id=VENDOR_ADDRESS)
    assert VENDOR_ADDRESS not in str(caught.value)


def test_vendor_invite_reprs_name_no_one() -> None:
    """Neither the vendor's address nor their name shows in a candidate's or a skip's repr."""
    shown = repr(invite()) + repr(invite(couple_known=False))
    for personal in (VENDOR_ADDRESS, VENDOR_NAME, VENDOR_ADDRESS.lower()):
        assert personal not in shown


# --- referral_ask ---


@pytest.mark.parametrize(
    ("when", "due"),
    [
        ((2027, 6, 25, 23, 59, 59), False),  # 13 days after
        ((2027, 6, 26, 0, 0, 0), True),  # 14 days after
        ((2027, 8, 7, 23, 59, 59), True),  # 56 days after
        ((2027, 8, 8, 0, 0, 0), False),  # 57 days after
        ((2027, 6, 12, 12, 0, 0), False),  # the wedding day
        ((2027, 5, 1, 12, 0, 0), False),  # before the wedding
    ],
)
def test_referral_window_edges(when: tuple[int, ...], due: bool) -> None:
    """Days after the wedding count local dates: due from day 14 through day 56."""
    now = local(LONDON, *when)
    assert referral_due(SETTINGS, wedding=WEDDING, now=now, zone=LONDON) is due
    found = ask(now=now)
    assert isinstance(found, Candidate) is due


def test_referral_window_reads_the_local_date_around_midnight() -> None:
    """23:30 UTC on the 25th is 00:30 BST on the 26th: day 14 in London, day 13 in UTC."""
    now = utc(2027, 6, 25, 23, 30)
    assert referral_due(SETTINGS, wedding=WEDDING, now=now, zone=LONDON)
    assert not referral_due(SETTINGS, wedding=WEDDING, now=now, zone=zoneinfo.ZoneInfo("UTC"))
    late = utc(2027, 8, 7, 23, 30)  # 00:30 BST on the 8th: day 57 in London, 56 in UTC
    assert not referral_due(SETTINGS, wedding=WEDDING, now=late, zone=LONDON)
    assert referral_due(SETTINGS, wedding=WEDDING, now=late, zone=zoneinfo.ZoneInfo("UTC"))


def test_referral_window_follows_the_settings() -> None:
    """A 7 to 10 day window: day 6 and 11 are out, 7 and 10 in."""
    settings = OpportunitySettings(referral_after_days=7, referral_until_days=10)
    for day, due in ((6, False), (7, True), (10, True), (11, False)):
        now = local(LONDON, 2027, 6, 12, 12) + day * 86400
        assert referral_due(settings, wedding=WEDDING, now=now, zone=LONDON) is due


def test_referral_ask_candidate() -> None:
    """The email to the couple: key once per user, no invite id, vars and wedding date."""
    now = local(LONDON, 2027, 6, 26, 7, 15)  # day 14, a Saturday, before the hours open
    found = ask(now=now)
    assert isinstance(found, Candidate)
    assert (found.rule, found.user, found.key, found.invite) == (
        Rule.REFERRAL_ASK,
        "u_ana",
        "growth:referral_ask:u_ana",
        None,
    )
    message = found.message
    assert message.payload == {"to": COUPLE_ADDRESS, "from": "hello@example.com"}
    assert message.key == "growth:referral_ask:u_ana"
    assert (message.category, message.template) == ("marketing", "referral_ask")
    assert message.vars == {"couple_id": "u_ana", "wedding_date": "2027-06-12"}
    assert message.subjects == [COUPLE_ADDRESS]
    assert message.wedding_date == "2027-06-12"
    assert message.not_before == utc(2027, 6, 26, 8)  # 09:00 BST


def test_referral_ask_key_is_the_same_whenever_asked() -> None:
    """Asked on day 14 or day 50, the key is one: the intake sends it once."""
    early = ask(now=local(LONDON, 2027, 6, 26, 10))
    late = ask(now=local(LONDON, 2027, 8, 1, 10))
    assert isinstance(early, Candidate)
    assert isinstance(late, Candidate)
    assert early.key == late.key


def test_referral_ask_skips() -> None:
    """Already asked, outside the window, or the rule off: a skip naming why."""
    off = attrs.evolve(
        SETTINGS, referral_ask=RuleSettings(enabled=False, template="r", category="marketing")
    )
    outside = local(LONDON, 2027, 8, 8, 10)
    assert ask(asked=True) == Skip(Rule.REFERRAL_ASK, "u_ana", "already asked")
    assert ask(now=outside) == Skip(
        Rule.REFERRAL_ASK, "u_ana", "outside 14 to 56 days after the wedding"
    )
    assert ask(settings=off, asked=True) == Skip(Rule.REFERRAL_ASK, "u_ana", "rule disabled")


def test_referral_ask_reprs_name_no_one() -> None:
    """The couple's address shows in no candidate's or skip's repr."""
    shown = repr(ask()) + repr(ask(asked=True)) + repr(ask(now=local(LONDON, 2027, 9, 1, 10)))
    assert COUPLE_ADDRESS not in shown


def test_referral_ask_refuses_a_non_address_unechoed() -> None:
    """An address without '@' is refused without repeating it."""
    with pytest.raises(ValueError, match="address: expected an email address") as caught:
        ask(address="u_ana_phone")
    assert "u_ana_phone" not in str(caught.value)


# --- with the template engine ---


def test_vars_render_with_the_wedding_helpers() -> None:
    """The vars name the couple ``couple_id``, so the engine's helpers (which read
    ``couple`` as a list of names) take the wedding date and render the email."""
    engine = Engine(planning=Planning(StageSettings(), "Europe/London"))
    template = Template(
        name="referral_ask",
        version=1,
        parts=(Part("subject", "{{ couple_id }}: {{ wedding.days_until }} days"),),
    )
    found = ask(now=local(LONDON, 2027, 6, 26, 10))
    assert isinstance(found, Candidate)
    assert COUPLE_VAR == "couple_id"
    assert found.message.vars is not None
    rendered = engine.render(template, found.message.vars, local(LONDON, 2027, 6, 26, 10))
    assert rendered.fields == (("subject", "u_ana: -14 days"),)
