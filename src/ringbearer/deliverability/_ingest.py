"""Ingest: verified provider events in, each kept once, its suppressions in force.

The listener hands over the events of one verified delivery and answers the
provider only after :meth:`Ingest.ingest` returns, so what it acknowledged
is durable: an event, its ``provider_event`` audit event and the
suppressions it calls for go into the store in one commit. Then, for the
events that were new (a provider redelivers; the store keeps each
``(source, event_id)`` once), the suppressions block in memory, the
reputation guard counts them and judges again, and the metrics count them.
A redelivered event changes nothing and comes back ``False``.

:class:`Unsubscriber` is the one-click unsubscribe's way in: a suppression of
the category, in force and durable when it returns.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs

from .._errors import RingbearerError
from .._logging import fields
from . import _rules
from ._book import SuppressionBook
from ._model import (
    Channel,
    EventRecord,
    EventType,
    MailEventRow,
    MatchedEvent,
    ProviderEvent,
    Reason,
    Suppression,
    normalise_address,
)
from ._settings import SuppressionRules

log = logging.getLogger("ringbearer.deliverability")

ONE_CLICK = "one_click"  # the ``integration`` label of unsubscribes by the RFC 8058 link


class EventStore(Protocol):
    """The part of the store's Deliverability role that keeps provider events."""

    async def match_events(
        self, events: Sequence[ProviderEvent], *, soft_since: float
    ) -> list[MatchedEvent]: ...

    async def commit_events(self, records: Sequence[EventRecord]) -> list[bool]: ...


class Reputation(Protocol):
    """The reputation guard, as the ingest feeds it."""

    def note(self, rows: Sequence[MailEventRow]) -> None: ...

    async def evaluate(self, now: float) -> None: ...


class EventCounts(Protocol):
    def event(self, integration: str, event_type: EventType) -> None: ...


MailEventHook = Callable[[Sequence[tuple[int, str]]], Awaitable[None]]


@attrs.frozen
class Ingest:
    """Provider events to the store, then to the book, the guard and the metrics."""

    store: EventStore
    book: SuppressionBook
    guard: Reputation
    rules: SuppressionRules
    wall: Callable[[], float]
    metrics: EventCounts | None = None
    # An address as the store keeps it (see ``IntakeRules.pseudonym``).
    pseudonym: Callable[[str], str] = normalise_address
    # Told of each new event of one of our messages, as (message id, type): experiments
    # count a delivery, an open or a click as a conversion where they name it.
    on_events: MailEventHook | None = None
    # Whether the guard counts (and judges at once) what this ingest keeps. On a store
    # several nodes share, each node's guard reads every node's events from the store
    # instead (``_mail_feed``), and only the leader's judges.
    counts: bool = True

    async def ingest(self, events: Sequence[ProviderEvent]) -> list[bool]:
        """Keep ``events``; for each, True if it was new (False: kept before, nothing done)."""
        if not events:
            return []
        events = [pseudonymised(e, self.pseudonym) for e in events]
        now = self.wall()
        soft_since = now - self.rules.soft_bounce_window_days * _rules.DAY
        matched = await self.store.match_events(events, soft_since=soft_since)
        records = self._records(matched, now)
        fresh = [r for r in records if r is not None]
        kept = await self.store.commit_events(fresh) if fresh else []
        new = {id(r) for r, was_new in zip(fresh, kept, strict=True) if was_new}
        applied = [r for r in fresh if id(r) in new]
        if applied:
            await self._apply(applied, now)
        return [r is not None and id(r) in new for r in records]

    def _records(self, matched: Sequence[MatchedEvent], now: float) -> list[EventRecord | None]:
        """A record per event not kept before (None for the rest, and for a repeat within
        the batch); a soft bounce counts the soft bounces before it in the batch too."""
        seen: set[tuple[str, str]] = set()
        soft: collections.Counter[str] = collections.Counter()
        records: list[EventRecord | None] = []
        for m in matched:
            key = (m.event.source, m.event.event_id)
            if m.seen or key in seen:
                records.append(None)
                continue
            seen.add(key)
            m = _with_batch_soft_bounces(m, soft)
            records.append(EventRecord(m, _rules.effects(m, self.rules, now)))
        return records

    async def _apply(self, records: Sequence[EventRecord], now: float) -> None:
        for record in records:
            self.book.applied(record.suppressions)
            if self.metrics is not None:
                event = record.matched.event
                self.metrics.event(event.source, event.type)
        if self.on_events is not None:
            await self.on_events([
                (r.matched.message.message_id, r.matched.event.type.value)
                for r in records if r.matched.message is not None
            ])  # fmt: skip
        rows = [row for row in map(_mail_row, records) if row is not None]
        if not rows or not self.counts:
            return
        self.guard.note(rows)
        if not any(row.event in _WORSENING for row in rows):
            return  # only a complaint or a bounce can pause; the guard's tick sees the rest
        try:
            await self.guard.evaluate(now)
        except RingbearerError as exc:  # the events are kept; the guard's next tick judges
            log.error("reputation guard could not judge", extra=fields(error=str(exc)))


