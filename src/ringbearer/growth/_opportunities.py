"""Growth opportunities: two written rules that turn growth events into emails, and the
sending hours those emails wait for.

    vendor_invite  a couple booked a vendor who is not on the platform: invite the
                   vendor, on that couple's behalf (category ``invites``)
    referral_ask   from 2 to 8 weeks after their wedding day, ask a couple, once
                   ever, to recommend the platform (category ``marketing``)

Each rule answers with a :class:`Candidate`, an email ready for the daemon's
normal intake (which still applies suppression, consent, frequency caps and
stage rules, and drops a repeat by its idempotency key), or a :class:`Skip`
saying why not in words that name no one. The key is deterministic, so the
same opportunity seen twice is one email.

Nothing here reads a clock, a store or the network: the wall time ``now`` and
the calendar's zone (``[wedding_day] timezone``) are given, and the same inputs
always give the same answer. Sending hours are local wall times in that zone:
an email decided at night waits (``not_before``) for the next opening. The
opening on a date is its local ``start``, found through zoneinfo so a DST
change moves it with the clocks; a ``start`` the clocks skip (01:30 on a
spring-forward night in London) opens as the clocks read it after the jump
(02:30), and one they repeat opens at its first occurrence.

The templates' vars name the couple ``couple_id`` (:data:`COUPLE_VAR`): the
template engine reads ``couple`` as a list of the couple's names for its
wedding helpers, and an opaque user id there would fail every render.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from attrs import validators as v

from ..control import MessageIn
from ._events import VendorBooked

SECTION = "growth.opportunities"
COUPLE_VAR = "couple_id"  # not "couple": the wedding helpers take that as the couple's names
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index: date.weekday()
MAX_DAYS = 3660  # referral window bounds, days after the wedding: ten years is plenty

_HOURS = re.compile(r"([0-9]{2}):([0-9]{2})\s*-\s*([0-9]{2}):([0-9]{2})")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # targets and categories, as the config has them
_TEMPLATE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # as the template book has them
_SUBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a keyed hash such as s_0123abcd…
_KEY_SAFE = re.compile(r"[!-~]{1,128}")  # what an idempotency key may carry as it is


class Rule(enum.StrEnum):
    """The opportunity rules."""

    VENDOR_INVITE = "vendor_invite"
    REFERRAL_ASK = "referral_ask"


# --- sending hours --------------------------------------------------------------------


def _after_start(instance: SendingHours, _: attrs.Attribute[dt.time], end: dt.time) -> None:
    if not instance.start < end:
        raise ValueError("sending hours: start must be before end (hours do not cross midnight)")


def _weekdays(_: object, __: attrs.Attribute[frozenset[int]], days: frozenset[int]) -> None:
    if not days or not days <= frozenset(range(7)):
        raise ValueError("sending days: one or more of 0 (Monday) to 6 (Sunday)")


@attrs.frozen
class SendingHours:
    """Local wall times, in the calendar's zone, within which emails go out."""

    start: dt.time = dt.time(9)
    end: dt.time = attrs.field(default=dt.time(18), validator=_after_start)  # not included
    days: frozenset[int] = attrs.field(default=frozenset(range(6)), validator=_weekdays)

    def bounds(self, day: dt.date, zone: ZoneInfo) -> tuple[float, float]:
        """When the hours open and close on local date ``day`` (wall times)."""
        opens = dt.datetime.combine(day, self.start, zone).timestamp()
        return opens, dt.datetime.combine(day, self.end, zone).timestamp()

    def next_open(self, now: float, zone: ZoneInfo) -> float:
        """``now`` if within the hours on a sending day, else when they next open."""
        today = dt.datetime.fromtimestamp(now, zone).date()
        # A week ahead reaches every weekday again, today's included.
        for ahead in range(8):
            day = today + dt.timedelta(days=ahead)
            if day.weekday() in self.days:
                opens, closes = self.bounds(day, zone)
                if now < closes:
                    return max(now, opens)
        raise AssertionError("unreachable: the sending days are never empty")


def parse_hours(text: str) -> tuple[dt.time, dt.time]:
    """``"09:00-18:00"``: the start and end of the sending hours; ValueError naming ``hours``.
    An end of ``24:00`` is the end of the day (``00:00-24:00``: at any hour)."""
    found = _HOURS.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError("hours: expected HH:MM-HH:MM, such as 09:00-18:00")
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    try:
        start = dt.time(h1, m1)
        end = dt.time.max if (h2, m2) == (24, 0) else dt.time(h2, m2)
    except ValueError:
        raise ValueError("hours: each time is from 00:00 to 23:59 (an end may be 24:00)") from None
    if not start < end:
        raise ValueError("hours: the start must be before the end (hours do not cross midnight)")
    return start, end


