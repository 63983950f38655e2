"""The journal: what happens to the daemon, as a log line and an audit event.

Parts report what happened here (a breaker moved, the supervisor restarted an
actor, a control peer was refused) and the journal writes both records, so
each part needs neither the logger's fields nor the store's audit role.

Refusals of control peers come in floods (one peer can open a thousand
connections), so they are counted: the first of a reason is reported at
once, the rest together with their count at most once each
``REFUSALS_EVERY_SECONDS``; never a line and an event per refusal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import attrs
import trio

from ._logging import fields
from ._supervisor import SupervisorEvent, SupervisorEventKind
from .control import Refusal
from .resilience import BreakerTransition, HealthState
from .store import AuditLog, Event, EventKind

log = logging.getLogger("ringbearer.daemon")

REFUSALS_EVERY_SECONDS = 10.0
_UIDS_SHOWN = 10


@attrs.define
class _Tally:
    """Refusals of one reason not reported yet."""

    due: float = -math.inf  # the earliest the next report may go out
    count: int = 0
    last: Refusal | None = None
    uids: set[int] = attrs.Factory(set)

    def add(self, refusal: Refusal) -> None:
        self.count += 1
        self.last = refusal
        if len(self.uids) < _UIDS_SHOWN:  # a few to name; the count says how many in all
            self.uids.add(refusal.peer.uid)


@attrs.frozen
class Journal:
    store: AuditLog
    wall: Callable[[], float]
    clock: Callable[[], float] = trio.current_time  # paces the refusal counts
    _refusals: dict[str, _Tally] = attrs.field(init=False, factory=dict, eq=False)

    def event(self, kind: EventKind, integration: str | None = None, **detail: object) -> None:
        """Append an audit event (committed with the store's next batch)."""
        self.store.append_event(
            Event(kind=kind.value, at=self.wall(), integration=integration, detail=detail or None)
        )

    def breaker_changed(self, name: str, t: BreakerTransition) -> None:
        log.warning(
            "breaker changed",
            extra=fields(integration=name, old=t.old.value, new=t.new.value, reason=t.reason),
        )
        self.event(
            EventKind.BREAKER_CHANGED, name, old=t.old.value, new=t.new.value, reason=t.reason
        )

    def health_changed(self, name: str, old: HealthState, new: HealthState, reason: str) -> None:
        log.warning(
            "health changed",
            extra=fields(integration=name, old=old.value, new=new.value, reason=reason),
        )
        self.event(EventKind.HEALTH_CHANGED, name, old=old.value, new=new.value, reason=reason)

    def supervisor_event(self, event: SupervisorEvent) -> None:
        restarted = event.kind is SupervisorEventKind.RESTARTED
        log.log(
            logging.INFO if restarted else logging.ERROR,
            event.kind.value.replace("_", " "),
            extra=fields(
                integration=event.integration, restarts=event.restarts, detail=event.detail
            ),
        )
        self.event(
            EventKind(event.kind.value),
            event.integration,
            detail=event.detail,
            restarts=event.restarts,
        )

    def refused(self, refusal: Refusal) -> None:
        """A control connection or request refused: credentials, limits or a stalled peer."""
        tally = self._refusals.setdefault(refusal.reason.value, _Tally())
        tally.add(refusal)
        self._report(tally, self.clock())

    def report_refusals(self, *, force: bool = False) -> None:
        """Report the counts whose interval has passed (``force``: every count)."""
        now = self.clock()
        for reason, tally in list(self._refusals.items()):
            if tally.count:
                self._report(tally, math.inf if force else now)
            elif now >= tally.due:
                del self._refusals[reason]  # quiet for an interval: the next is told at once

    async def report_refusals_forever(self) -> None:
        """Report each refusal count once its interval has passed; what is left when cancelled."""
        try:
            while True:
                await trio.sleep(REFUSALS_EVERY_SECONDS / 10)  # a count goes out at most 1 s late
                self.report_refusals()
        finally:
            self.report_refusals(force=True)

    def _report(self, tally: _Tally, now: float) -> None:
        last = tally.last
        if last is None or not tally.count or now < tally.due:
            return
        peer, reason, uids = last.peer, last.reason.value, sorted(tally.uids)[:_UIDS_SHOWN]
        log.warning(
            "control refused",
            extra=fields(
                reason=reason,
                count=tally.count,
                refused=last.what,
                peer=peer.describe(),
                uid=peer.uid,
                uids=",".join(map(str, uids)),
                detail=last.message,
            ),
        )
        self.event(
            EventKind.CONTROL_REFUSED,
            reason=reason,
            count=tally.count,
            uid=peer.uid,
            uids=uids,
            pid=peer.pid,
            refused=last.what,
        )
        tally.due = self.clock() + REFUSALS_EVERY_SECONDS
        tally.count = 0
        tally.uids.clear()
