"""The in-memory store's deliverability role: kept events, suppressions and holds, as SQLite
keeps them (ids, audit events and their order alike).

Each call "commits" at once, after one checkpoint, as the rest of the fake does.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from ..deliverability import (
    EventRecord,
    EventType,
    FunnelRow,
    MailEventRow,
    MatchedEvent,
    MessageFacts,
    ProviderEvent,
    Suppression,
    normalise_address,
)
from ._mail_audit import (
    KeptEvent,
    kept,
    provider_event_detail,
    provider_ids,
    released_detail,
    stored_record,
    stored_suppression,
    suppressed_detail,
    unsuppressed_detail,
)
from ._memory_tables import Row, Tables
from ._model import Event, EventKind, MessageStatus
from ._safe import safe_event

_Unique = tuple[str, str, str]  # a suppression's (address, scope, reason)


@attrs.define
class _Kept:
    """What the fake keeps of the role: ``mail_events`` and ``suppressions``."""

    events: list[KeptEvent] = attrs.Factory(list)
    seen: set[tuple[str, str]] = attrs.Factory(set)
    suppressions: dict[_Unique, Suppression] = attrs.Factory(dict)
    last_suppression_id: int = 0  # ids are never given again, as AUTOINCREMENT gives them


class MemoryDeliverability:
    """Implements :class:`~ringbearer.store.Deliverability` over the fake's tables."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self._k = _Kept()

    def kept_events(self) -> list[KeptEvent]:
        """``mail_events``, oldest first (the privacy role reads a subject's)."""
        return list(self._k.events)

    async def match_events(
        self, events: Sequence[ProviderEvent], *, soft_since: float
    ) -> list[MatchedEvent]:
        await trio.lowlevel.checkpoint()
        now = self._t.clock()
        return [self._match(safe_event(e, now), soft_since) for e in events]

    def _match(self, e: ProviderEvent, soft_since: float) -> MatchedEvent:
        soft = 0
        if e.address is not None:
            soft = sum(
                1
                for k in self._k.events
                if k.address == e.address
                and k.event == EventType.SOFT_BOUNCE
                and k.at >= soft_since
            )
        seen = (e.source, e.event_id) in self._k.seen
        return MatchedEvent(e, self._facts(e), seen, soft)

    def _facts(self, e: ProviderEvent) -> MessageFacts | None:
        found: list[Row] = []
        if e.provider_id:
            ids = provider_ids(e.provider_id)
            found = [r for r in self._t.rows.values() if r.provider_id in ids]
        if not found and e.key:
            found = [r for r in self._t.rows.values() if r.key == e.key]
        if not found:
            return None
        r = min(found, key=lambda r: r.id)
        priority = r.priority.label
        return MessageFacts(
            r.id, r.target, r.integration, r.category, r.recipient, r.domain, priority
        )

    async def commit_events(self, records: Sequence[EventRecord]) -> list[bool]:
        await trio.lowlevel.checkpoint()
        now = self._t.clock()
        return [self._keep(stored_record(r, now), now) for r in records]

    def _keep(self, record: EventRecord, now: float) -> bool:
        k = kept(record.matched)
        if (k.source, k.event_id) in self._k.seen:
            return False
        self._k.seen.add((k.source, k.event_id))
        self._k.events.append(k)
        detail = provider_event_detail(record.matched.event)
        self._t.log(Event(EventKind.PROVIDER_EVENT.value, now, k.message_id, k.integration, detail))
        for s in record.suppressions:
            self._upsert(s)
            detail = suppressed_detail(s)
            self._t.log(Event(EventKind.SUPPRESSED.value, now, k.message_id, k.integration, detail))
        return True

    def _upsert(self, s: Suppression) -> Suppression:
        unique = (s.address, s.scope, s.reason.value)
        earlier = self._k.suppressions.get(unique)
        if earlier is None:
            self._k.last_suppression_id += 1
            s = attrs.evolve(s, id=self._k.last_suppression_id, last_try_at=None)
        else:  # renewed: its id and its last critical try stay
            s = attrs.evolve(s, id=earlier.id, last_try_at=earlier.last_try_at)
        self._k.suppressions[unique] = s
        return s

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        await trio.lowlevel.checkpoint()
        s = self._upsert(stored_suppression(suppression))
        self._t.log(
            Event(EventKind.SUPPRESSED.value, self._t.clock(), None, None, suppressed_detail(s))
        )
        return s

    async def remove_suppression(
        self, address: str, *, scope: str | None = None, by: str, note: str = ""
    ) -> list[Suppression]:
        await trio.lowlevel.checkpoint()
        now, address = self._t.clock(), normalise_address(address)
        removed = [
            s
            for s in self._listed()
            if s.address == address and (scope is None or s.scope == scope)
        ]
        for s in removed:
            del self._k.suppressions[(s.address, s.scope, s.reason.value)]
            detail = unsuppressed_detail(s, by, note)
            self._t.log(Event(EventKind.UNSUPPRESSED.value, now, None, None, detail))
        return removed

    def _listed(self) -> list[Suppression]:
        return sorted(self._k.suppressions.values(), key=lambda s: s.id or 0)

    async def suppressions(
        self,
        *,
        address: str | None = None,
        active_at: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Suppression]:
        await trio.lowlevel.checkpoint()
        wanted = None if address is None else normalise_address(address)
        return [
            s
            for s in self._listed()
            if (s.id or 0) > after
            and (wanted is None or s.address == wanted)
            and (active_at is None or s.until is None or s.until > active_at)
        ][:limit]

    async def note_suppressed_try(self, suppression_id: int, at: float) -> None:
        await trio.lowlevel.checkpoint()
        for unique, s in self._k.suppressions.items():
            if s.id == suppression_id:
                self._k.suppressions[unique] = attrs.evolve(s, last_try_at=at)
                return

    async def release_held(self, key: str, *, at: float, by: str) -> int:
        await trio.lowlevel.checkpoint()
        now = self._t.clock()
        held = sorted(
            (
                r
                for r in self._t.rows.values()
                if r.held == key and r.status is MessageStatus.QUEUED
            ),
            key=lambda r: r.id,
        )
        for r in held:
            r.held, r.next_attempt_at, r.updated_at = None, at, now
            detail = released_detail(key, by)
            self._t.log(Event(EventKind.RELEASED.value, now, r.id, r.integration, detail))
        if held:
            self._t.listener.submitted({r.target for r in held})
        return len(held)

    async def held_keys(self) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        counts: dict[str, int] = {}
        for r in self._t.rows.values():
            if r.held is not None:
                counts[r.held] = counts.get(r.held, 0) + 1
        return counts

    async def mail_events(self, *, since: float) -> list[MailEventRow]:
        await trio.lowlevel.checkpoint()
        ordered = sorted(enumerate(self._k.events), key=lambda n_k: (n_k[1].at, n_k[0]))
        return [
            MailEventRow(k.at, EventType(k.event), k.source, k.domain, k.message_id)
            for _, k in ordered
            if k.at >= since and k.channel == "email"
        ]

    async def marketing_sends(self, *, category: str, since: float) -> list[tuple[str, float, int]]:
        await trio.lowlevel.checkpoint()
        sends = [
            (r.delivered_at, r.id, r.recipient)
            for r in self._t.rows.values()
            if r.status is MessageStatus.DELIVERED
            and r.category == category
            and r.recipient is not None
            and r.delivered_at is not None
            and r.delivered_at >= since
        ]
        return [(recipient, at, number) for at, number, recipient in sorted(sends)]

    async def funnel(self, *, since: float, domain: str | None = None) -> list[FunnelRow]:
        await trio.lowlevel.checkpoint()
        groups: dict[int, tuple[str, str]] = {
            r.id: (r.integration or r.target, r.domain)
            for r in self._t.rows.values()
            if r.domain is not None and r.created_at >= since and domain in (None, r.domain)
        }
        rows: dict[tuple[str, str], FunnelRow] = {}
        for message_id, group in groups.items():
            row = rows.setdefault(group, FunnelRow(group[0], group[1], 0, 0, {}))
            delivered = self._t.rows[message_id].status is MessageStatus.DELIVERED
            rows[group] = attrs.evolve(row, sent=row.sent + 1, accepted=row.accepted + delivered)
        for k in self._k.events:
            if k.message_id in groups:
                counts = rows[groups[k.message_id]].events
                counts[k.event] = counts.get(k.event, 0) + 1
        return [rows[group] for group in sorted(rows)]
