"""Erasure by crypto-shredding: a durable job per subject, resumed at start until done.

Each step is recorded in the store (``erasures.steps``) once done, and done
again harmlessly if a crash came between doing and recording it:

    suppress        the subject's keyed hash suppressed for every category, and
                    submit refuses anything new about them
    ask_providers   a critical deletion message per analytics deletion integration
                    (Mixpanel GDPR API, Amplitude User Privacy API) and per id the
                    provider knows the subject by (read from their analytics events
                    while the key lives), keyed by job, integration and id, sealed
                    under a key of the job's own
    end_messages    the subject marked erased in the store; queued and dead messages
                    ended as ``erased``; every payload not in flight replaced
    destroy_key     the subject's data key destroyed: every sealed copy, in the
                    database, its WAL or any backup, is unreadable from now on
    in_flight       messages that were in flight settled (their payloads replaced too)
    providers_done  the deletion messages delivered or given up; the job's key destroyed
    scrub           the WAL checkpointed and truncated (freed pages are zeroed as written)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from .._audit_kinds import EventKind
from .._errors import RingbearerError
from ..control import MessageIn
from ..store import AuditLog, ErasureRecord, Event, Privacy, Queries
from ._books import ErasedBook

log = logging.getLogger("ringbearer.privacy")

STEPS = (
    "suppress",
    "ask_providers",
    "end_messages",
    "destroy_key",
    "in_flight",
    "providers_done",
    "scrub",
)
_FINAL = frozenset({"delivered", "dead", "erased"})
RETRY_FIRST_SECONDS = 30.0  # a failed step is tried again after this, doubling ...
RETRY_MAX_SECONDS = 600.0  # ... up to this


class Keys(Protocol):
    """The vault, as erasure uses it."""

    def subject_id(self, identity: str) -> str: ...

    async def identity(self, subject: str) -> str | None: ...

    async def destroy(self, subject: str) -> bool: ...

    async def open_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]: ...


class ErasureStore(Privacy, Queries, AuditLog, Protocol):
    """The store, as erasure uses it."""


Submit = Callable[[Sequence[MessageIn]], Awaitable[list[int]]]


def job_identity(job: int) -> str:
    """The identity an erasure job's own messages are sealed under (destroyed at its end)."""
    return f"ringbearer-erasure-job-{job}"