# What can make a domain's standing worse at once: judged after each event batch.
_WORSENING = frozenset({EventType.COMPLAINED, EventType.HARD_BOUNCE})


def _with_batch_soft_bounces(m: MatchedEvent, soft: collections.Counter[str]) -> MatchedEvent:
    """The store counted the soft bounces kept before; add those earlier in this batch."""
    if m.event.type is not EventType.SOFT_BOUNCE:
        return m
    address = m.event.address or (m.message.recipient if m.message is not None else None)
    if not address:
        return m
    address = normalise_address(address)
    earlier = soft[address]
    soft[address] += 1
    return attrs.evolve(m, soft_bounces=m.soft_bounces + earlier) if earlier else m


def _mail_row(record: EventRecord) -> MailEventRow | None:
    """What the reputation guard counts of a record: email of a known sending domain."""
    event, message = record.matched.event, record.matched.message
    if event.channel is not Channel.EMAIL or message is None or message.domain is None:
        return None
    return MailEventRow(event.at, event.type, event.source, message.domain, message.message_id)


def pseudonymised(event: ProviderEvent, pseudonym: Callable[[str], str]) -> ProviderEvent:
    """The event naming its address as the store keeps it, and its detail not naming it."""
    if event.address is None:
        return event
    address = normalise_address(event.address)
    named = pseudonym(address)
    if named == address:
        return event
    said = re.compile(re.escape(address), re.IGNORECASE)  # a provider's words, any case
    detail = {k: said.sub(named, v) if isinstance(v, str) else v for k, v in event.detail.items()}
    return attrs.evolve(event, address=named, detail=detail)


@attrs.frozen
class Unsubscriber:
    """One-click unsubscribes: a suppression of the category, durable when it returns."""

    book: SuppressionBook
    wall: Callable[[], float]
    metrics: EventCounts | None = None
    pseudonym: Callable[[str], str] = normalise_address
    # Told of each unsubscribe (the subject, the category): privacy withdraws consent.
    on_unsubscribed: Callable[[str, str], Awaitable[None]] | None = None

    async def unsubscribe(self, address: str, category: str, *, by: str) -> None:
        """Suppress ``category`` for ``address``; pressing the button twice writes once."""
        address = self.pseudonym(normalise_address(address))
        if self.on_unsubscribed is not None:
            await self.on_unsubscribed(address, category)
        if any(
            s.scope == category and s.reason is Reason.UNSUBSCRIBE
            for s in self.book.entries(address)
        ):
            return
        note = "one-click unsubscribe (RFC 8058)"
        await self.book.add(
            Suppression(address, category, Reason.UNSUBSCRIBE, self.wall(), by=by, note=note)
        )
        if self.metrics is not None:
            self.metrics.event(ONE_CLICK, EventType.UNSUBSCRIBED)
