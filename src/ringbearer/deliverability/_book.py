"""The suppression book: the suppression list in memory, for a check per message.

Submit and the dispatchers ask about every email, so the answer must cost a
dictionary look-up, not a query: the book holds the suppressions in force,
loaded from the store at start-up and written through the store (the store
first, then memory, so memory never claims what a crash would lose). The
ingest commits an event's suppressions itself, with the event, and then hands
them to :meth:`SuppressionBook.applied`.

Memory holds only suppressions in force: one tuple per suppressed address,
one entry per scope and reason (a renewal replaces the entry). Those with an
end are forgotten once it passes, through a heap of ends, so a stream of
soft-bounce holds does not pile up.

On a store shared by several nodes, another node's suppressions reach this
book by :meth:`SuppressionBook.rebuild`, a read of the whole book anew; a change
made here while it reads is applied to the new book too, so none is lost.
"""

from __future__ import annotations

import functools
import heapq
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import attrs

from .._delivery import Priority
from . import _rules
from ._model import Suppression, normalise_address
from ._settings import SuppressionRules

PAGE = 1000  # suppressions read per query at start-up


class SuppressionRecords(Protocol):
    """The part of the store's Deliverability role the book writes through."""

    async def add_suppression(self, suppression: Suppression) -> Suppression: ...

    async def remove_suppression(
        self, address: str, *, scope: str | None = None, by: str, note: str = ""
    ) -> list[Suppression]: ...

    async def suppressions(
        self,
        *,
        address: str | None = None,
        active_at: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Suppression]: ...

    async def note_suppressed_try(self, suppression_id: int, at: float) -> None: ...


