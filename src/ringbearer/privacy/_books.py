"""What submit checks each message against, in memory: erased subjects, and consent.

Both are loaded from the store at start and kept in step by whoever changes
the store (the erasure job, the consent command, an unsubscribe), so a submit
costs no read.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ..store import ConsentRecord


@attrs.define
class ErasedBook:
    """Subjects erased (by opaque id): nothing new about them is taken."""

    subjects: set[str] = attrs.Factory(set)

    def add(self, subject: str) -> None:
        self.subjects.add(subject)

    def first_erased(self, subjects: Iterable[str]) -> str | None:
        return next((s for s in subjects if s in self.subjects), None)


@attrs.define
class ConsentBook:
    """Each subject's latest consent record per purpose."""

    latest: dict[tuple[str, str], ConsentRecord] = attrs.Factory(dict)

    @classmethod
    def of(cls, records: Iterable[ConsentRecord]) -> ConsentBook:
        book = cls()
        for record in records:
            book.note(record)
        return book

    def note(self, record: ConsentRecord) -> None:
        self.latest[(record.subject, record.purpose)] = record

    def granted(self, subject: str, purpose: str) -> bool:
        record = self.latest.get((subject, purpose))
        return record is not None and record.granted

    def of_subject(self, subject: str) -> dict[str, ConsentRecord]:
        return {p: r for (s, p), r in self.latest.items() if s == subject}
