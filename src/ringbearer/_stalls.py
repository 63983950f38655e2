"""The stall detector: work that cannot move, or does not, becomes an alert and a status line.

Every ``[stalls] check_seconds`` it looks at each target holding work in
the store (queued or in flight), whatever the cause of a stall may be:

* **no route**: the config in force has no such target, or none of its
  members is running (failed, stopped). Reported from the second look in a
  row that finds it, so an actor restarting is not a stall.
* **paused**: the operator holds it (the integration paused, the group
  paused, every member paused or its breaker forced open). Not a stall of
  delivery, but shown as "paused with N queued" once it has lasted
  ``after_seconds``, as a warning.
* **no progress**: work due (or in flight) and no settle of the target's
  messages for ``after_seconds`` while it had a route.

Each becomes the alert ``stalled:TARGET`` (critical; paused: warning),
cleared when the target moves again, and a line of ``status``. Targets whose
work a forced reload is dropping (see ``_strand``) are no stalls. A wedding
day's deferred bulk work is no stall either.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from ._actor import ActorState, IntegrationActor
from ._config import Config
from ._delivery import Priority
from ._dispatcher import Dispatcher
from ._duty import AlertSink, Duty
from ._fleet import Fleet
from ._logging import fields
from ._strand import Drains
from ._views import duration
from .control import _replies as r
from .control._replies import Severity
from .resilience import BreakerState
from .store import Dispatch, QueueCounts

log = logging.getLogger("ringbearer.stalls")

# An actor in these states is (or is about to be) a route; FAILED and STOPPED are not.
LIVE = frozenset({ActorState.STARTING, ActorState.RUNNING, ActorState.RESTARTING})


class StallWhy(enum.StrEnum):
    NO_ROUTE = "no_route"
    NO_PROGRESS = "no_progress"
    PAUSED = "paused"
    DROPPING = "dropping"  # a forced reload dead-letters its work as it comes due: no stall
    DUE = "due"  # work due: a stall only once it has made no progress for long enough


@attrs.frozen
class Stall:
    target: str
    why: StallWhy
    since: float  # wall clock
    queued: int
    in_flight: int
    detail: str

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.why is StallWhy.PAUSED else Severity.CRITICAL

    def summary(self, now: float) -> str:
        waiting = f"{self.queued} queued" + (
            f", {self.in_flight} in flight" if self.in_flight else ""
        )
        lasted = duration(max(0.0, now - self.since))
        match self.why:
            case StallWhy.PAUSED:
                return f"{self.target}: paused with {waiting} for {lasted} ({self.detail})"
            case StallWhy.NO_ROUTE:
                return f"{self.target}: stalled, no route for {lasted}, {waiting} ({self.detail})"
            case _:
                return (
                    f"{self.target}: stalled, no progress for {lasted}, {waiting} ({self.detail})"
                )

    def view(self) -> r.StallView:
        return r.StallView(
            self.target, self.why.value, self.since, self.queued, self.in_flight, self.detail
        )


@attrs.frozen
class _Finding:
    why: StallWhy
    detail: str


def _held(actor: IntegrationActor) -> str | None:
    """Why the operator holds ``actor`` back, if they do."""
    if actor.paused:
        return f"{actor.name} paused"
    state, forced, _ = actor.breaker.export()
    if forced and state is BreakerState.OPEN:
        return f"{actor.name} breaker forced open"
    return None


@attrs.define(eq=False)
class StallDetector:
    config: Callable[[], Config]  # the config in force
    fleet: Fleet
    dispatch: Dispatch
    progress: Mapping[str, float]  # wall time of each target's latest settle (the wake-ups')
    drains: Drains
    alerts: AlertSink
    wall: Callable[[], float]
    stalls: dict[str, Stall] = attrs.Factory(dict)  # alerted
    shown: dict[str, Stall] = attrs.Factory(dict)  # in status: the stalls, and drops under way
    _seen: dict[str, tuple[StallWhy, float]] = attrs.Factory(dict)  # what, since when
    _started: float = 0.0
    duty: Duty = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.duty = Duty("stall_detector", self.check, self.alerts)

    def views(self) -> list[r.StallView]:
        return [s.view() for _, s in sorted(self.shown.items())]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Look every ``check_seconds``, supervised: a failing look is retried with backoff."""
        self._started = self.wall()
        task_status.started()
        await self.duty.run(self.config().stalls.check_seconds)

    async def check(self) -> float:
        """Look at every target with work once; the seconds until the next look."""
        now, found = self.wall(), {}
        seen: dict[str, tuple[StallWhy, float]] = {}  # what is not seen again is forgotten
        for target, counts in list(self.dispatch.counters.by_target.items()):
            if counts.total_queued + counts.inflight == 0:
                continue
            stall = await self._look(target, counts, now, seen)
            if stall is not None:
                found[target] = stall
        self._seen = seen
        self._publish(found, now)
        return self.config().stalls.check_seconds

    async def _look(
        self, target: str, counts: QueueCounts, now: float, seen: dict[str, tuple[StallWhy, float]]
    ) -> Stall | None:
        """The target's stall, if its finding has lasted long enough (kept in ``seen``)."""
        finding = await self._finding(target, counts, now)
        if finding is None:
            return None
        before = self._seen.get(target)
        seen[target] = before if before and before[0] is finding.why else (finding.why, now)
        since, settings = seen[target][1], self.config().stalls
        why, wait = finding.why, float(settings.after_seconds)
        if why is StallWhy.NO_ROUTE:
            wait = settings.check_seconds
        elif why is StallWhy.DROPPING:
            wait = 0.0
        elif why is StallWhy.DUE:
            why, since = StallWhy.NO_PROGRESS, max(since, self.progress.get(target, self._started))
        if now - since < wait:
            return None
        return Stall(target, why, since, counts.total_queued, counts.inflight, finding.detail)

    async def _finding(self, target: str, counts: QueueCounts, now: float) -> _Finding | None:
        """What holds the target's work, if anything; ``DUE``: nothing, but it waits."""
        if self.drains.holds(target):
            return _Finding(StallWhy.DROPPING, "dead-lettered as each comes due")
        members = self.config().targets().get(target)
        if members is None:
            return _Finding(StallWhy.NO_ROUTE, "not in the config in force")
        dispatcher = self.fleet.dispatchers.get(target)
        if dispatcher is None:
            return _Finding(StallWhy.NO_ROUTE, "no member enabled")
        held = self._route(target, members, dispatcher)
        if held is not None:
            return held
        if not await self._due(target, counts, dispatcher, now):
            return None
        last = self.progress.get(target)
        detail = "no settle since the daemon started" if last is None else "work due, no settle"
        return _Finding(StallWhy.DUE, detail)

    def _route(
        self, target: str, members: Sequence[str], dispatcher: Dispatcher
    ) -> _Finding | None:
        actors = [self.fleet.actors[m] for m in members if m in self.fleet.actors]
        live = [a for a in actors if a.state in LIVE]
        if not live:
            states = ", ".join(f"{a.name} {a.state.value}" for a in actors)
            return _Finding(StallWhy.NO_ROUTE, f"no member running: {states or 'none enabled'}")
        if dispatcher.paused and target not in self.fleet.actors:
            return _Finding(StallWhy.PAUSED, "the group is paused")
        held = [_held(a) for a in live]
        if all(held):
            return _Finding(StallWhy.PAUSED, "; ".join(h for h in held if h))
        return None

    async def _due(
        self, target: str, counts: QueueCounts, dispatcher: Dispatcher, now: float
    ) -> bool:
        if counts.inflight > 0:
            return True
        if dispatcher.defer_bulk and counts.total_queued == counts.queued[Priority.BULK]:
            return False  # the wedding day's policy: bulk waits until the mode ends
        due = await self.dispatch.next_due(target)
        return due is not None and due <= now

    def _publish(self, found: dict[str, Stall], now: float) -> None:
        alerting = {t: s for t, s in found.items() if s.why is not StallWhy.DROPPING}
        for target in sorted(self.stalls.keys() - alerting.keys()):
            log.info("stall cleared", extra=fields(target=target))
            self.alerts.cleared(f"stalled:{target}")
        for target, stall in sorted(alerting.items()):
            if target not in self.stalls:
                log.warning("stall", extra=fields(target=target, why=stall.why.value))
            self.alerts.found(f"stalled:{target}", stall.severity, stall.summary(now))
        self.stalls, self.shown = alerting, found