# --- settings -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RuleSettings:
    """One rule: whether it runs, the stored template it sends and the mail's category."""

    enabled: bool = True
    template: str = attrs.field(validator=v.matches_re(_TEMPLATE))
    category: str = attrs.field(validator=v.matches_re(_NAME))


def _not_before_first(
    instance: OpportunitySettings, _: attrs.Attribute[int], until_days: int
) -> None:
    if until_days < instance.referral_after_days:
        raise ValueError("referral_until_days must not be before referral_after_days")


@attrs.frozen
class OpportunitySettings:
    """``[growth.opportunities]``: where the emails go, when, and each rule's settings."""

    target: str = attrs.field(default="email", validator=v.matches_re(_NAME))
    sender: str = "hello@example.com"  # the payload's "from"
    hours: SendingHours = SendingHours()
    vendor_invite: RuleSettings = RuleSettings(template="vendor_invite", category="invites")
    referral_ask: RuleSettings = RuleSettings(template="referral_ask", category="marketing")
    referral_after_days: int = attrs.field(default=14, validator=[v.ge(0), v.le(MAX_DAYS)])
    referral_until_days: int = attrs.field(
        default=56, validator=[v.ge(0), v.le(MAX_DAYS), _not_before_first]
    )


_KEYS = (
    "target",
    "sender",
    "hours",
    "days",
    "vendor_invite",
    "referral_ask",
    "referral_after_days",
    "referral_until_days",
)
_RULE_KEYS = ("enabled", "template", "category")


def parse_settings(obj: Mapping[str, Any]) -> OpportunitySettings:
    """``[growth.opportunities]`` from its TOML table; ValueError naming the key at fault."""
    _table(SECTION, obj, _KEYS)
    default = OpportunitySettings()
    after = _count(obj, "referral_after_days", default.referral_after_days)
    until = _count(obj, "referral_until_days", default.referral_until_days)
    if until < after:
        raise ValueError(f"{SECTION}.referral_until_days: must not be before referral_after_days")
    return OpportunitySettings(
        target=_pattern(f"{SECTION}.target", obj.get("target", default.target), _NAME),
        sender=_sender(f"{SECTION}.sender", obj.get("sender", default.sender)),
        hours=_sending_hours(obj, default.hours),
        vendor_invite=_rule(Rule.VENDOR_INVITE, obj, default.vendor_invite),
        referral_ask=_rule(Rule.REFERRAL_ASK, obj, default.referral_ask),
        referral_after_days=after,
        referral_until_days=until,
    )


def _table(where: str, obj: object, known: tuple[str, ...]) -> None:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a table")
    unknown = sorted(str(key)[:40] for key in obj if key not in known)
    if unknown:
        shown = ", ".join(map(repr, unknown[:5]))
        raise ValueError(f"{where}: unknown key(s) {shown}; known: {', '.join(known)}")