@attrs.frozen
class Erasure:
    """Runs one job's steps, each recorded once done."""

    store: ErasureStore
    keys: Keys
    erased: ErasedBook
    suppress: Callable[[str], Awaitable[None]]
    submit: Submit
    deletion_targets: Callable[[], list[str]]  # integrations of the privacy family
    family_of: Callable[[str], str]  # a target's family ("analytics", ...)
    wall: Callable[[], float]
    poll_seconds: float = 1.0

    async def run(self, record: ErasureRecord) -> ErasureRecord:
        for step in STEPS:
            if not record.done(step):
                detail = await getattr(self, "_" + step)(record)
                record = await self.store.save_erasure(
                    record.with_step(step, self.wall(), **detail)
                )
                self._audit(EventKind.ERASURE_STEP, record, step=step)
        record = await self.store.save_erasure(attrs.evolve(record, finished_at=self.wall()))
        self._audit(EventKind.ERASURE_FINISHED, record, outcome=outcome_of(record))
        return record

    def _audit(self, kind: EventKind, record: ErasureRecord, **detail: Any) -> None:
        detail = {"job": record.id, "subject": record.subject, **detail}
        self.store.append_event(Event(kind.value, self.wall(), detail=detail))

    async def _suppress(self, record: ErasureRecord) -> dict[str, Any]:
        self.erased.add(record.subject)  # in the store too, by end_messages
        await self.suppress(record.subject)
        return {}

    async def _end_messages(self, record: ErasureRecord) -> dict[str, Any]:
        assert record.id is not None
        self.erased.add(record.subject)  # again: a restart may have come between
        done = await self.store.erase_messages(record.subject, at=self.wall(), job=record.id)
        return {"ended": done.ended, "wiped": done.wiped, "in_flight": done.in_flight}

    async def _ask_providers(self, record: ErasureRecord) -> dict[str, Any]:
        assert record.id is not None
        targets = self.deletion_targets()
        ids = await self._analytics_ids(record.subject)
        if not ids or not targets:
            why = "no deletion integration configured" if not targets else "no id known"
            return {"messages": [], "skipped": why}
        messages = [
            MessageIn(
                target=target,
                payload={"id": person},
                priority="critical",
                key=f"erasure-{record.id}-{target}-{n}",
                subjects=[job_identity(record.id)],
            )
            for target in targets
            for n, person in enumerate(ids)
        ]
        return {"messages": await self.submit(messages), "targets": targets, "ids": len(ids)}

    async def _analytics_ids(self, subject: str) -> list[str]:
        """The ids the analytics providers know the subject by: its identity, and every
        ``distinct_id`` and ``user_id`` of the analytics events about it (opened while its
        key lives: Mixpanel's ids are case-sensitive, so exactly as they were sent)."""
        found: list[str] = []
        identity = await self.keys.identity(subject)
        if identity is not None:
            found.append(identity)
        after = 0
        while batch := await self.store.subject_messages(subject, after=after):
            after = batch[-1].id
            for m in batch:
                if self.family_of(m.target) == "analytics":
                    found += _person_ids(await self._opened(m.payload))
        return list(dict.fromkeys(found))

    async def _opened(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            return await self.keys.open_payload(payload)
        except RingbearerError:  # erased or shredded already: nothing to read
            return {}

    async def _destroy_key(self, record: ErasureRecord) -> dict[str, Any]:
        return {"destroyed": await self.keys.destroy(record.subject)}

    async def _in_flight(self, record: ErasureRecord) -> dict[str, Any]:
        assert record.id is not None
        while True:
            done = await self.store.erase_messages(record.subject, at=self.wall(), job=record.id)
            if done.in_flight == 0:
                return {"ended": done.ended, "wiped": done.wiped}
            await trio.sleep(self.poll_seconds)

    async def _providers_done(self, record: ErasureRecord) -> dict[str, Any]:
        assert record.id is not None
        ids = list(record.steps.get("ask_providers", {}).get("messages", []))
        while ids:
            states = await self.store.states(ids)
            if all(states.get(i) in _FINAL for i in ids):
                break
            await trio.sleep(self.poll_seconds)
        states = await self.store.states(ids) if ids else {}
        job_subject = self.keys.subject_id(job_identity(record.id))
        await self.keys.destroy(job_subject)
        await self.store.erase_messages(job_subject, at=self.wall(), job=record.id)
        return {"states": {str(i): states.get(i) for i in ids}}

    async def _scrub(self, record: ErasureRecord) -> dict[str, Any]:
        await self.store.scrub()
        return {}


def _person_ids(payload: Mapping[str, Any]) -> list[str]:
    return [v for k in ("distinct_id", "user_id") if isinstance(v := payload.get(k), str) and v]


def outcome_of(record: ErasureRecord) -> str:
    """``completed``, or ``provider_failed`` when a provider's deletion was given up."""
    states = record.steps.get("providers_done", {}).get("states", {})
    return "provider_failed" if any(s != "delivered" for s in states.values()) else "completed"


@attrs.define
class ErasureJobs:
    """Starts jobs (one open job per subject) and resumes unfinished ones at start."""

    erasure: Erasure
    on_finished: Callable[[ErasureRecord], None] = lambda record: None
    running: set[int] = attrs.Factory(set)  # jobs under way in this process
    _send: trio.MemorySendChannel[ErasureRecord] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[ErasureRecord] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[ErasureRecord](1000)

    async def start(self, subject: str, by: str) -> ErasureRecord:
        """The subject's open job, or a new one, durably recorded before it runs."""
        store = self.erasure.store
        running = await store.erasures(subject=subject, unfinished=True)
        if running:
            return running[0]
        record = await store.save_erasure(ErasureRecord(subject, by, self.erasure.wall()))
        self.erasure._audit(EventKind.ERASURE_REQUESTED, record, by=by)
        await self._send.send(record)
        return record

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for record in await self.erasure.store.erasures(unfinished=True):
                nursery.start_soon(self._one, record)
            task_status.started()
            async for record in self._receive:
                nursery.start_soon(self._one, record)

    async def _one(self, record: ErasureRecord) -> None:
        """Run a job to its end: a step that fails is tried again later (the job is durable,
        and what its steps did is kept), never taking the daemon down with it."""
        assert record.id is not None
        log.info("erasure %s of subject %s: running", record.id, record.subject)
        self.running.add(record.id)
        try:
            finished = await self._until_done(record)
        finally:
            self.running.discard(record.id)
        log.info("erasure %s: %s", record.id, outcome_of(finished))
        self.on_finished(finished)

    async def _until_done(self, record: ErasureRecord) -> ErasureRecord:
        wait = RETRY_FIRST_SECONDS
        while True:
            try:
                return await self.erasure.run(record)
            except Exception as exc:  # a store or submit failure: the step runs again
                log.warning("erasure %s: a step failed (%s); again in %.0f s",
                            record.id, type(exc).__name__, wait)  # fmt: skip
                await trio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_SECONDS)
                (record,) = [j for j in await self.erasure.store.erasures(
                    subject=record.subject) if j.id == record.id]  # fmt: skip
