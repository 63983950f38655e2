"""Operating the integrations: pause, resume, breakers, the mode, reload, alerts, waiting."""

from __future__ import annotations

import logging

import attrs

from .._alerting import AlertManager
from .._errors import ErrorCode, RequestError
from .._fleet import Fleet
from .._journal import Journal
from .._logging import fields
from .._mode import ModeController
from .._preflight_duty import PreflightDuty
from .._reload import Reloader
from .._wakeups import Wakeups
from ..control import (
    Alerts,
    AlertsAck,
    Breaker,
    BreakerAction,
    InjectCrash,
    Pause,
    Preflight,
    Reload,
    Resume,
    Wait,
    WeddingDay,
)
from ..control import _replies as r
from ..resilience import BreakerState
from ..store import Controls, Dispatch, EventKind

log = logging.getLogger("ringbearer.control")

MAX_WAIT_SECONDS = 3600.0
MAX_PREFLIGHT_TIMEOUT = 300.0


@attrs.frozen
class PauseHandler:
    """Pause or resume an integration (its actor) or a group (its dispatcher), durably."""

    fleet: Fleet
    mode: ModeController
    controls: Controls
    dispatch: Dispatch
    wakeups: Wakeups
    journal: Journal

    async def __call__(self, request: Pause | Resume) -> r.PauseReply:
        name, paused = request.name, isinstance(request, Pause)
        if name not in self.fleet.actors and name not in self.fleet.dispatchers:
            raise RequestError(ErrorCode.UNKNOWN_TARGET, f"no integration or group named {name!r}")
        self.mode.check_freeze("pause" if paused else "resume", request.force)
        self.fleet.set_paused(name, paused)
        # A claim parked before the pause must not be served by the next submit:
        # what it took would go out ahead of older, more urgent work on resume.
        for dispatcher in self.fleet.touching(name):
            self.dispatch.unpark_claim(dispatcher.target)
        with self.fleet.keeping_pause():  # a follow overlapping this leaves it be
            await self.controls.set_paused(name, paused)
        self.journal.event(EventKind.PAUSED if paused else EventKind.RESUMED, name, by="operator")
        log.info("paused" if paused else "resumed", extra=fields(target=name))
        self.wakeups.everyone()
        return r.PauseReply(name, paused)


@attrs.frozen
class BreakerHandler:
    fleet: Fleet
    mode: ModeController
    controls: Controls
    wakeups: Wakeups
    journal: Journal

    async def __call__(self, request: Breaker) -> r.BreakerReply:
        name, action = request.name, request.action
        actor = self.fleet.actor(name)
        self.mode.check_freeze(f"breaker {action.value}", request.force)
        match action:
            case BreakerAction.OPEN:
                actor.breaker.force_open("operator")
            case BreakerAction.CLOSE:
                actor.breaker.force_close("operator")
            case BreakerAction.RESET:
                actor.breaker.reset()
        self.journal.event(EventKind.BREAKER_COMMAND, name, action=action.value, by="operator")
        record = self.fleet.breaker_record(name, self.journal.wall())
        self.controls.save_breaker(record)
        self.wakeups.slot_freed(name)
        return r.BreakerReply(name, record.state, record.forced)


@attrs.frozen
class CrashHandler:
    """Sandbox only: crash an actor at its next attempt, to exercise supervision."""

    fleet: Fleet
    journal: Journal
    allowed: bool

    async def __call__(self, request: InjectCrash) -> r.CrashReply:
        if not self.allowed:
            raise RequestError(ErrorCode.FORBIDDEN, "crash injection works only in the sandbox")
        self.fleet.actor(request.name).request_crash()
        self.journal.event(EventKind.CRASH_INJECTED, request.name, by="operator")
        return r.CrashReply(request.name, True)


@attrs.frozen
class WeddingDayHandler:
    mode: ModeController

    async def __call__(self, request: WeddingDay) -> r.ModeReply:
        if request.state is None:
            if request.until is not None:
                raise RequestError(ErrorCode.BAD_ARGS, "until goes with on or off")
            return self.mode.reply()
        return await self.mode.set_override(request.state, request.until)


@attrs.frozen
class ReloadHandler:
    reloader: Reloader

    async def __call__(self, request: Reload) -> r.ReloadReply:
        return await self.reloader.reload_file(force=request.force, drop_queued=request.drop_queued)


@attrs.frozen
class AlertsHandler:
    alerts: AlertManager

    async def __call__(self, request: Alerts) -> r.AlertsReply:
        return r.AlertsReply(self.alerts.views())


@attrs.frozen
class AckHandler:
    alerts: AlertManager

    async def __call__(self, request: AlertsAck) -> r.AlertView:
        try:
            return await self.alerts.ack(request.id)
        except KeyError:
            raise RequestError(ErrorCode.NOT_FOUND, f"no open alert {request.id}") from None


@attrs.frozen
class PreflightHandler:
    """Check the daemon's own providers (or its sandbox) now, as the schedule does."""

    duty: PreflightDuty

    async def __call__(self, request: Preflight) -> r.PreflightReply:
        if not 0 < request.timeout <= MAX_PREFLIGHT_TIMEOUT:
            raise RequestError(
                ErrorCode.BAD_ARGS, f"timeout must be above 0 and at most {MAX_PREFLIGHT_TIMEOUT:g}"
            )
        return (await self.duty.check(request.timeout)).reply()


@attrs.frozen
class WaitHandler:
    """Wait until nothing is queued or in flight, or until a breaker reaches a state."""

    fleet: Fleet
    wakeups: Wakeups

    async def __call__(self, request: Wait) -> r.WaitReply:
        seconds = max(0.0, min(request.timeout, MAX_WAIT_SECONDS))
        if request.breaker is None:
            idle = await self.wakeups.wait_until(self.wakeups.is_idle, seconds)
            return r.WaitReply(reached=idle, idle=idle, queued=self.wakeups.queued_total())
        name, wanted = _breaker_condition(request.breaker)
        actor = self.fleet.actor(name)
        reached = await self.wakeups.wait_until(lambda: actor.breaker.state is wanted, seconds)
        return r.WaitReply(
            reached=reached,
            idle=self.wakeups.is_idle(),
            queued=self.wakeups.queued_total(),
            name=name,
            breaker=actor.breaker.state.value,
        )


def _breaker_condition(condition: str) -> tuple[str, BreakerState]:
    name, sep, wanted = condition.partition("=")
    states = {s.value: s for s in BreakerState}
    if not sep or wanted not in states:
        raise RequestError(
            ErrorCode.BAD_ARGS,
            f"breaker condition is NAME=STATE with STATE one of "
            f"{', '.join(sorted(states))}, not {condition!r}",
        )
    return name, states[wanted]
