"""Every node's provider events, for every node's reputation guard.

Alone, the guard counts the events its own ingest keeps. With several nodes on one
PostgreSQL a provider's webhooks may reach any node's listener, and only the leader's
guard judges: so on a shared store the ingest no longer feeds the guard, and every
node's guard is fed instead from the store, all nodes' events, at each beat. Every node
counts, not only the leader, so that a node taking the lead judges a full window.

Events are read by id (``mail_events.id``, from a sequence) through a
:class:`~._gap_cursor.GapCursor`: an event committed after a later one was read is
still counted, and none twice. The feed starts at the newest event kept when it starts,
the guard having read the window's events from the store at its own start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs
import trio

from ._gap_cursor import GapCursor
from .deliverability import MailEventRow

PAGE = 1000  # events read a round; a node far behind reads rounds until it is not


class MailEventLog(Protocol):
    async def mail_events_after(
        self, after: int, awaited: Sequence[int], limit: int
    ) -> tuple[list[int], list[MailEventRow]]: ...

    async def newest_mail_event(self) -> int: ...


class Counting(Protocol):
    def note(self, rows: Sequence[MailEventRow]) -> None: ...


@attrs.define(eq=False)
class MailEventFeed:
    log: MailEventLog
    guard: Counting
    cursor: GapCursor
    page: int = PAGE

    @classmethod
    async def start(cls, log: MailEventLog, guard: Counting) -> MailEventFeed:
        return cls(log, guard, GapCursor(await log.newest_mail_event()))

    async def follow(self) -> int:
        """Count in the guard the email events kept since the last follow; how many."""
        counted = 0
        while True:
            awaited, after = self.cursor.wanted()
            ids, rows = await self.log.mail_events_after(after, awaited, self.page)
            fresh = set(self.cursor.fresh(ids, trio.current_time()))
            new = [row for row in rows if row.id in fresh]
            if new:
                self.guard.note(new)
            counted += len(new)
            if len(ids) < self.page:
                return counted
