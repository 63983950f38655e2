"""Dead letters of every node, for the leader's alerts.

Alone, the daemon counts the dead letters its own lanes settle. With several nodes on
one PostgreSQL any node's lane may dead-letter a message, and only the leader raises
alerts: so the leader reads the ``dead_lettered`` events of all nodes from the shared
audit log, every alert tick, from where it took the lead on, and the nodes no longer
count their own (which would count the leader's twice).
"""

from __future__ import annotations

import logging
from typing import Protocol

import attrs
import trio

from ._errors import RingbearerError
from ._logging import fields
from .store import Event, MessageRecord

log = logging.getLogger("ringbearer.alerts")
PAGE = 1000


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
    _seen: int | None = None  # the newest dead_lettered event id taken in

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._start()
        task_status.started()
        while True:
            await trio.sleep(self.every)
            try:
                await self.tick()
            except RingbearerError as exc:  # the next tick reads on from the same place
                log.error("dead letters not read", extra=fields(error=str(exc)))

    async def _start(self) -> None:
        newest = await self.reads.events(kinds=("dead_lettered",), limit=1)
        self._seen = newest[0].id if newest else 0

    async def tick(self) -> int:
        """Take in the dead letters since the last tick; how many."""
        found = await self._newer()
        for event in found:
            record = await self.reads.message(event.message_id) if event.message_id else None
            if record is not None:
                self.alerts.observe_dead(record.id, record.target, event.at)
        return len(found)

    async def _newer(self) -> list[Event]:
        """The dead_lettered events after ``_seen``, oldest first."""
        newer: list[Event] = []
        before: int | None = None
        while True:
            page = await self.reads.events(kinds=("dead_lettered",), before=before, limit=PAGE)
            fresh = [e for e in page if e.id is not None and e.id > (self._seen or 0)]
            newer += fresh
            if len(fresh) < len(page) or len(page) < PAGE:
                break
            before = page[-1].id
        newer.sort(key=lambda e: e.id or 0)
        if newer:
            self._seen = newer[-1].id
        return newer