@attrs.define(eq=False)
class SuppressionBook:
    """Every suppression in force, by normalised address."""

    store: SuppressionRecords
    rules: SuppressionRules
    _by_address: dict[str, tuple[Suppression, ...]] = attrs.Factory(dict)
    _ends: list[tuple[float, str]] = attrs.Factory(list)  # a heap of (until, address)
    _meanwhile: list[Callable[[SuppressionBook], None]] | None = None  # changed in a rebuild

    @classmethod
    async def load(
        cls, store: SuppressionRecords, rules: SuppressionRules, now: float
    ) -> SuppressionBook:
        """The book of the suppressions in force at ``now``, read from ``store`` page by page."""
        book = cls(store, rules)
        after = 0
        while True:
            page = await store.suppressions(active_at=now, after=after, limit=PAGE)
            for s in page:
                book._put(s, now)
            if len(page) < PAGE:
                return book
            after = max(s.id or 0 for s in page)

    def __len__(self) -> int:
        """How many addresses are suppressed (for some category)."""
        return len(self._by_address)

    def blocking(
        self, address: str, category: str, priority: Priority, now: float
    ) -> Suppression | None:
        """The suppression that stops a message of ``category`` to ``address`` now, if any."""
        entries = self._by_address.get(normalise_address(address))
        if not entries:
            return None
        return _rules.blocking(entries, category, priority, now, self.rules)

    def critical_try(
        self, address: str, category: str, priority: Priority, now: float
    ) -> Suppression | None:
        """The hard bounce a critical message is passing now (its try a day), if it is one."""
        if priority is not Priority.CRITICAL:
            return None
        for s in self._by_address.get(normalise_address(address), ()):
            if _rules.is_critical_try(s, category, priority, now, self.rules):
                return s
        return None

    def entries(self, address: str) -> list[Suppression]:
        """The address's suppressions as the book holds them (in force when last looked at)."""
        return list(self._by_address.get(normalise_address(address), ()))

    async def add(self, s: Suppression) -> Suppression:
        """Durably add (or renew) a suppression; it blocks from when this returns."""
        kept = await self.store.add_suppression(s)
        self._change(lambda book: book._put(kept, kept.created_at))
        return kept

    async def remove(
        self, address: str, *, scope: str | None, by: str, note: str = ""
    ) -> list[Suppression]:
        """Durably remove the address's suppressions of ``scope`` (None: all); what went."""
        address = normalise_address(address)
        removed = await self.store.remove_suppression(address, scope=scope, by=by, note=note)
        self._change(lambda book: book._drop(address, scope))
        return removed

    def applied(self, suppressions: Iterable[Suppression]) -> None:
        """Suppressions the ingest has committed (with their events): they block from now."""
        for s in suppressions:
            self._change(functools.partial(SuppressionBook._put, s=s, now=s.created_at))

    async def rebuild(self, now: float) -> int:
        """The book read anew from the store, with what other nodes changed in it; what
        changes here meanwhile is applied to the new book too. How many addresses."""
        self._meanwhile = []
        try:
            fresh = await SuppressionBook.load(self.store, self.rules, now)
            for change in self._meanwhile:
                change(fresh)
        finally:
            self._meanwhile = None
        self._by_address, self._ends = fresh._by_address, fresh._ends
        return len(self)

    def _change(self, change: Callable[[SuppressionBook], None]) -> None:
        """A change of memory (the store has it already), kept for a rebuild under way."""
        change(self)
        if self._meanwhile is not None:
            self._meanwhile.append(change)

    def _drop(self, address: str, scope: str | None) -> None:
        kept = tuple(
            s for s in self._by_address.get(address, ()) if scope is not None and s.scope != scope
        )
        self._set(address, kept)

    async def note_try(self, s: Suppression, now: float) -> None:
        """Critical mail passed the hard bounce ``s`` at ``now``: the next may not for a day.

        Memory first, before any wait, so that a second critical message checked
        meanwhile is already stopped; then the store, so that a restart agrees.
        """
        current = self._current(s)
        if current is None:  # removed meanwhile: there is no suppression to note a try on
            return
        tried = attrs.evolve(current, last_try_at=now)
        self._change(lambda book: book._replace(tried) if book._current(tried) else None)
        if tried.id is None:  # committed by the ingest, whose commit does not return ids
            tried = await self._with_id(tried)
        if tried.id is not None:
            await self.store.note_suppressed_try(tried.id, now)

    async def _with_id(self, s: Suppression) -> Suppression:
        """``s`` with the id the store gave it; kept so in memory for the next time."""
        for kept in await self.store.suppressions(address=s.address):
            if (kept.scope, kept.reason) == (s.scope, s.reason) and kept.id is not None:
                found = attrs.evolve(s, id=kept.id)
                if self._current(s) is not None:
                    self._replace(found)
                return found
        return s

    def _current(self, s: Suppression) -> Suppression | None:
        for entry in self._by_address.get(normalise_address(s.address), ()):
            if (entry.scope, entry.reason) == (s.scope, s.reason):
                return entry
        return None

    def _put(self, s: Suppression, now: float) -> None:
        """Hold ``s`` (unless already over), replacing its address's entry of that scope and
        reason; then forget whatever has ended by ``now``."""
        s = _compact(s)
        if not _rules.expired(s, now):
            self._replace(s)
            if s.until is not None:
                heapq.heappush(self._ends, (s.until, s.address))
        self._forget_ended(now)

    def _replace(self, s: Suppression) -> None:
        others = self._by_address.get(s.address, ())
        same = (s.scope, s.reason)
        self._set(s.address, (*(e for e in others if (e.scope, e.reason) != same), s))

    def _set(self, address: str, entries: Sequence[Suppression]) -> None:
        if entries:
            self._by_address[address] = tuple(entries)
        else:
            self._by_address.pop(address, None)

    def _forget_ended(self, now: float) -> None:
        while self._ends and self._ends[0][0] <= now:
            _, address = heapq.heappop(self._ends)
            entries = self._by_address.get(address, ())
            self._set(address, tuple(e for e in entries if not _rules.expired(e, now)))


def _compact(s: Suppression) -> Suppression:
    """``s`` normalised, its repeated strings shared: a large book costs less memory."""
    return attrs.evolve(
        s,
        address=normalise_address(s.address),
        scope=sys.intern(s.scope),
        by=sys.intern(s.by),
    )
