"""Matching provider events for every caller waiting at once, in one crossing of the bridge.

A webhook delivery matches its event before the rules decide what it writes.
Alone, each match pays a crossing of the trio/asyncio bridge (about 0.2 ms,
more than the query); deliveries arriving together are matched together, as
the writer commits together, so a burst costs one crossing per group.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import attrs
import trio

from ..._errors import RingbearerError, StoreError
from ...deliverability import MatchedEvent, ProviderEvent
from ._db import Tx
from ._mail import match_all
from ._reads import Reads


@attrs.define
class _Ask:
    """One caller's events, and its answer once the group they went with is read."""

    events: Sequence[ProviderEvent]
    soft_since: float
    done: trio.Event = attrs.Factory(trio.Event)
    result: list[MatchedEvent] = attrs.Factory(list)
    error: RingbearerError | None = None


class Matcher:
    """Gathers match asks and answers them from the reader in its own task."""

    def __init__(self, reads: Reads) -> None:
        self._reads = reads
        self._asks: list[_Ask] = []
        self._wake = trio.Event()

    async def match(self, events: Sequence[ProviderEvent], soft_since: float) -> list[MatchedEvent]:
        """Match ``events`` with whatever else is asked meanwhile; return this caller's answer."""
        ask = _Ask(events, soft_since)
        self._asks.append(ask)
        self._wake.set()
        await ask.done.wait()
        if ask.error is not None:
            raise ask.error
        return ask.result

    async def match_loop(self) -> None:
        """Answer the waiting asks, group by group, forever."""
        while True:
            if not self._asks:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            asks, self._asks = self._asks, []
            await self._answer(asks)
            for ask in asks:
                ask.done.set()

    async def _answer(self, asks: list[_Ask]) -> None:
        """Read the group's answers; if it fails, each ask alone, so only a bad one hears of it."""
        try:
            await self._reads.several(functools.partial(_read, asks=asks))
        except Exception as exc:  # never the loop's end: its callers would wait forever
            if len(asks) > 1:
                for ask in asks:
                    await self._answer([ask])
                return
            asks[0].error = _refusal(exc)


async def _read(tx: Tx, asks: list[_Ask]) -> None:
    for ask in asks:
        ask.result = await match_all(tx, ask.events, ask.soft_since)


def _refusal(exc: Exception) -> RingbearerError:
    if isinstance(exc, RingbearerError):
        return exc
    return StoreError(f"cannot match these events: {type(exc).__name__}: {exc}")