def _pattern(where: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{where}: expected a name of a-z, 0-9, '-' and '_'")
    return value


def _sender(where: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > 320:
        raise ValueError(f"{where}: expected an email address")
    _, address = parseaddr(value)
    if "@" not in address or "\n" in value or "\r" in value:
        raise ValueError(f"{where}: expected an email address, or Name <address>")
    return value.strip()


def _count(obj: Mapping[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DAYS:
        raise ValueError(f"{SECTION}.{key}: expected a whole number of days, 0 to {MAX_DAYS}")
    return value


def _sending_hours(obj: Mapping[str, Any], default: SendingHours) -> SendingHours:
    start, end = default.start, default.end
    if "hours" in obj:
        try:
            start, end = parse_hours(obj["hours"])
        except ValueError as exc:
            raise ValueError(f"{SECTION}.{exc}") from None
    days = _weekday_set(f"{SECTION}.days", obj["days"]) if "days" in obj else default.days
    return SendingHours(start, end, days)


def _weekday_set(where: str, value: object) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'{where}: expected a list of days such as ["mon", "tue"]')
    for index, name in enumerate(value):
        if name not in WEEKDAYS:
            raise ValueError(f"{where}[{index}]: one of {', '.join(WEEKDAYS)}")
    return frozenset(WEEKDAYS.index(name) for name in value)


def _rule(rule: Rule, obj: Mapping[str, Any], default: RuleSettings) -> RuleSettings:
    where = f"{SECTION}.{rule}"
    given = obj.get(rule.value, {})
    _table(where, given, _RULE_KEYS)
    enabled = given.get("enabled", default.enabled)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}.enabled: expected true or false")
    template = given.get("template", default.template)
    return RuleSettings(
        enabled=enabled,
        template=_pattern(f"{where}.template", template, _TEMPLATE),
        category=_pattern(f"{where}.category", given.get("category", default.category), _NAME),
    )


# --- decisions ------------------------------------------------------------------------


@attrs.frozen
class Candidate:
    """An email a rule wants sent; ``message`` goes to the daemon's intake as it is."""

    rule: Rule
    user: str  # the couple the decision is about
    key: str  # the idempotency key, also ``message.key``
    invite: str | None  # vendor_invite: the invite id the email carries
    message: MessageIn = attrs.field(repr=False)  # names the recipient: kept out of reprs


@attrs.frozen
class Skip:
    """A rule decided against an email; ``reason`` names no one."""

    rule: Rule
    user: str
    reason: str


def vendor_invite(
    settings: OpportunitySettings,
    booking: VendorBooked,
    *,
    vendor_id: str,
    vendor_on_platform: bool,
    couple_known: bool,
    now: float,
    zone: ZoneInfo,
    wedding: dt.date | None = None,
) -> Candidate | Skip:
    """Invite a booked vendor who is not on the platform, on the booking couple's behalf.

    ``vendor_id`` is the vendor's subject id (a keyed hash), which the key holds
    in place of the address. A booking by a couple who has not signed up is
    skipped, not kept for later: the invite speaks for the couple, and nothing
    retries it when they sign up (a later booking of the same vendor is a fresh
    chance, under the same key). ``wedding``, when known, lets the stage rules
    judge the email.
    """
    if not _SUBJECT_ID.fullmatch(vendor_id):
        raise ValueError("vendor_id: expected a subject id (a keyed hash), not an address")
    reason = _vendor_skip(settings.vendor_invite, vendor_on_platform, couple_known)
    if reason is not None:
        return Skip(Rule.VENDOR_INVITE, booking.couple, reason)
    key = f"growth:{Rule.VENDOR_INVITE}:{_key_part(booking.couple)}:{vendor_id}"
    invite = "vi_" + hashlib.sha256(key.encode()).hexdigest()[:20]
    variables = {
        "vendor_name": booking.vendor_name,
        "vendor_type": booking.vendor_type,
        COUPLE_VAR: booking.couple,
        "invite": invite,
    }
    rule = settings.vendor_invite
    message = _message(settings, rule, booking.vendor_email, key, variables, now, zone, wedding)
    return Candidate(Rule.VENDOR_INVITE, booking.couple, key, invite, message)


def _vendor_skip(rule: RuleSettings, on_platform: bool, couple_known: bool) -> str | None:
    if not rule.enabled:
        return "rule disabled"
    if on_platform:
        return "vendor already on the platform"
    if not couple_known:
        return "couple unknown"
    return None


def referral_due(
    settings: OpportunitySettings, *, wedding: dt.date, now: float, zone: ZoneInfo
) -> bool:
    """Is ``now`` within the referral window, counted in local dates after the wedding day?"""
    days_after = (dt.datetime.fromtimestamp(now, zone).date() - wedding).days
    return settings.referral_after_days <= days_after <= settings.referral_until_days


def referral_ask(
    settings: OpportunitySettings,
    *,
    user: str,
    address: str,
    wedding: dt.date,
    asked: bool,
    now: float,
    zone: ZoneInfo,
) -> Candidate | Skip:
    """Ask a married couple, once ever, to recommend the platform; ``address`` is theirs."""
    if "@" not in address:
        raise ValueError("address: expected an email address")
    reason = _referral_skip(settings, wedding=wedding, asked=asked, now=now, zone=zone)
    if reason is not None:
        return Skip(Rule.REFERRAL_ASK, user, reason)
    key = f"growth:{Rule.REFERRAL_ASK}:{_key_part(user)}"
    variables = {COUPLE_VAR: user, "wedding_date": wedding.isoformat()}
    rule = settings.referral_ask
    message = _message(settings, rule, address, key, variables, now, zone, wedding)
    return Candidate(Rule.REFERRAL_ASK, user, key, None, message)


def _referral_skip(
    settings: OpportunitySettings, *, wedding: dt.date, asked: bool, now: float, zone: ZoneInfo
) -> str | None:
    if not settings.referral_ask.enabled:
        return "rule disabled"
    if asked:
        return "already asked"
    if not referral_due(settings, wedding=wedding, now=now, zone=zone):
        first, last = settings.referral_after_days, settings.referral_until_days
        return f"outside {first} to {last} days after the wedding"
    return None


def _key_part(user: str) -> str:
    """A user id as a key carries it: as it is when it can be, else its digest."""
    if _KEY_SAFE.fullmatch(user):
        return user
    return "sha256-" + hashlib.sha256(user.encode()).hexdigest()[:32]


def _message(
    settings: OpportunitySettings,
    rule: RuleSettings,
    address: str,
    key: str,
    variables: dict[str, Any],
    now: float,
    zone: ZoneInfo,
    wedding: dt.date | None,
) -> MessageIn:
    return MessageIn(
        target=settings.target,
        payload={"to": address, "from": settings.sender},
        key=key,
        category=rule.category,
        not_before=settings.hours.next_open(now, zone),
        subjects=[address],
        template=rule.template,
        vars=variables,
        wedding_date=None if wedding is None else wedding.isoformat(),
    )
