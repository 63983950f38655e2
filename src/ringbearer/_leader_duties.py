"""The duties that must run once across nodes, run only while this node leads.

On the embedded SQLite store the daemon is alone: it runs them all the time. On a
shared PostgreSQL the nodes elect a leader for the duty set ``duties`` (a row with a
term and an expiry: ``store/_pg/_nodes.Leadership``); the leader runs them and renews
its lead every third of a lease, and a node that finds its lead lost (it paused past
the expiry and another took over) stops them at once. A node taking the lead first
takes up the open alerts from the store where the last leader left them (escalation
level, channels already paged), so an alert is not paged twice.

The duties: alerting and escalation, the preflight schedule, the reputation guard,
erasure jobs, retention and key rotation, expiring tokens' refreshes (a refresh token is
good once: two nodes refreshing would revoke it), the growth sweep.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import trio
from prometheus_client import CollectorRegistry, Gauge

from ._errors import RingbearerError
from ._logging import fields
from .store._pg._nodes import Lead

log = logging.getLogger("ringbearer.leader")
DUTY = "duties"
Starter = Callable[[trio.Nursery], Awaitable[Any]]


class Leading(Protocol):
    async def acquire(self) -> Lead | None: ...

    async def renew(self, lead: Lead) -> Lead | None: ...

    async def resign(self, lead: Lead) -> None: ...


@attrs.define(eq=False)
class LeaderDuties:
    """Runs ``starters`` while this node leads (always, with no ``leading``)."""

    starters: Sequence[Starter]
    leading: Leading | None
    lease_seconds: float
    on_lead: Callable[[], Awaitable[None]]  # before the duties start: take up open alerts
    gauge: Gauge | None = None
    leads: bool = False
    _held: Lead | None = None

    @staticmethod
    def gauge_on(registry: CollectorRegistry) -> Gauge:
        return Gauge("ringbearer_leader", "1 while this node runs the once-only duties",
                     registry=registry)  # fmt: skip

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.leading is None:
            async with trio.open_nursery() as duties:
                await self._start(duties)
                task_status.started()
            return
        task_status.started()
        try:
            while True:
                lead = await self._try(self.leading.acquire)
                if lead is not None:
                    await self._lead(self.leading, lead)
                await trio.sleep(self.lease_seconds / 3)
        finally:
            if self._held is not None:  # a clean stop: another node may lead at once
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._try(functools.partial(_resign, self.leading, self._held))

    async def _lead(self, leading: Leading, lead: Lead) -> None:
        log.warning("leading the once-only duties", extra=fields(term=lead.term))
        self._held = lead
        await self.on_lead()
        async with trio.open_nursery() as duties:
            await self._start(duties)
            while self._held is not None:
                await trio.sleep(self.lease_seconds / 3)
                self._held = await self._try(functools.partial(leading.renew, self._held))
            duties.cancel_scope.cancel()
        self._set(False)
        log.warning("lost the lead: the once-only duties stopped", extra=fields(term=lead.term))

    async def _start(self, duties: trio.Nursery) -> None:
        for start in self.starters:
            await start(duties)
        self._set(True)

    async def _try(self, step: Callable[[], Awaitable[Lead | None]]) -> Lead | None:
        try:
            return await step()
        except RingbearerError as exc:  # the database is unreachable: not leading
            log.error("leadership step failed", extra=fields(error=str(exc)))
            return None

    def _set(self, leads: bool) -> None:
        self.leads = leads
        if self.gauge is not None:
            self.gauge.set(1 if leads else 0)


async def _resign(leading: Leading, lead: Lead) -> None:
    await leading.resign(lead)
