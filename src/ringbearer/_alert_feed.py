"""Dead letters of every node, for the leader's alerts.

Alone, the daemon counts the dead letters its own lanes settle. With several nodes on
one PostgreSQL any node's lane may dead-letter a message, and only the leader raises
alerts: so the leader reads the ``dead_lettered`` events of all nodes from the shared
audit log, every alert tick, from where it took the lead on, and the nodes no longer
count their own (which would count the leader's twice).

Event ids come from a sequence, drawn when a row is written but seen when its
transaction commits: node A's event 100 may commit after node B's 101 was read, so a
cursor on the id would skip it for good. The feed reads instead every dead letter of
the last ``MARGIN`` seconds (event times are the writing node's clock) and takes in
those it has not seen; an event is stamped at most a batch's commit before it can be
seen, far less than the margin (a transaction idle for a third of a lease is ended).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from ._errors import RingbearerError
from ._logging import fields
from .store import Event, MessageRecord

log = logging.getLogger("ringbearer.alerts")
PAGE = 1000
MARGIN = 60.0  # seconds an event is read again: longer than any commit takes to be seen


class DeadLetterReads(Protocol):
    async def events(
        self, *, since: float | None = None, message_id: int | None = None,
        kinds: list[str] | tuple[str, ...] = (), before: int | None = None, limit: int = 1000,
    ) -> list[Event]: ...  # fmt: skip

    async def message(self, message_id: int) -> MessageRecord | None: ...


class DeadSink(Protocol):
    def observe_dead(self, message_id: int, target: str, at: float) -> None: ...


@attrs.define(eq=False)
class DeadLetterFeed:
    reads: DeadLetterReads
    alerts: DeadSink
    every: float
    wall: Callable[[], float]
    _seen: dict[int, float] = attrs.Factory(dict)  # event ids of the margin taken in: their times

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._start()
        task_status.started()
        while True:
            await trio.sleep(self.every)
            try:
                await self.tick()
            except RingbearerError as exc:  # the next tick reads the margin again
                log.error("dead letters not read", extra=fields(error=str(exc)))

    async def _start(self) -> None:
        """What died before this node led is not its to alert (the last leader's, or none)."""
        for event in await self._recent():
            self._seen[event.id or 0] = event.at

    async def tick(self) -> int:
        """Take in the dead letters not taken in yet; how many."""
        found = [e for e in await self._recent() if (e.id or 0) not in self._seen]
        for event in found:
            self._seen[event.id or 0] = event.at
            record = await self.reads.message(event.message_id) if event.message_id else None
            if record is not None:
                self.alerts.observe_dead(record.id, record.target, event.at)
        horizon = self.wall() - 2 * MARGIN  # older ones are read no more: forgotten
        self._seen = {i: at for i, at in self._seen.items() if at >= horizon}
        return len(found)

    async def _recent(self) -> list[Event]:
        """The dead_lettered events of the last ``MARGIN`` seconds, oldest first."""
        since, found = self.wall() - MARGIN, []
        before: int | None = None
        while True:
            page = await self.reads.events(
                since=since, kinds=("dead_lettered",), before=before, limit=PAGE
            )
            found += page
            if len(page) < PAGE:
                break
            before = page[-1].id
        return sorted(found, key=lambda e: e.id or 0)
