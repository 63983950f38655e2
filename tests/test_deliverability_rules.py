"""The suppression rules: what each provider event suppresses, and what each suppression blocks."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ringbearer._converter import PositiveFloat, PositiveInt
from ringbearer._delivery import Priority
from ringbearer.deliverability import (
    EventType,
    MatchedEvent,
    MessageFacts,
    ProviderEvent,
    Reason,
    Suppression,
)
from ringbearer.deliverability._rules import DAY, HOUR, blocking, effects
from ringbearer.deliverability._settings import SuppressionRules

NOW = 1_700_000_000.0
RULES = SuppressionRules()
ADDRESS = "ann@example.com"


def matched(
    type: EventType,
    *,
    address: str | None = ADDRESS,
    category: str | None = None,
    recipient: str | None = "msg@example.com",
    message_category: str | None = "newsletter",
    soft_bounces: int = 0,
    with_message: bool = True,
) -> MatchedEvent:
    event = ProviderEvent(
        "resend", "ev-1", type, NOW - 5, address=address, category=category, provider_id="re_1"
    )
    facts = MessageFacts(7, "email", "resend", message_category, recipient, "example.com", "normal")
    return MatchedEvent(event, facts if with_message else None, False, soft_bounces)


def entry(reason: Reason, scope: str = "*", **changes: Any) -> Suppression:
    return attrs.evolve(Suppression(ADDRESS, scope, reason, NOW - 60), **changes)


# -- effects ---------------------------------------------------------------------------------


def test_a_hard_bounce_suppresses_every_category_for_good() -> None:
    """A hard bounce: scope *, no end, by the integration whose webhook it came to."""
    (s,) = effects(matched(EventType.HARD_BOUNCE), RULES, NOW)
    assert (s.address, s.scope, s.reason, s.until, s.by) == (
        ADDRESS,
        "*",
        Reason.HARD_BOUNCE,
        None,
        "resend",
    )
    assert s.created_at == NOW


def test_a_complaint_suppresses_every_category() -> None:
    """A complaint: scope *, reason complaint (what it spares is for blocking to say)."""
    (s,) = effects(matched(EventType.COMPLAINED), RULES, NOW)
    assert (s.scope, s.reason, s.until) == ("*", Reason.COMPLAINT, None)


@pytest.mark.parametrize(
    ("event_category", "message_category", "with_message", "scope"),
    [
        ("offers", "newsletter", True, "offers"),  # the event names it
        (None, "newsletter", True, "newsletter"),  # else the message's
        (None, None, True, "marketing"),  # else marketing
        (None, None, False, "marketing"),  # no message at all
    ],
)
def test_an_unsubscribe_suppresses_its_category(
    event_category: str | None, message_category: str | None, with_message: bool, scope: str
) -> None:
    """An unsubscribe ends the category the event names, else its message's, else marketing."""
    m = matched(
        EventType.UNSUBSCRIBED,
        category=event_category,
        message_category=message_category,
        with_message=with_message,
    )
    (s,) = effects(m, RULES, NOW)
    assert (s.scope, s.reason) == (scope, Reason.UNSUBSCRIBE)


def test_the_second_soft_bounce_in_the_window_holds_the_address() -> None:
    """Two soft bounces (one kept before, this one) hold the address for 3 days; one does not."""
    assert effects(matched(EventType.SOFT_BOUNCE, soft_bounces=0), RULES, NOW) == ()
    (s,) = effects(matched(EventType.SOFT_BOUNCE, soft_bounces=1), RULES, NOW)
    assert (s.scope, s.reason, s.until) == ("*", Reason.SOFT_BOUNCE, NOW + 3 * DAY)


def test_the_soft_bounce_count_and_hold_are_configurable() -> None:
    rules = attrs.evolve(
        RULES, soft_bounce_count=PositiveInt(3), soft_bounce_hold_days=PositiveFloat(1.0)
    )
    assert effects(matched(EventType.SOFT_BOUNCE, soft_bounces=1), rules, NOW) == ()
    (s,) = effects(matched(EventType.SOFT_BOUNCE, soft_bounces=2), rules, NOW)
    assert s.until == NOW + DAY


def test_the_address_is_the_events_else_the_messages_recipient() -> None:
    """Normalised; with neither, an event suppresses nothing."""
    (s,) = effects(matched(EventType.HARD_BOUNCE, address=None), RULES, NOW)
    assert s.address == "msg@example.com"
    (s,) = effects(matched(EventType.HARD_BOUNCE, address="  Ann@Example.COM "), RULES, NOW)
    assert s.address == ADDRESS
    nobody = matched(EventType.HARD_BOUNCE, address=None, recipient=None)
    assert effects(nobody, RULES, NOW) == ()
    assert (
        effects(matched(EventType.HARD_BOUNCE, address=None, with_message=False), RULES, NOW) == ()
    )


@pytest.mark.parametrize(
    ("off", "event", "soft_bounces"),
    [
        (attrs.evolve(RULES, hard_bounce=False), EventType.HARD_BOUNCE, 0),
        (attrs.evolve(RULES, complaint=False), EventType.COMPLAINED, 0),
        (attrs.evolve(RULES, unsubscribe=False), EventType.UNSUBSCRIBED, 0),
        (attrs.evolve(RULES, soft_bounce=False), EventType.SOFT_BOUNCE, 5),
    ],
)
def test_each_rule_can_be_switched_off(
    off: SuppressionRules, event: EventType, soft_bounces: int
) -> None:
    assert effects(matched(event, soft_bounces=soft_bounces), RULES, NOW) != ()
    assert effects(matched(event, soft_bounces=soft_bounces), off, NOW) == ()


