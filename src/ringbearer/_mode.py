"""The wedding-day mode controller: the calendar, the operator's override, the policy.

It keeps the mode current (at each local midnight, when an override ends, or
when told), and applies the mode's policy through the actors' and the
dispatchers' own methods: shorter breaker waits and more retries for the
actors, bulk deferred by the dispatchers, and released at a controlled rate
when the mode ends. During the mode, changes may be frozen (``check_freeze``).

The operator's override is kept in the store before it is answered, so a restart
keeps it; on a shared store every node follows the one kept (``follow``, at each
heartbeat), whichever node the operator told.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from ._errors import ErrorCode, RequestError
from ._fleet import Fleet
from ._journal import Journal
from ._logging import fields
from ._wakeups import Wakeups
from ._wedding import Calendar, Cause, Mode, Override, WeddingDaySettings
from .control import OverrideState
from .control import _replies as r
from .store import Dispatch, EventKind, OverrideRecord

log = logging.getLogger("ringbearer.mode")

LOOK_AT_LEAST_EVERY = 3600.0  # seconds: the calendar is re-read at least this often


class OverrideKeeper(Protocol):
    async def set_mode_override(self, override: OverrideRecord | None) -> None: ...

    async def mode_override(self) -> OverrideRecord | None: ...


@attrs.define(eq=False)
class ModeController:
    settings: WeddingDaySettings
    fleet: Fleet
    dispatch: Dispatch
    wakeups: Wakeups
    journal: Journal
    wall: Callable[[], float]
    kept: OverrideKeeper
    override: Override | None = None
    mode: Mode = Mode(False, Cause.NONE, "")
    _kick: trio.Event = attrs.Factory(trio.Event)
    _keeping: trio.Lock = attrs.Factory(trio.Lock)  # a set and a follow do not interleave
    # Whether this daemon writes the transitions' audit events: always alone; on a shared
    # store only the leader does (every node follows the mode all the same).
    announces: Callable[[], bool] = lambda: True

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.settings)

    def evaluate(self) -> Mode:
        """Bring the mode up to date with the calendar, the override and the clock."""
        until = self.override.until if self.override is not None else None
        if until is not None and self.wall() >= until:
            self.override = None  # expired: back to the calendar
        mode = self.calendar.mode_at(self.wall(), self.override)
        if mode != self.mode:
            old, self.mode = self.mode, mode
            self._changed(old, mode)
        return mode

    def _changed(self, old: Mode, new: Mode) -> None:
        log.warning(
            "wedding-day mode " + ("on" if new.on else "off"),
            extra=fields(cause=new.cause.value, detail=new.detail, was=old.describe()),
        )
        if self.announces():
            self.journal.event(
                EventKind.WEDDING_DAY_ON if new.on else EventKind.WEDDING_DAY_OFF,
                cause=new.cause.value,
                detail=new.detail,
                was=old.describe(),
            )
        self.apply(released=old.on and not new.on)

    def apply(self, *, released: bool = False) -> None:
        """Hand the mode's policy to every actor and dispatcher (new ones too, after a reload)."""
        policy = self.settings if self.mode.on else None
        for actor in self.fleet.actors.values():
            if actor.wedding != policy:
                actor.set_wedding(policy)
        for dispatcher in self.fleet.dispatchers.values():
            # A claim parked under the old rules would take any priority.
            self.dispatch.unpark_claim(dispatcher.target)
            dispatcher.follow_mode(
                defer_bulk=policy is not None and policy.defer_bulk,
                release_per_second=self.settings.release_per_second,
                released=released,
            )
        self.wakeups.everyone()

    def use(self, settings: WeddingDaySettings) -> None:
        """New settings (a reload): the new calendar applies now, and to the new parts."""
        self.settings = settings
        before = self.mode
        if self.evaluate() == before:
            self.apply()  # a changed mode has been applied already
        self._kick.set()  # the watcher waits for the new calendar's next change

    async def set_override(self, state: OverrideState, until: float | None) -> r.ModeReply:
        """``on`` / ``off`` (until a wall time, or until set to ``auto``), or ``auto``.

        Kept in the store first: an override the store could not keep is not applied."""
        override = (
            None if state is OverrideState.AUTO else Override(state is OverrideState.ON, until)
        )
        if until is not None:
            self._check_until(until, override)
        record = None if override is None else OverrideRecord(override.on, until, self.wall())
        async with self._keeping:
            await self.kept.set_mode_override(record)
            self.override = override
        self.journal.event(
            EventKind.WEDDING_DAY_OVERRIDE, state=state.value, until=until, by="operator"
        )
        self.evaluate()
        self._kick.set()
        return self.reply()

    async def restore(self) -> None:
        """The override kept at the last stop, unless it has ended since."""
        self.override = self._live(await self.kept.mode_override())

    async def follow(self) -> bool:
        """Take up the override kept in the store, set on another node (whether it changed)."""
        async with self._keeping:
            override = self._live(await self.kept.mode_override())
            if override == self.override:
                return False
            self.override = override
        log.warning(
            "wedding-day override taken from the store",
            extra=fields(
                override="auto" if override is None else ("on" if override.on else "off"),
                until=None if override is None else override.until,
            ),
        )
        self.evaluate()
        self._kick.set()
        return True

    def _live(self, record: OverrideRecord | None) -> Override | None:
        if record is None or (record.until is not None and record.until <= self.wall()):
            return None  # ended: the calendar rules, as ``evaluate`` would decide
        return Override(record.on, record.until)

    def _check_until(self, until: float, override: Override | None) -> None:
        """Before anything is stored: the time is ahead, and the calendar can show and use it."""
        if not math.isfinite(until) or until <= self.wall():
            raise RequestError(ErrorCode.BAD_ARGS, "until must be a time in the future")
        try:
            dt.datetime.fromtimestamp(until, self.calendar.zone)
            # What the watcher and status will do with it, tried first.
            self.calendar.mode_at(self.wall(), override)
            self.calendar.next_change(self.wall(), override)
        except (OverflowError, OSError, ValueError):
            raise RequestError(
                ErrorCode.BAD_ARGS, f"until {until!r} is not a time this calendar can show"
            ) from None

    def reply(self) -> r.ModeReply:
        override = self.override
        return r.ModeReply(
            wedding_day=self.mode.on,
            cause=self.mode.cause.value,
            detail=self.mode.detail,
            override=None if override is None else r.OverrideView(override.on, override.until),
        )

    def check_freeze(self, command: str, force: bool) -> None:
        """The wedding-day change freeze: changes need ``force``, and are logged as forced."""
        if not (self.mode.on and self.settings.freeze):
            return
        if not force:
            raise RequestError(
                ErrorCode.FROZEN,
                f"wedding-day change freeze (mode {self.mode.describe()}): {command} needs --force",
            )
        log.warning("forced during the wedding-day freeze", extra=fields(command=command))
        self.journal.event(EventKind.FORCED, command=command, mode=self.mode.describe())

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the mode current: at each local midnight, an override's end, or when told."""
        self.evaluate()
        task_status.started()
        while True:
            wall = self.wall()
            wait = self.calendar.next_change(wall, self.override) - wall
            with trio.move_on_after(max(0.0, min(wait, LOOK_AT_LEAST_EVERY))):
                await self._kick.wait()
            self._kick = trio.Event()
            self.evaluate()
