"""The records the store keeps and the changes it applies, as values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from .._audit_kinds import EventKind as EventKind
from .._delivery import Priority


class MessageStatus(enum.Enum):
    """A message's lifecycle; ``ALLOWED`` lists every legal transition."""

    QUEUED = "queued"
    INFLIGHT = "inflight"
    DELIVERED = "delivered"
    DEAD = "dead"
    ERASED = "erased"  # ended by its subject's erasure: never (again) sent, payload gone


ALLOWED: frozenset[tuple[MessageStatus, MessageStatus]] = frozenset(
    {
        (MessageStatus.QUEUED, MessageStatus.INFLIGHT),  # claimed by a dispatcher
        (MessageStatus.INFLIGHT, MessageStatus.DELIVERED),
        (MessageStatus.INFLIGHT, MessageStatus.QUEUED),  # retry, failover, crash, restart
        (MessageStatus.INFLIGHT, MessageStatus.DEAD),
        (MessageStatus.DEAD, MessageStatus.QUEUED),  # operator replay
        (MessageStatus.QUEUED, MessageStatus.ERASED),  # its subject erased before it went
        (MessageStatus.DEAD, MessageStatus.ERASED),
    }
)


def check_transition(old: MessageStatus, new: MessageStatus) -> None:
    if (old, new) not in ALLOWED:
        raise ValueError(f"illegal message transition {old.value} -> {new.value}")


@attrs.frozen
class NewMessage:
    """A message as a producer submits it."""

    target: str
    payload: dict[str, Any]
    priority: Priority = Priority.NORMAL
    idempotency_key: str | None = None
    deliver_by: float | None = None  # a deadline, wall clock: nearest goes first in its priority
    # Deliverability, for email: the category (transactional, marketing...), the
    # first recipient normalised, and the sending domain (of ``from``), lower case.
    category: str | None = None
    recipient: str | None = None
    domain: str | None = None
    not_before: float | None = None  # wall clock: not due before this (scheduled)
    # The data subjects it is about, by opaque id (``s_…``): its payload is sealed
    # under their keys, and an erasure finds it by them.
    subjects: tuple[str, ...] = ()


@attrs.frozen
class Accepted:
    """The acknowledgement of one submitted message, given after its commit."""

    id: int
    idempotency_key: str
    duplicate: bool = False  # the key was already known: this is the earlier message


@attrs.frozen
class Claimed:
    """A message taken off the queue for delivery."""

    id: int
    target: str
    priority: Priority
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    created_at: float
    route_index: int
    member_attempts: int
    # Completed steps of a multi-step delivery, by integration (a group's
    # members each keep their own): see ``Store.save_progress``.
    progress: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    deliver_by: float | None = None
    category: str | None = None
    recipient: str | None = None
    domain: str | None = None


# Priorities a claim may take, most urgent first, both ends included.
Span = tuple[Priority, Priority]
ALL_PRIORITIES: Span = (Priority.CRITICAL, Priority.BULK)


# Where a held message's next_attempt_at is pushed (9999-12-31 23:59:59 UTC, wall
# seconds): beyond any claim's reach and any due time, until its hold is released.
HELD_UNTIL = 253_402_300_799.0


class SettleKind(enum.Enum):
    """What an attempt ended in; also the name of the audit event it writes."""

    DELIVERED = "delivered"
    RETRIED = "retried"  # same member, later
    FAILED_OVER = "failed_over"  # next group member, now
    DEAD_LETTERED = "dead_lettered"
    RETURNED = "returned"  # never attempted (breaker refused at the last moment)
    HELD = "held"  # never attempted: kept queued but not due until ``Settle.held`` is released

    @property
    def status(self) -> MessageStatus:
        if self is SettleKind.DELIVERED:
            return MessageStatus.DELIVERED
        if self is SettleKind.DEAD_LETTERED:
            return MessageStatus.DEAD
        return MessageStatus.QUEUED


@attrs.frozen
class Attempt:
    """One request to a provider, as the attempts table keeps it."""

    integration: str
    started_at: float
    duration: float
    outcome: str  # delivered | retry | permanent
    detail: str | None = None
    status: int | None = None


@attrs.frozen
class Settle:
    """The end of one claim: the message's new state, and the attempt if one was made."""

    message_id: int
    target: str
    kind: SettleKind
    integration: str
    attempts: int  # attempts made in all, after this one
    next_attempt_at: float
    route_index: int = 0
    member_attempts: int = 0
    reason: str | None = None
    provider_id: str | None = None
    attempt: Attempt | None = None
    created_at: float = 0.0
    priority: Priority = Priority.NORMAL
    held: str | None = None  # HELD: the hold's key (``domain:example.com``)


@attrs.frozen
class Event:
    """One line of the append-only audit log."""

    kind: str  # an EventKind's value
    at: float
    message_id: int | None = None
    integration: str | None = None
    detail: dict[str, Any] | None = None
    id: int | None = None


@attrs.frozen
class DeadLetter:
    """A message given up on: why, when (wall clock), after how many attempts."""

    message_id: int
    target: str
    integration: str | None
    reason: str
    at: float
    attempts: int
    payload: dict[str, Any]


@attrs.frozen
class MessageRecord:
    """One message as the store keeps it (its payload and delivery progress aside)."""

    id: int
    target: str
    integration: str | None  # the member of the target that last had it
    priority: str  # a Priority's label: "critical", "normal" or "bulk"
    idempotency_key: str
    status: str  # a MessageStatus's value
    attempts: int
    next_attempt_at: float
    last_error: str | None
    provider_id: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None


@attrs.frozen
class BreakerRecord:
    """A breaker's persisted state; ``open_until`` is wall-clock time."""

    integration: str
    state: str
    forced: bool
    open_until: float


@attrs.frozen
class OverrideRecord:
    """The operator's wedding-day override, kept so that a restart, and every node of a
    shared store, follows it: on or off, until a wall time (None: until set to auto)."""

    on: bool
    until: float | None
    set_at: float


@attrs.define
class QueueCounts:
    """Queued messages by priority and messages in flight, for one target.

    Mutable on purpose: it is updated for every message of every commit.
    """

    queued: dict[Priority, int] = attrs.Factory(lambda: dict.fromkeys(Priority, 0))
    inflight: int = 0

    @property
    def total_queued(self) -> int:
        return sum(self.queued.values())


@attrs.define
class Counters:
    """Queue depth by target and priority, kept in step with each commit."""

    by_target: dict[str, QueueCounts] = attrs.Factory(dict)

    def of(self, target: str) -> QueueCounts:
        counts = self.by_target.get(target)
        if counts is None:
            counts = self.by_target[target] = QueueCounts()
        return counts

    def queued(self, target: str, priority: Priority, delta: int) -> None:
        self.of(target).queued[priority] += delta

    def inflight(self, target: str, delta: int) -> None:
        self.of(target).inflight += delta
