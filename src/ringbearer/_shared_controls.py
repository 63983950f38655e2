"""What one node sets, every node of a shared store follows: pauses of integrations and
groups, the reputation guard's holds on sending domains, and the wedding-day override.

Alone, the daemon's memory and its store agree, since every change is made in it. With
several nodes on one PostgreSQL an operator tells one node, and only the leader's guard
pauses domains; so at each heartbeat every node reads these from the store and applies
what changed (a node told applies at once, the others within a heartbeat). A change
being made here is never undone by a read taken just before it was kept: a follow of
pauses that overlaps one leaves it to the next beat, and the override and the domain
holds are read and applied under the lock their own changes take.
"""

from __future__ import annotations

import logging
from typing import Protocol

import attrs

from ._fleet import Fleet
from ._logging import fields
from ._wakeups import Wakeups
from .store import Dispatch

log = logging.getLogger("ringbearer.nodes")


class PausesKept(Protocol):
    async def paused(self) -> set[str]: ...


class GuardFollowing(Protocol):
    async def follow(self) -> list[str]: ...


class ModeFollowing(Protocol):
    async def follow(self) -> bool: ...


@attrs.define(eq=False)
class SharedControls:
    store: PausesKept
    fleet: Fleet
    dispatch: Dispatch
    wakeups: Wakeups
    guard: GuardFollowing
    mode: ModeFollowing

    async def follow(self) -> None:
        """Apply the pauses, holds and override kept in the store, where they differ."""
        changed = await self._follow_pauses()
        for name, paused in changed.items():
            log.warning(
                "paused from the store" if paused else "resumed from the store",
                extra=fields(target=name),
            )
        domains = await self.guard.follow()
        if domains:
            log.warning("sending domains' holds taken from the store",
                        extra=fields(domains=",".join(domains)))  # fmt: skip
        if await self.mode.follow() or changed or domains:
            self.wakeups.everyone()

    async def _follow_pauses(self) -> dict[str, bool]:
        """The store's pauses applied; none while a change made here overlaps the read."""
        fleet, seen = self.fleet, self.fleet.pause_changes
        kept = await self.store.paused()
        if fleet.pauses_keeping or fleet.pause_changes != seen:
            return {}  # the read may predate that change: the next beat reads it kept
        changed = fleet.follow_pauses(kept)
        for name in changed:  # a parked claim would serve the next submit regardless
            for dispatcher in fleet.touching(name):
                self.dispatch.unpark_claim(dispatcher.target)
        return changed
