"""The deliverability role's face on a store: each method hands over to the part that does it.

Both stores present every role as one object; this keeps the twelve methods
of this role out of their classes, which hold the queue's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..deliverability import (
    EventRecord,
    FunnelRow,
    MailEventRow,
    MatchedEvent,
    ProviderEvent,
    Suppression,
)
from ._protocol import Deliverability


class ForwardsDeliverability:
    """A store's :class:`Deliverability` methods, forwarded to ``_deliverability``."""

    _deliverability: Deliverability

    async def match_events(
        self, events: Sequence[ProviderEvent], *, soft_since: float
    ) -> list[MatchedEvent]:
        return await self._deliverability.match_events(events, soft_since=soft_since)

    async def commit_events(self, records: Sequence[EventRecord]) -> list[bool]:
        return await self._deliverability.commit_events(records)

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        return await self._deliverability.add_suppression(suppression)

    async def remove_suppression(
        self, address: str, *, scope: str | None = None, by: str, note: str = ""
    ) -> list[Suppression]:
        return await self._deliverability.remove_suppression(address, scope=scope, by=by, note=note)

    async def suppressions(
        self,
        *,
        address: str | None = None,
        active_at: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Suppression]:
        return await self._deliverability.suppressions(
            address=address, active_at=active_at, after=after, limit=limit
        )

    async def note_suppressed_try(self, suppression_id: int, at: float) -> None:
        await self._deliverability.note_suppressed_try(suppression_id, at)

    async def release_held(self, key: str, *, at: float, by: str) -> int:
        return await self._deliverability.release_held(key, at=at, by=by)

    async def held_keys(self) -> dict[str, int]:
        return await self._deliverability.held_keys()

    async def mail_events(self, *, since: float) -> list[MailEventRow]:
        return await self._deliverability.mail_events(since=since)

    async def marketing_sends(self, *, category: str, since: float) -> list[tuple[str, float, int]]:
        return await self._deliverability.marketing_sends(category=category, since=since)

    async def funnel(self, *, since: float, domain: str | None = None) -> list[FunnelRow]:
        return await self._deliverability.funnel(since=since, domain=domain)