@pytest.mark.parametrize(
    "event",
    [
        EventType.DELIVERED,
        EventType.OPENED,
        EventType.CLICKED,
        EventType.UNDELIVERED,
        EventType.FAILED,
    ],
)
def test_other_events_suppress_nothing(event: EventType) -> None:
    assert effects(matched(event, soft_bounces=9), RULES, NOW) == ()


# -- blocking ----------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["transactional", "marketing", "newsletter"])
@pytest.mark.parametrize("priority", [Priority.NORMAL, Priority.BULK])
def test_a_hard_bounce_blocks_every_category(category: str, priority: Priority) -> None:
    s = entry(Reason.HARD_BOUNCE)
    assert blocking([s], category, priority, NOW, RULES) == s


def test_critical_mail_passes_a_hard_bounce_once_a_day() -> None:
    """Never tried: it may go; tried within 24 hours: blocked; 24 hours on: it may go again."""
    fresh = entry(Reason.HARD_BOUNCE)
    assert blocking([fresh], "transactional", Priority.CRITICAL, NOW, RULES) is None
    tried = attrs.evolve(fresh, last_try_at=NOW - 23 * HOUR)
    assert blocking([tried], "transactional", Priority.CRITICAL, NOW, RULES) == tried
    tried = attrs.evolve(fresh, last_try_at=NOW - 24 * HOUR)
    assert blocking([tried], "transactional", Priority.CRITICAL, NOW, RULES) is None
    hourly = attrs.evolve(RULES, critical_retry_hours=PositiveFloat(1.0))
    tried = attrs.evolve(fresh, last_try_at=NOW - 2 * HOUR)
    assert blocking([tried], "transactional", Priority.CRITICAL, NOW, hourly) is None


def test_a_complaint_spares_transactional_mail() -> None:
    s = entry(Reason.COMPLAINT)
    assert blocking([s], "marketing", Priority.NORMAL, NOW, RULES) == s
    assert blocking([s], "newsletter", Priority.CRITICAL, NOW, RULES) == s
    assert blocking([s], "transactional", Priority.NORMAL, NOW, RULES) is None
    spares_more = attrs.evolve(RULES, complaint_spares=("transactional", "newsletter"))
    assert blocking([s], "newsletter", Priority.NORMAL, NOW, spares_more) is None


@pytest.mark.parametrize("reason", [Reason.UNSUBSCRIBE, Reason.MANUAL])
def test_unsubscribes_and_manual_entries_block_their_scope(reason: Reason) -> None:
    """A category scope blocks that category only, at any priority; * blocks every one."""
    s = entry(reason, scope="marketing")
    assert blocking([s], "marketing", Priority.CRITICAL, NOW, RULES) == s
    assert blocking([s], "transactional", Priority.NORMAL, NOW, RULES) is None
    everything = entry(reason, scope="*")
    assert blocking([everything], "transactional", Priority.CRITICAL, NOW, RULES) == everything


def test_a_soft_bounce_hold_blocks_while_it_lasts() -> None:
    s = entry(Reason.SOFT_BOUNCE, until=NOW + 1)
    assert blocking([s], "transactional", Priority.CRITICAL, NOW, RULES) == s
    assert blocking([s], "transactional", Priority.NORMAL, NOW + 1, RULES) is None


def test_the_most_lasting_cause_is_named() -> None:
    """Several block: the hard bounce is named before the unsubscribe and the soft hold."""
    found = [
        entry(Reason.SOFT_BOUNCE, until=NOW + DAY),
        entry(Reason.UNSUBSCRIBE, scope="marketing"),
        entry(Reason.HARD_BOUNCE),
    ]
    assert blocking(found, "marketing", Priority.NORMAL, NOW, RULES) == found[2]
    assert blocking(found[:2], "marketing", Priority.NORMAL, NOW, RULES) == found[1]
    assert blocking([], "marketing", Priority.NORMAL, NOW, RULES) is None


@given(
    reason=st.sampled_from(Reason),
    scope=st.sampled_from(["*", "marketing", "transactional"]),
    category=st.sampled_from(["marketing", "transactional", "newsletter"]),
    priority=st.sampled_from(Priority),
    ended_ago=st.floats(min_value=0, max_value=1e7, allow_nan=False),
)
def test_an_ended_suppression_never_blocks(
    reason: Reason, scope: str, category: str, priority: Priority, ended_ago: float
) -> None:
    """Whatever its reason and scope, an entry whose ``until`` has passed blocks nothing."""
    s = entry(reason, scope=scope, until=NOW - ended_ago)
    assert blocking([s], category, priority, NOW, RULES) is None


@given(
    reason=st.sampled_from(Reason),
    scope=st.sampled_from(["marketing", "transactional", "newsletter"]),
    category=st.sampled_from(["marketing", "transactional", "newsletter"]),
    priority=st.sampled_from(Priority),
)
def test_a_category_scope_never_blocks_another_category(
    reason: Reason, scope: str, category: str, priority: Priority
) -> None:
    assume(scope != category)
    assert blocking([entry(reason, scope=scope)], category, priority, NOW, RULES) is None
