"""The privacy role in memory, written as the SQLite store writes it."""

from __future__ import annotations

import attrs
import trio

from .._audit_kinds import EventKind
from ._memory_deliverability import MemoryDeliverability
from ._memory_tables import Row, Tables
from ._model import Event, MessageStatus
from ._privacy_model import (
    ERASED_PAYLOAD,
    SHREDDED_PAYLOAD,
    ConsentRecord,
    ErasedMessages,
    ErasureRecord,
    MailEvent,
    SubjectMessage,
    consent_detail,
    erased_reason,
)


@attrs.define
class MemoryPrivacy:
    _t: Tables
    _mail: MemoryDeliverability
    erased: dict[str, float] = attrs.Factory(dict)
    jobs: dict[int, ErasureRecord] = attrs.Factory(dict)
    consent_log: list[ConsentRecord] = attrs.Factory(list)
    tokens: dict[str, str] = attrs.Factory(dict)
    shredded: set[int] = attrs.Factory(set)

    def _ids(self, subject: str) -> list[int]:
        return sorted(i for i, r in self._t.rows.items() if subject in r.subjects)

    async def subject_messages(
        self, subject: str, *, after: int = 0, limit: int = 1000
    ) -> list[SubjectMessage]:
        await trio.lowlevel.checkpoint()
        rows = [self._t.rows[i] for i in self._ids(subject) if i > after][:limit]
        return [
            SubjectMessage(
                r.id, r.target, r.status.value, r.payload, r.created_at, r.delivered_at, r.category
            )
            for r in rows
        ]

    async def subject_mail_events(self, subject: str, *, limit: int = 10_000) -> list[MailEvent]:
        await trio.lowlevel.checkpoint()
        return [
            MailEvent(
                k.at, k.source, k.event, k.channel, k.message_id, k.integration, k.domain, k.detail
            )
            for k in self._mail.kept_events()
            if k.address == subject
        ][:limit]

    async def erase_messages(self, subject: str, *, at: float, job: int) -> ErasedMessages:
        await trio.lowlevel.checkpoint()
        self.erased.setdefault(subject, at)
        ended = wiped = flying = 0
        for i in self._ids(subject):
            r = self._t.rows[i]
            if r.status is MessageStatus.INFLIGHT:
                flying += 1
                continue
            if r.status in (MessageStatus.QUEUED, MessageStatus.DEAD):
                if r.status is MessageStatus.QUEUED:
                    self._t.counters.queued(r.target, r.priority, -1)
                ended += 1
                r.status, r.updated_at, r.held = MessageStatus.ERASED, at, None
                r.last_error = erased_reason(job)
                self._t.log(Event(EventKind.ERASED.value, at, r.id, r.integration, _change(r)))
            if r.payload != ERASED_PAYLOAD:
                r.payload = dict(ERASED_PAYLOAD)
                wiped += 1
        return ErasedMessages(ended, wiped, flying)

    async def erased_subjects(self) -> set[str]:
        await trio.lowlevel.checkpoint()
        return set(self.erased)

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        await trio.lowlevel.checkpoint()
        if record.id is None:
            record = attrs.evolve(record, id=max(self.jobs, default=0) + 1)
        assert record.id is not None
        self.jobs[record.id] = record
        return record

    async def erasures(
        self, *, subject: str | None = None, unfinished: bool = False
    ) -> list[ErasureRecord]:
        await trio.lowlevel.checkpoint()
        return [
            j
            for _, j in sorted(self.jobs.items())
            if (subject is None or j.subject == subject)
            and (not unfinished or j.finished_at is None)
        ]

    async def add_consent(self, record: ConsentRecord) -> ConsentRecord:
        await trio.lowlevel.checkpoint()
        record = attrs.evolve(record, id=len(self.consent_log) + 1)
        self.consent_log.append(record)
        detail = consent_detail(record)
        self._t.log(Event(EventKind.CONSENT.value, record.at, None, None, detail))
        return record

    async def consents(self, subject: str | None = None) -> list[ConsentRecord]:
        await trio.lowlevel.checkpoint()
        return [c for c in self.consent_log if subject is None or c.subject == subject]

    async def shred_payloads(
        self, *, delivered_before: float, dead_before: float, limit: int = 1000
    ) -> int:
        await trio.lowlevel.checkpoint()
        due = [
            r
            for _, r in sorted(self._t.rows.items())
            if r.id not in self.shredded
            and (
                (
                    r.status is MessageStatus.DELIVERED
                    and r.delivered_at is not None
                    and r.delivered_at < delivered_before
                )
                or (r.status is MessageStatus.DEAD and r.updated_at < dead_before)
            )
        ][:limit]
        for r in due:
            r.payload = dict(SHREDDED_PAYLOAD)
            self.shredded.add(r.id)
        return len(due)

    async def scrub(self) -> None:
        await trio.lowlevel.checkpoint()

    async def load_token(self, integration: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return self.tokens.get(integration)

    async def save_token(self, integration: str, sealed: str) -> None:
        await trio.lowlevel.checkpoint()
        self.tokens[integration] = sealed


def _change(r: Row) -> dict[str, object]:
    """The ``erased`` event's detail, as the SQLite trigger writes a change."""
    return {
        "attempts": r.attempts,
        "status": MessageStatus.ERASED.value,
        "reason": r.last_error,
        "provider_id": r.provider_id,
        "next_attempt_at": r.next_attempt_at,
        "route_index": r.route_index,
    }
