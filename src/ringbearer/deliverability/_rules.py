"""The suppression rules, as pure functions: what an event suppresses, what blocks a message.

Two questions, asked at different times and kept apart so that each is easy
to test on its own: when a provider's event is committed, which suppressions
does it add (:func:`effects`); and when a message is about to be accepted or
sent, which suppression (if any) stops it (:func:`blocking`). The defaults
are listmonk's recommended ones; each rule can be switched off in
``[deliverability.suppression]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._delivery import Priority
from ._model import (
    EVERY_CATEGORY,
    MARKETING,
    EventType,
    MatchedEvent,
    Reason,
    Suppression,
    normalise_address,
)
from ._settings import SuppressionRules

DAY = 86_400.0
HOUR = 3_600.0

# When several suppressions block one message, the one named is the most lasting:
# an operator looking at ``suppressed: ...`` should see the cause that matters.
_RANK = {
    Reason.ERASED: -1,
    Reason.HARD_BOUNCE: 0,
    Reason.COMPLAINT: 1,
    Reason.MANUAL: 2,
    Reason.UNSUBSCRIBE: 3,
    Reason.SOFT_BOUNCE: 4,
}


def effects(matched: MatchedEvent, rules: SuppressionRules, now: float) -> tuple[Suppression, ...]:
    """The suppressions one provider event adds (none for most events)."""
    address = _address_of(matched)
    if address is None:
        return ()
    found = _effect(matched, rules, now)
    if found is None:
        return ()
    reason, scope, until = found
    event = matched.event
    note = f"{event.type.value} event {event.event_id}"
    return (Suppression(address, scope, reason, now, until, by=event.source, note=note),)


def _address_of(matched: MatchedEvent) -> str | None:
    """The event's own address, else its message's recipient."""
    address = matched.event.address
    if address is None and matched.message is not None:
        address = matched.message.recipient
    return None if not address else normalise_address(address)


def _effect(
    matched: MatchedEvent, rules: SuppressionRules, now: float
) -> tuple[Reason, str, float | None] | None:
    """The reason, scope and end of the suppression the event calls for, if any."""
    match matched.event.type:
        case EventType.HARD_BOUNCE if rules.hard_bounce:
            return Reason.HARD_BOUNCE, EVERY_CATEGORY, None
        case EventType.COMPLAINED if rules.complaint:
            return Reason.COMPLAINT, EVERY_CATEGORY, None
        case EventType.UNSUBSCRIBED if rules.unsubscribe:
            return Reason.UNSUBSCRIBE, _unsubscribed_scope(matched), None
        case EventType.SOFT_BOUNCE if rules.soft_bounce and _soft_enough(matched, rules):
            return Reason.SOFT_BOUNCE, EVERY_CATEGORY, now + rules.soft_bounce_hold_days * DAY
        case _:
            return None


def _soft_enough(matched: MatchedEvent, rules: SuppressionRules) -> bool:
    """This soft bounce and those kept within the window reach ``soft_bounce_count``."""
    return matched.soft_bounces + 1 >= rules.soft_bounce_count


def _unsubscribed_scope(matched: MatchedEvent) -> str:
    """The category the unsubscribe names, else its message's, else marketing."""
    if matched.event.category:
        return matched.event.category
    if matched.message is not None and matched.message.category:
        return matched.message.category
    return MARKETING


def blocking(
    entries: Iterable[Suppression],
    category: str,
    priority: Priority,
    now: float,
    rules: SuppressionRules,
) -> Suppression | None:
    """Which of an address's suppressions stops a message of ``category`` now, if any."""
    found = [s for s in entries if blocks(s, category, priority, now, rules)]
    return min(found, key=lambda s: _RANK[s.reason]) if found else None


def blocks(
    s: Suppression, category: str, priority: Priority, now: float, rules: SuppressionRules
) -> bool:
    """Does this one suppression stop a message of ``category`` and ``priority`` now?"""
    if expired(s, now) or not covers(s.scope, category):
        return False
    match s.reason:
        case Reason.HARD_BOUNCE:
            return priority is not Priority.CRITICAL or not critical_may_try(s, now, rules)
        case Reason.COMPLAINT:
            return category not in rules.complaint_spares
        case _:
            return True


def expired(s: Suppression, now: float) -> bool:
    """A suppression whose ``until`` has passed blocks nothing, whatever its reason."""
    return s.until is not None and s.until <= now


def covers(scope: str, category: str) -> bool:
    return scope in (EVERY_CATEGORY, category)


def critical_may_try(s: Suppression, now: float, rules: SuppressionRules) -> bool:
    """Critical mail may pass a hard bounce once every ``critical_retry_hours``.

    The count starts at the first critical try, not at the bounce: the bounce
    came from some other mail, and critical mail deserves its one chance.
    """
    return s.last_try_at is None or now - s.last_try_at >= rules.critical_retry_hours * HOUR


def is_critical_try(
    s: Suppression, category: str, priority: Priority, now: float, rules: SuppressionRules
) -> bool:
    """Is a message going now only because critical mail may pass this hard bounce?"""
    return (
        s.reason is Reason.HARD_BOUNCE
        and priority is Priority.CRITICAL
        and not expired(s, now)
        and covers(s.scope, category)
        and critical_may_try(s, now, rules)
    )
