"""The gate: the last look at a claimed email before it goes to its provider.

Submit already refused mail to suppressed addresses; the gate catches what
was queued before a suppression, a pause or a cap came about. In order:

1. a suppression in force: dropped (a dead letter, ``suppressed: ...``);
2. its sending domain paused by the reputation guard: held in the store;
3. a frequency cap over: deferred until the cap allows it, or dropped, as the
   cap says;
4. otherwise it goes, and the cap counts it (and a critical email passing a
   hard bounce spends that address's try of the day).

It is called for every email claimed, so each step is a dictionary look-up;
only the rare critical try writes to the store. Work that is not email
(no recipient) always goes.
"""

from __future__ import annotations

import datetime
from typing import Protocol

import attrs

from .._delivery import Priority
from ._book import SuppressionBook
from ._caps import CapHit, FrequencyCaps
from ._guard import hold_key
from ._model import PASS, Defer, Drop, Hold, Verdict

FREQUENCY_CAP = "frequency_cap"  # the ``ringbearer_suppressed_total`` reason of a cap's drop


class Claim(Protocol):
    """What the gate reads of a claimed message (the store's ``Claimed``)."""

    @property
    def id(self) -> int: ...

    @property
    def priority(self) -> Priority: ...

    @property
    def category(self) -> str | None: ...

    @property
    def recipient(self) -> str | None: ...

    @property
    def domain(self) -> str | None: ...


class Holds(Protocol):
    """The reputation guard, as the gate asks it."""

    def is_held(self, domain: str | None, category: str | None, priority: Priority) -> bool: ...


class SuppressedCount(Protocol):
    def suppressed(self, reason: str) -> None: ...


@attrs.frozen
class Gate:
    """Pass, drop, hold or defer each claimed email (see the module)."""

    book: SuppressionBook
    guard: Holds
    caps: FrequencyCaps
    default_category: str
    metrics: SuppressedCount | None = None  # counts each drop (the intake counts refusals)

    async def check(self, message: Claim, now: float) -> Verdict:
        recipient = message.recipient
        if recipient is None:
            return PASS
        category = message.category or self.default_category
        found = self.book.blocking(recipient, category, message.priority, now)
        if found is not None:
            reason = found.reason.value
            return self._dropped(Drop(f"suppressed: {reason} ({found.scope})", counted_as=reason))
        domain = message.domain
        if domain is not None and self.guard.is_held(domain, category, message.priority):
            return Hold(hold_key(domain), f"sending domain {domain} paused (reputation)")
        hit = self.caps.limiting(recipient, category, now, message=message.id)
        if hit is not None:
            return self._capped(hit, category)
        self.caps.note(recipient, category, now, message=message.id)
        tried = self.book.critical_try(recipient, category, message.priority, now)
        if tried is not None:
            await self.book.note_try(tried, now)
        return PASS

    def _capped(self, hit: CapHit, category: str) -> Verdict:
        cap = hit.cap
        what = f"frequency cap: {hit.sent} {category} emails in {cap.per_days:g} days"
        if cap.over == "drop":
            return self._dropped(Drop(f"{what} (limit {cap.limit})", counted_as=FREQUENCY_CAP))
        until = datetime.datetime.fromtimestamp(hit.until, datetime.UTC).isoformat()
        return Defer(hit.until, f"{what} (limit {cap.limit}); waits until {until}")

    def _dropped(self, drop: Drop) -> Drop:
        if self.metrics is not None:
            self.metrics.suppressed(drop.counted_as)
        return drop
