"""Privacy for operators: a subject's erasure, status, export and consent; key rotation.

A subject is named by its opaque id (``s_`` and 32 hex characters) or by the
identity it stands for (an address, a phone number, a user id), which the
handler turns into the id at once and never logs. Export is the one place
besides a lane that opens sealed payloads: a subject-access request is the
subject's own data, given back to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from .._errors import ErrorCode, RequestError
from ..control import _replies as r
from ..control._protocol import (
    KeysRotate,
    SubjectConsent,
    SubjectErase,
    SubjectExport,
    SubjectStatus,
)
from ..privacy._books import ConsentBook
from ..privacy._erasure import STEPS, ErasureJobs, outcome_of
from ..privacy._seal import Unsealable
from ..privacy._settings import PURPOSES
from ..privacy._vault import Erased, RotationState, is_subject_id
from ..store import ERASED_PAYLOAD, SHREDDED_PAYLOAD, ConsentRecord, ErasureRecord, Store
from ._deliverability import suppression_view

MAX_IDENTITY = 320
MAX_SOURCE = 200
EXPORT_LIMIT = 10_000  # messages an export holds; more is refused, naming the count


class Subjects(Protocol):
    """The vault, as the handlers use it."""

    def subject_id(self, identity: str) -> str: ...

    async def identity(self, subject: str) -> str | None: ...

    async def open_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]: ...


class Rotator(Protocol):
    async def rotate(self, by: str) -> RotationState: ...


def subject_of(text: str, vault: Subjects) -> str:
    """The subject id ``text`` names (an id as is, else the identity's keyed hash)."""
    text = text.strip()
    if is_subject_id(text):
        return text
    if not text or len(text) > MAX_IDENTITY:
        raise RequestError(
            ErrorCode.BAD_ARGS,
            f"subject: give an id (s_ and 32 hex) or an address, phone or user id of 1 to "
            f"{MAX_IDENTITY} characters",
        )
    return vault.subject_id(text)


def erasure_view(record: ErasureRecord) -> r.ErasureView:
    assert record.id is not None
    steps = [
        r.ErasureStepView(
            step,
            record.steps[step].get("at") if step in record.steps else None,
            {k: v for k, v in record.steps.get(step, {}).items() if k != "at"},
        )
        for step in STEPS
    ]
    outcome = outcome_of(record) if record.finished_at is not None else None
    return r.ErasureView(
        record.id, record.subject, record.requested_by, record.requested_at,
        record.finished_at, outcome, steps,
    )  # fmt: skip


def consent_view(c: ConsentRecord) -> r.ConsentView:
    return r.ConsentView(c.subject, c.purpose, c.granted, c.source, c.at, c.by)


@attrs.frozen
class SubjectEraseHandler:
    jobs: ErasureJobs
    vault: Subjects

    async def __call__(self, request: SubjectErase) -> r.ErasureView:
        subject = subject_of(request.subject, self.vault)
        return erasure_view(await self.jobs.start(subject, request.by))


@attrs.frozen
class SubjectStatusHandler:
    store: Store
    vault: Subjects
    consent: ConsentBook

    async def __call__(self, request: SubjectStatus) -> r.SubjectStatusReply:
        subject = subject_of(request.subject, self.vault)
        jobs = await self.store.erasures(subject=subject)
        messages = await self.store.subject_messages(subject, limit=EXPORT_LIMIT)
        return r.SubjectStatusReply(
            subject=subject,
            erased=subject in await self.store.erased_subjects(),
            has_key=await self.vault.identity(subject) is not None,
            messages=len(messages),
            consent={p: c.granted for p, c in self.consent.of_subject(subject).items()},
            erasures=[erasure_view(j) for j in jobs],
        )


@attrs.frozen
class SubjectExportHandler:
    store: Store
    vault: Subjects
    wall: Callable[[], float]

    async def __call__(self, request: SubjectExport) -> r.SubjectExportReply:
        subject = subject_of(request.subject, self.vault)
        messages = await self.store.subject_messages(subject, limit=EXPORT_LIMIT + 1)
        if len(messages) > EXPORT_LIMIT:
            raise RequestError(
                ErrorCode.TOO_MANY, f"more than {EXPORT_LIMIT} messages: export refused"
            )
        shown: list[dict[str, object]] = []
        events: list[dict[str, object]] = []
        for m in messages:
            shown.append({**_message(m), "payload": await self._opened(m.payload)})
            for e in reversed(await self.store.events(message_id=m.id, limit=1000)):
                events.append({"id": e.id, "at": e.at, "kind": e.kind, "message_id": e.message_id,
                               "integration": e.integration, "detail": e.detail})  # fmt: skip
        mail: list[dict[str, object]] = [
            attrs.asdict(e) for e in await self.store.subject_mail_events(subject)
        ]
        return r.SubjectExportReply(
            subject=subject,
            identity=await self.vault.identity(subject),
            exported_at=self.wall(),
            messages=shown,
            events=events,
            mail_events=mail,
            suppressions=[
                suppression_view(s) for s in await self.store.suppressions(address=subject)
            ],
            consent=[consent_view(c) for c in await self.store.consents(subject)],
        )

    async def _opened(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        if payload == ERASED_PAYLOAD:
            return {"unavailable": "erased"}
        if payload == SHREDDED_PAYLOAD:
            return {"unavailable": "shredded by retention"}
        try:
            return await self.vault.open_payload(payload)
        except Erased:
            return {"unavailable": "a subject's key is destroyed"}
        except Unsealable:
            return {"unavailable": "cannot be opened with the keys held"}


def _message(m: Any) -> dict[str, Any]:
    return {
        "id": m.id,
        "target": m.target,
        "status": m.status,
        "category": m.category,
        "created_at": m.created_at,
        "delivered_at": m.delivered_at,
    }


@attrs.frozen
class SubjectConsentHandler:
    store: Store
    vault: Subjects
    consent: ConsentBook
    wall: Callable[[], float]

    async def __call__(self, request: SubjectConsent) -> r.ConsentView:
        subject = subject_of(request.subject, self.vault)
        if request.purpose not in PURPOSES:
            known = ", ".join(PURPOSES)
            raise RequestError(
                ErrorCode.BAD_ARGS, f"purpose: unknown {request.purpose!r}; known: {known}"
            )
        source = request.source.strip()
        if not source or len(source) > MAX_SOURCE:
            raise RequestError(ErrorCode.BAD_ARGS, f"source: 1 to {MAX_SOURCE} characters")
        record = ConsentRecord(
            subject, request.purpose, request.granted, source, self.wall(), request.by
        )
        record = await self.store.add_consent(record)
        self.consent.note(record)
        return consent_view(record)


@attrs.frozen
class KeysRotateHandler:
    rotator: Rotator

    async def __call__(self, request: KeysRotate) -> r.KeysRotateReply:
        state = await self.rotator.rotate(request.by)
        return r.KeysRotateReply(state.current, state.pending, state.old_needed, state.running)


def privacy_table(
    *,
    store: Store,
    vault: Subjects,
    jobs: ErasureJobs,
    consent: ConsentBook,
    rotator: Rotator,
    wall: Callable[[], float],
) -> dict[type[Any], Callable[[Any], Awaitable[r.Reply]]]:
    """The handler of each privacy request."""
    return {
        SubjectErase: SubjectEraseHandler(jobs, vault),
        SubjectStatus: SubjectStatusHandler(store, vault, consent),
        SubjectExport: SubjectExportHandler(store, vault, wall),
        SubjectConsent: SubjectConsentHandler(store, vault, consent, wall),
        KeysRotate: KeysRotateHandler(rotator),
    }
