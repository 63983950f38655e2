"""Growth events in: pseudonymised, sealed where they must be read again, kept append-only,
then counted by the cohort model and handed to whoever watches (rules, experiments,
forwarding).

A person in an event is kept by their subject id (``Sealer.name``): an invitee, a
sign-up's address, a vendor's address. A new sign-up's or vendor's key is made first, so
the address can be read again from the vault while the person is not erased (a referral
ask is mailed to it); a vendor's name is sealed under the vendor's key. An event about an
erased person is refused (``erased``), on its own.

At start :meth:`Recorder.replay` reads every kept event back into the model, by id.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from .._errors import ErrorCode
from .._logging import fields
from ..store import GrowthRow
from ._cohorts import Growth
from ._events import (
    Channel,
    GrowthEvent,
    InviteAccepted,
    InviteSent,
    PersonalField,
    Role,
    Signup,
    VendorBooked,
    event_json,
    personal_fields,
)
from ._sealing import Sealer

REPLAY_BATCH = 20_000
log = logging.getLogger("ringbearer.growth")


class GrowthRows(Protocol):
    async def append_growth(
        self, events: Sequence[tuple[str, float, Mapping[str, Any]]]
    ) -> list[int]: ...

    async def growth_rows(self, *, after: int = 0, limit: int = 10_000) -> list[GrowthRow]: ...

    async def growth_count(self) -> int: ...


@attrs.frozen
class Recorded:
    """One event kept: as the model counts it (people by subject id), and the personal
    values it came with (this batch only: never kept in clear)."""

    id: int
    event: GrowthEvent
    clear: Mapping[str, str] = attrs.field(repr=False, factory=dict)


@attrs.frozen
class Refusal:
    index: int
    code: ErrorCode
    reason: str


Observer = Callable[[Sequence[Recorded]], Awaitable[None]]


@attrs.define(eq=False)
class Recorder:
    store: GrowthRows
    sealer: Sealer
    model: Growth
    observers: list[Observer] = attrs.Factory(list)
    kept: int = 0  # events kept, replayed ones included
    total: int = 0  # events kept before this start, to read back
    read: int = 0  # of those, read back so far
    ready: trio.Event = attrs.Factory(trio.Event)  # set once they are all read back
    _live: set[int] = attrs.Factory(set)  # kept during the replay, counted already

    async def record(self, events: Sequence[GrowthEvent]) -> tuple[list[Recorded], list[Refusal]]:
        """Keep ``events`` (in one transaction), count them, tell the observers."""
        going, refused = self._screened(events)
        if not going:
            return [], refused
        await self.sealer.ensure([i for e, _ in going for i in _keyed(e)])
        named = [self._named(e) for e, _ in going]
        bodies = [await self._body(e) for e in named]
        ids = await self.store.append_growth(
            [(e.KIND, e.at, b) for e, b in zip(named, bodies, strict=True)]
        )
        if not self.ready.is_set():
            self._live.update(ids)
        recorded = [
            Recorded(row, event, {f.name: f.value for f in personal})
            for row, event, (_, personal) in zip(ids, named, going, strict=True)
        ]
        self._count(recorded)
        for observer in self.observers:
            try:
                await observer(recorded)
            except Exception as exc:  # the events are kept; one watcher's failure is its own
                log.error("a growth observer failed", extra=fields(error=repr(exc)))
        return recorded, refused

    async def replay(self) -> int:
        """Read every kept event into the model (events recorded meanwhile are counted as
        they come: the model takes events in any order); how many were read."""
        self.total = await self.store.growth_count()
        after = 0
        while rows := await self.store.growth_rows(after=after, limit=REPLAY_BATCH):
            for row in rows:
                if row.id not in self._live:
                    self.model.apply(await self._stored(row))
                    self.read += 1
            after = rows[-1].id
        self.kept += self.read
        self._live.clear()
        self.ready.set()
        return self.read

    def _count(self, recorded: Sequence[Recorded]) -> None:
        for one in recorded:
            self.model.apply(one.event)
        self.kept += len(recorded)

    def _screened(
        self, events: Sequence[GrowthEvent]
    ) -> tuple[list[tuple[GrowthEvent, tuple[PersonalField, ...]]], list[Refusal]]:
        """The events to keep, with their personal values; those about an erased subject."""
        going, refused = [], []
        for index, event in enumerate(events):
            personal = personal_fields(event)
            name, erased = self.sealer.name, self.sealer.erased
            found = next((f.name for f in personal if erased(name(f.about))), None)
            if found is None:
                going.append((event, personal))
            else:
                why = f"events[{index}].{found}: names an erased subject"
                refused.append(Refusal(index, ErrorCode.ERASED, why))
        return going, refused

    def _named(self, event: GrowthEvent) -> GrowthEvent:
        """``event`` with its people by subject id (a vendor's name stays: it is no one's id)."""
        name = self.sealer.name
        match event:  # built directly, not by attrs.evolve: this runs for every event
            case Signup(email=str(email)):
                return Signup(
                    event.user, event.at, event.role, name(email), event.vendor_type,
                    event.wedding_date,
                )  # fmt: skip
            case InviteSent():
                return InviteSent(
                    event.invite, event.inviter, name(event.invitee), event.channel, event.at
                )
            case VendorBooked():
                return VendorBooked(
                    event.couple, name(event.vendor_email), event.vendor_name,
                    event.vendor_type, event.at,
                )  # fmt: skip
        return event

    async def _body(self, named: GrowthEvent) -> dict[str, Any]:
        """What the store keeps of an event whose people are already named by id."""
        body = event_json(named)
        del body["event"], body["at"]  # kept in their own columns
        if isinstance(named, VendorBooked):
            body["vendor_name"] = await self.sealer.seal(named.vendor_email, named.vendor_name)
        return body

    async def _stored(self, row: GrowthRow) -> GrowthEvent:
        body = dict(row.body)
        if row.kind == VendorBooked.KIND:
            body["vendor_name"] = await self.sealer.open(body["vendor_name"]) or ERASED_NAME
        return stored_event(row.kind, row.at, body)


ERASED_NAME = "(erased)"


def _keyed(event: GrowthEvent) -> list[str]:
    """Whose keys an event needs: a sign-up's address, a vendor's (an invitee: none)."""
    match event:
        case Signup(email=str(email)):
            return [email]
        case VendorBooked():
            return [event.vendor_email]
    return []


def stored_event(kind: str, at: float, body: Mapping[str, Any]) -> GrowthEvent:
    """The event a kept row holds (its people by subject id), as :meth:`Recorder._body` wrote it."""
    if kind == Signup.KIND:
        wedding = body.get("wedding_date")
        return Signup(
            body["user"], at, Role(body["role"]), body.get("email"), body.get("vendor_type"),
            dt.date.fromisoformat(wedding) if wedding else None,
        )  # fmt: skip
    if kind == InviteSent.KIND:
        return InviteSent(
            body["invite"], body["inviter"], body["invitee"], Channel(body["channel"]), at
        )
    if kind == InviteAccepted.KIND:
        return InviteAccepted(body["invite"], body["user"], at)
    if kind == VendorBooked.KIND:
        return VendorBooked(
            body["couple"], body["vendor_email"], body["vendor_name"], body["vendor_type"], at
        )
    raise ValueError(f"a kept growth event of unknown kind {kind!r}")
