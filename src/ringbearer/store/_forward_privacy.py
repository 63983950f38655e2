"""The privacy role's face on a store: each method hands over to the part that does it."""

from __future__ import annotations

from ._privacy_model import (
    ConsentRecord,
    ErasedMessages,
    ErasureRecord,
    MailEvent,
    SubjectMessage,
)
from ._protocol import Privacy


class ForwardsPrivacy:
    """A store's :class:`Privacy` methods, forwarded to ``_privacy``."""

    _privacy: Privacy

    async def subject_messages(
        self, subject: str, *, after: int = 0, limit: int = 1000
    ) -> list[SubjectMessage]:
        return await self._privacy.subject_messages(subject, after=after, limit=limit)

    async def subject_mail_events(self, subject: str, *, limit: int = 10_000) -> list[MailEvent]:
        return await self._privacy.subject_mail_events(subject, limit=limit)

    async def erase_messages(self, subject: str, *, at: float, job: int) -> ErasedMessages:
        return await self._privacy.erase_messages(subject, at=at, job=job)

    async def erased_subjects(self) -> set[str]:
        return await self._privacy.erased_subjects()

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        return await self._privacy.save_erasure(record)

    async def erasures(
        self, *, subject: str | None = None, unfinished: bool = False
    ) -> list[ErasureRecord]:
        return await self._privacy.erasures(subject=subject, unfinished=unfinished)

    async def add_consent(self, record: ConsentRecord) -> ConsentRecord:
        return await self._privacy.add_consent(record)

    async def consents(self, subject: str | None = None) -> list[ConsentRecord]:
        return await self._privacy.consents(subject)

    async def shred_payloads(
        self, *, delivered_before: float, dead_before: float, limit: int = 1000
    ) -> int:
        return await self._privacy.shred_payloads(
            delivered_before=delivered_before, dead_before=dead_before, limit=limit
        )

    async def scrub(self) -> None:
        await self._privacy.scrub()

    async def load_token(self, integration: str) -> str | None:
        return await self._privacy.load_token(integration)

    async def save_token(self, integration: str, sealed: str) -> None:
        await self._privacy.save_token(integration, sealed)
