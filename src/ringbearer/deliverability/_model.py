"""What deliverability speaks of: provider events, categories, suppressions, gate verdicts.

A provider tells us what became of a message after it took it (delivered,
bounced, complained...). Each such report, once its signature is checked,
is a :class:`ProviderEvent`; the store matches it to its message and keeps
it once (by the provider's event id), and the rules turn some of them into
:class:`Suppression` entries that keep an address from being mailed again.
"""

from __future__ import annotations

import enum

import attrs

TRANSACTIONAL = "transactional"
MARKETING = "marketing"
# Someone asked to join the platform (a vendor invited on a couple's behalf): not
# transactional, not a newsletter; capped, and with an unsubscribe link, on its own.
INVITES = "invites"
DEFAULT_CATEGORIES = (TRANSACTIONAL, MARKETING, INVITES)
EVERY_CATEGORY = "*"  # a suppression's scope that covers every category


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class EventType(enum.StrEnum):
    """What a provider reports about a message it took; the value is the metric label."""

    DELIVERED = "delivered"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    # Mailgun's ``failed`` of ``temporary`` severity: the receiving server said
    # "later" (greylisting, a full mailbox) and Mailgun tries again, reporting
    # each try; its last word is ``delivered`` or a permanent failure. Kept and
    # counted, never a bounce (so one greylisted email holds no address).
    DEFERRED = "deferred"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"
    UNDELIVERED = "undelivered"  # SMS: the carrier could not deliver it
    FAILED = "failed"  # SMS: never sent


class Reason(enum.StrEnum):
    """Why an address is suppressed."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    SOFT_BOUNCE = "soft_bounce"  # repeated soft bounces: held for a while
    MANUAL = "manual"  # an operator's ``suppression add``
    ERASED = "erased"  # the subject was erased: never contacted again


def normalise_address(address: str) -> str:
    """The form an address is suppressed and matched under: trimmed, lower case.

    The local part is case-sensitive by the letter of RFC 5321, but no mailbox
    provider treats it so, and a suppression must not be dodged by case.
    A phone number is kept as given (E.164).
    """
    return address.strip().lower()


@attrs.frozen
class ProviderEvent:
    """One verified report from a provider about a message it took."""

    source: str  # the integration whose webhook it came to (its config name)
    event_id: str  # the provider's id of this delivery of the event: de-duplicates it
    type: EventType
    at: float  # wall clock, when the provider says it happened
    channel: Channel = Channel.EMAIL
    provider_id: str | None = None  # the provider's id of the message (what it answered us)
    key: str | None = None  # our idempotency key, where the provider echoes it back
    address: str | None = None  # the recipient it is about, normalised
    category: str | None = None  # for an unsubscribe, the category it ends
    detail: dict[str, object] = attrs.field(factory=dict)  # small: reason, code


@attrs.frozen
class MessageFacts:
    """What the store knows of the message an event is about."""

    message_id: int
    target: str
    integration: str | None
    category: str | None
    recipient: str | None  # the first recipient, normalised
    domain: str | None  # the sending domain (of ``from``), lower case
    priority: str  # a Priority's label


@attrs.frozen
class MatchedEvent:
    """A provider event with its message found (or not), before it is committed."""

    event: ProviderEvent
    message: MessageFacts | None  # None: no message of ours has this provider id or key
    seen: bool  # its event id was committed before: a redelivery, to answer 2xx and skip
    soft_bounces: int = 0  # the address's soft bounces kept since the window asked for


@attrs.frozen
class Suppression:
    """An address kept from mail of ``scope`` (a category, or ``*`` for every one)."""

    address: str  # normalised
    scope: str
    reason: Reason
    created_at: float  # wall clock
    until: float | None = None  # wall clock; None: until removed
    by: str = "ringbearer"  # who: an operator's name, or the provider whose event it was
    note: str = ""
    id: int | None = None  # given by the store
    last_try_at: float | None = None  # a hard bounce: when critical mail last tried anyway


@attrs.frozen
class EventRecord:
    """What one committed provider event writes: the event, and the suppressions it adds."""

    matched: MatchedEvent
    suppressions: tuple[Suppression, ...] = ()


@attrs.frozen
class MailEventRow:
    """A kept provider event, as the reputation guard and the funnel read it."""

    at: float
    event: EventType
    source: str
    domain: str | None
    message_id: int | None
    id: int | None = None  # the store's, where a reader follows the events by it


@attrs.frozen
class FunnelRow:
    """One provider and sending domain's counts since a time."""

    integration: str
    domain: str
    sent: int  # submitted
    accepted: int  # taken by the provider (delivered, in our words)
    events: dict[str, int]  # by EventType value


@attrs.frozen
class DomainStanding:
    """A sending domain's reputation over the guard's window, as status shows it."""

    domain: str
    delivered: int
    complaints: int
    hard_bounces: int
    complaint_rate: float  # complaints / delivered (0 when none delivered)
    bounce_rate: float  # hard bounces / (delivered + hard bounces)
    state: str  # "ok", "warning" or "paused"
    paused_since: float | None = None  # wall clock


@attrs.frozen
class Pass:
    """The gate lets a claimed message go to its provider."""


@attrs.frozen
class Drop:
    """Never send it: dead-lettered with ``reason`` (``suppressed: ...``)."""

    reason: str
    counted_as: str  # the ``ringbearer_suppressed_total`` reason label


@attrs.frozen
class Hold:
    """Keep it in the store, not due, until ``key`` is released (a paused domain)."""

    key: str  # e.g. "domain:example.com"
    reason: str


@attrs.frozen
class Defer:
    """Queue it again, due at wall time ``until`` (a frequency cap); not an attempt."""

    until: float
    reason: str


Verdict = Pass | Drop | Hold | Defer
PASS = Pass()
