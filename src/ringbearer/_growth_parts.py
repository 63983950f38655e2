"""The growth parts, wired: the recorder and its model, experiments, the opportunity
rules, forwarding, and the hooks submit calls (a message's experiment, an invite email).

Built before submit (the recorder, the model, the experiments); the rules and the
forwarding, which submit messages themselves, are added once submit exists (:meth:`wire`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import trio
from prometheus_client import CollectorRegistry

from ._config import Config
from ._errors import ErrorCode, RequestError
from ._logging import fields
from .control import MessageIn
from .growth._cohorts import Growth
from .growth._events import InviteAccepted, InviteSent, Signup, parse_event
from .growth._forwarding import Forwarder
from .growth._lab import Draft, Lab, LabMetrics
from .growth._metrics import watch_growth
from .growth._opportunities import parse_settings
from .growth._recording import Recorded, Recorder
from .growth._scout import Scout, Submitter
from .growth._sealing import Sealer
from .store import Accepted, AuditLog, Store

log = logging.getLogger("ringbearer.growth")
WallClock = Callable[[], float]
_FORWARD_KINDS = {"mixpanel": "mixpanel", "amplitude": "amplitude"}


@attrs.define(eq=False)
class GrowthSide:
    config: Config
    model: Growth
    recorder: Recorder
    lab: Lab
    sealer: Sealer
    wall: WallClock
    scout: Scout | None = None

    @classmethod
    async def load(
        cls, config: Config, store: Store, sealer: Sealer, wall: WallClock,
        registry: CollectorRegistry,
    ) -> GrowthSide:  # fmt: skip
        settings = config.growth
        zone = ZoneInfo(config.wedding_day.timezone)
        model = Growth(zone, window_days=settings.window_days)
        recorder = Recorder(store, sealer, model, total=await store.growth_count())
        lab = Lab(store, sealer, wall, LabMetrics.on(registry))
        await lab.load(settings.experiments)
        watch_growth(registry, model, recorder.ready.is_set)
        side = cls(config, model, recorder, lab, sealer, wall)
        recorder.observers.append(side._conversions)
        return side

    def wire(self, submit: Submitter, audit: AuditLog) -> None:
        """The parts that submit messages: the opportunity rules, forwarding."""
        settings, zone = self.config.growth, self.model.zone
        self.scout = Scout(
            parse_settings(settings.opportunities), self.model, self.sealer, submit, audit,
            zone, self.wall,
        )  # fmt: skip
        self.recorder.observers.append(self.scout.recorded)
        targets = {t: self._kind(t) for t in settings.forward}
        if targets:
            self.recorder.observers.append(Forwarder(targets, submit).recorded)

    def _kind(self, target: str) -> str:
        members = self.config.targets().get(target, ())
        kinds = {self.config.integrations[m].kind for m in members}
        return "amplitude" if kinds <= {"amplitude"} else "mixpanel"

    async def run(self, nursery: trio.Nursery) -> None:
        """This node's duties: exposures, the growth events read back (in the background:
        the daemon is ready before)."""
        await nursery.start(self.lab.run)
        nursery.start_soon(self._read_back)

    async def run_sweep(self, nursery: trio.Nursery) -> None:
        """The duty that runs once across nodes: the opportunity rules' sweep (bookings
        recorded before the events are read back wait for them)."""
        if self.scout is not None:
            await nursery.start(self.scout.run, self.recorder.ready)

    async def _read_back(self) -> None:
        began = trio.current_time()
        read = await self.recorder.replay()
        took = round(trio.current_time() - began, 3)
        log.info("growth events read back", extra=fields(events=read, seconds=took))

    def loading(self) -> None:
        """BUSY while the events kept before this start are still being read back."""
        recorder = self.recorder
        if not recorder.ready.is_set():
            raise RequestError(
                ErrorCode.BUSY,
                f"the growth figures are being read back ({recorder.read:,} of"
                f" {recorder.total:,} events); ask again in a moment",
            )

    # -- what submit calls -------------------------------------------------------------------

    async def vary(self, where: str, message: MessageIn, family: str) -> tuple[MessageIn, Any]:
        """The message as its experiment's variant makes it (and the exposure to keep)."""
        _check_invite(where, message, family)
        return await self.lab.assign(where, message, family)

    async def accepted(self, items: Sequence[tuple[MessageIn, Any, Accepted]]) -> None:
        """Messages just accepted: their exposures kept, their invites recorded as sent."""
        fresh = [(m, d, a) for m, d, a in items if not a.duplicate]
        drafts = [(d, a.id) for _, d, a in fresh if isinstance(d, Draft)]
        if drafts:
            await self.lab.accepted(drafts)
        invites = [_invite_sent(m, self.wall()) for m, _, _ in fresh if m.invite is not None]
        if invites:
            await self.recorder.record(invites)

    async def _conversions(self, batch: Sequence[Recorded]) -> None:
        """A recorder's observer: sign-ups and acceptances naming exposed units."""
        signups = [e.email for e in (o.event for o in batch) if isinstance(e, Signup) and e.email]
        await self.lab.growth_units("signup", signups)
        invitees = [
            self.model.invitee_of(o.event.invite)
            for o in batch
            if isinstance(o.event, InviteAccepted)
        ]
        await self.lab.growth_units("invite_accepted", [i for i in invitees if i is not None])


def _check_invite(where: str, message: MessageIn, family: str) -> None:
    if message.invite is None and message.inviter is None:
        return
    if message.invite is None or message.inviter is None:
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}: invite and inviter go together")
    if family != "email" or not isinstance(message.payload.get("to"), str):
        raise RequestError(
            ErrorCode.BAD_ARGS, f"{where}.invite: an invite is an email to one recipient"
        )
    try:
        _invite_sent(message, 0.0)
    except ValueError as exc:
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}.invite: {exc}") from None


def _invite_sent(message: MessageIn, at: float) -> InviteSent:
    """The invite_sent an invite email counts as (ValueError naming a field at fault)."""
    event = parse_event({
        "event": "invite_sent", "invite": message.invite, "inviter": message.inviter,
        "invitee": message.payload.get("to"), "channel": "email", "at": at,
    })  # fmt: skip
    assert isinstance(event, InviteSent)
    return event
