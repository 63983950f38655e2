"""Frequency caps: at most so many emails of a category to one recipient within so many days.

The gate asks for every capped email it lets go, so the answer comes from
memory: per (category, recipient), the times mail was let go within the
longest window of that category's caps, seeded at start-up from what the
store says was delivered. A send is noted with its message's id so that the
same message, retried, is neither counted twice nor stopped by itself.

Times are forgotten once no cap of their category can count them any more,
through a heap of expiry times, so memory follows the recipients mailed
within the window, not every recipient ever mailed.

On a store several nodes share, each node also takes up, at each beat, what the
others delivered in the last ``RECENT`` seconds (:meth:`FrequencyCaps.take_up`): a
delivery is stamped by the node that settles it, and committed long before that
margin passes; a message seen again is not counted again (by its id).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Protocol

import attrs

from ._model import normalise_address
from ._settings import FrequencyCap

DAY = 86_400.0
RECENT = 60.0  # seconds of other nodes' deliveries read at each beat

_Key = tuple[str, str]  # (category, recipient)


class SendHistory(Protocol):
    """The part of the store's Deliverability role the caps are seeded from."""

    async def marketing_sends(
        self, *, category: str, since: float
    ) -> list[tuple[str, float, int]]: ...


@attrs.frozen
class CapHit:
    """A cap that stops a message now: allowed again at ``until`` (wall time)."""

    cap: FrequencyCap
    until: float
    sent: int  # sends counted within the cap's window


@attrs.define
class _Send:
    at: float
    message: int | None


@attrs.define(eq=False)
class FrequencyCaps:
    """The sends each cap counts, per category and recipient."""

    caps: tuple[FrequencyCap, ...]
    _by_category: dict[str, tuple[FrequencyCap, ...]] = attrs.field(init=False)
    _sends: dict[_Key, list[_Send]] = attrs.Factory(dict)  # oldest first
    _ends: list[tuple[float, _Key]] = attrs.Factory(list)  # a heap of (forget at, key)

    def __attrs_post_init__(self) -> None:
        by: dict[str, list[FrequencyCap]] = {}
        for cap in self.caps:
            by.setdefault(cap.category, []).append(cap)
        self._by_category = {c: tuple(caps) for c, caps in by.items()}

    @classmethod
    async def load(
        cls, caps: Iterable[FrequencyCap], store: SendHistory, now: float
    ) -> FrequencyCaps:
        """Caps seeded with each capped category's deliveries within its longest window."""
        built = cls(tuple(caps))
        for category in built._by_category:
            await built._read(store, category, since=now - built.horizon(category))
        return built

    async def take_up(self, store: SendHistory, now: float) -> None:
        """On a shared store: count what every node delivered of late (each message once)."""
        for category in self._by_category:
            await self._read(store, category, since=now - RECENT)

    async def _read(self, store: SendHistory, category: str, *, since: float) -> None:
        for recipient, at, message in await store.marketing_sends(category=category, since=since):
            self.note(recipient, category, at, message=message)

    def horizon(self, category: str) -> float:
        """How far back any cap of ``category`` counts, in seconds (0: not capped)."""
        return max((c.per_days * DAY for c in self._by_category.get(category, ())), default=0.0)

    def __len__(self) -> int:
        """How many (category, recipient) pairs are remembered."""
        return len(self._sends)

    def check(
        self, recipient: str, category: str, now: float, *, message: int | None = None
    ) -> float | None:
        """None if an email may go now; else the wall time a cap allows it."""
        hit = self.limiting(recipient, category, now, message=message)
        return None if hit is None else hit.until

    def limiting(
        self, recipient: str, category: str, now: float, *, message: int | None = None
    ) -> CapHit | None:
        """The cap that stops an email now: a dropping one first, else the one that waits
        longest. ``message``: its own earlier pass does not count against it."""
        caps = self._by_category.get(category)
        if not caps:
            return None
        self._forget(now)
        sends = self._sends.get((category, normalise_address(recipient)), [])
        times = [s.at for s in sends if message is None or s.message != message]
        hits = [h for h in (_hit(cap, times, now) for cap in caps) if h is not None]
        if not hits:
            return None
        return max(hits, key=lambda h: (h.cap.over == "drop", h.until))

    def note(self, recipient: str, category: str, at: float, *, message: int | None = None) -> None:
        """An email of ``category`` went to ``recipient`` at ``at`` (once per message)."""
        horizon = self.horizon(category)
        if horizon <= 0:
            return
        key = (category, normalise_address(recipient))
        sends = self._sends.setdefault(key, [])
        if message is not None and any(s.message == message for s in sends):
            return
        sends.append(_Send(at, message))
        if len(sends) > 1 and sends[-2].at > at:  # seeds and late notes may come out of order
            sends.sort(key=lambda s: s.at)
        heapq.heappush(self._ends, (at + horizon, key))
        self._forget(at)

    def _forget(self, now: float) -> None:
        """Drop the sends no cap counts any more, and recipients left with none."""
        while self._ends and self._ends[0][0] <= now:
            _, key = heapq.heappop(self._ends)
            sends = self._sends.get(key)
            if sends is None:
                continue
            horizon = self.horizon(key[0])
            kept = [s for s in sends if s.at + horizon > now]
            if kept:
                self._sends[key] = kept
            else:
                del self._sends[key]


def _hit(cap: FrequencyCap, times: list[float], now: float) -> CapHit | None:
    """``cap`` over at ``now``? ``times`` ascending. Allowed again once enough of the
    oldest counted sends leave its window: the first instant fewer than ``limit`` remain."""
    window = cap.per_days * DAY
    # ``t + window > now``, the very sum ``until`` is made of: at ``until`` the send is
    # surely out (``now - window < t`` could round the other way and wait forever).
    counted = [t for t in times if t <= now < t + window]
    if len(counted) < cap.limit:
        return None
    return CapHit(cap, counted[len(counted) - cap.limit] + window, len(counted))
