"""What submit checks each message against, in memory: erased subjects, and consent.

Both are loaded from the store at start and kept in step by whoever changes
the store (the erasure job, the consent command, an unsubscribe), so a submit
costs no read. On a store several nodes share, each node also takes up what the
others changed (``_shared_books``): the erased subjects by a union, the consents
by :meth:`ConsentBook.rebuild`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

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
    _meanwhile: list[ConsentRecord] | None = None  # noted while a rebuild reads

    @classmethod
    def of(cls, records: Iterable[ConsentRecord]) -> ConsentBook:
        book = cls()
        for record in records:
            book.note(record)
        return book

    def note(self, record: ConsentRecord) -> None:
        self.latest[(record.subject, record.purpose)] = record
        if self._meanwhile is not None:
            self._meanwhile.append(record)

    async def rebuild(self, records: Callable[[], Awaitable[Iterable[ConsentRecord]]]) -> int:
        """Every record read anew (what other nodes recorded too), then those noted here
        while it read, so none is lost; how many subjects and purposes."""
        self._meanwhile = []
        try:
            fresh = ConsentBook.of(await records())
            for record in self._meanwhile:
                fresh.latest[(record.subject, record.purpose)] = record
        finally:
            self._meanwhile = None
        self.latest = fresh.latest
        return len(self.latest)

    def granted(self, subject: str, purpose: str) -> bool:
        record = self.latest.get((subject, purpose))
        return record is not None and record.granted

    def of_subject(self, subject: str) -> dict[str, ConsentRecord]:
        return {p: r for (s, p), r in self.latest.items() if s == subject}
