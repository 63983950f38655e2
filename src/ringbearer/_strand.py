"""Stranded work: queued or in flight for a target the config in force has no route to.

A reload that would strand work (it removes or disables an integration, or
removes a group, that still holds some) is refused with ``would_strand``,
naming each target and its count, unless the operator gives
``--drop-queued``. Then the work of every target without a route becomes
dead letters with the reason, replayable once a route exists again
(``ringbearer dead-letters replay --all --target NAME``). What is due is
dead-lettered during the reload; what waits for a retry later is left to
:class:`Drains`, which dead-letters it as it comes due, and stops should a
later reload give the target a route again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

import attrs

from ._duty import AlertSink, Duty
from ._logging import fields
from .store import Claimed, Counters, Dispatch, Settle, SettleKind, Settling

log = logging.getLogger("ringbearer.strand")

CHUNK = 256  # messages claimed and dead-lettered at a time
RECHECK_SECONDS = 30.0  # a drain looks again at least this often (work may still be in flight)
MIN_WAIT_SECONDS = 1.0


class DropStore(Dispatch, Settling, Protocol):
    """What dropping needs: claims of a target's due work, and settles."""


def work(counters: Counters, target: str) -> tuple[int, int]:
    """``target``'s messages queued, and in flight."""
    counts = counters.by_target.get(target)
    return (0, 0) if counts is None else (counts.total_queued, counts.inflight)


def with_work(counters: Counters, targets: Collection[str]) -> dict[str, tuple[int, int]]:
    """Those of ``targets`` that hold work: queued and in flight, by target."""
    found = {t: work(counters, t) for t in sorted(targets)}
    return {t: counts for t, counts in found.items() if sum(counts) > 0}


def unrouted(counters: Counters, routes: Collection[str]) -> dict[str, tuple[int, int]]:
    """Targets holding work that none of ``routes`` serves."""
    return with_work(counters, [t for t in list(counters.by_target) if t not in routes])


def describe(stranded: Mapping[str, tuple[int, int]]) -> str:
    """``beta (5 queued, 1 in flight), news (2 queued)``."""
    parts = []
    for target, (queued, in_flight) in stranded.items():
        counts = [f"{n} {what}" for n, what in ((queued, "queued"), (in_flight, "in flight")) if n]
        parts.append(f"{target} ({', '.join(counts)})")
    return ", ".join(parts)


def refusal(stranded: Mapping[str, tuple[int, int]]) -> str:
    return (
        f"reload refused: it would strand work with no route: {describe(stranded)}. "
        "Let it drain first (ringbearer wait), or give --drop-queued to make it dead letters "
        "(replayable with ringbearer dead-letters replay --all --target NAME); "
        "the running config stays"
    )


@attrs.frozen
class Drop:
    """Why a target's work is dropped, and the members it was routed over (for the record)."""

    reason: str
    members: tuple[str, ...]

    def member(self, route_index: int) -> str:
        return self.members[route_index % len(self.members)]

    def settle(self, message: Claimed, now: float) -> Settle:
        """A claimed message made a dead letter, unattempted: it keeps its attempts."""
        return Settle(
            message_id=message.id,
            target=message.target,
            kind=SettleKind.DEAD_LETTERED,
            integration=self.member(message.route_index),
            attempts=message.attempts,
            next_attempt_at=now,
            route_index=message.route_index,
            member_attempts=message.member_attempts,
            reason=self.reason,
            created_at=message.created_at,
            priority=message.priority,
        )


@attrs.define(eq=False)
class Drains:
    """Dead-letters the work of dropped targets, now and as it comes due."""

    store: DropStore
    routes: Callable[[], Collection[str]]  # the targets of the config in force
    wall: Callable[[], float]
    alerts: AlertSink
    dropping: dict[str, Drop] = attrs.Factory(dict)
    duty: Duty = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.duty = Duty("drains", self.step, self.alerts)

    def holds(self, target: str) -> bool:
        """Is ``target``'s work being dropped (so it is no stall)?"""
        return target in self.dropping

    def stranded(self, targets: Collection[str]) -> dict[str, tuple[int, int]]:
        return with_work(self.store.counters, targets)

    def unrouted(self, routes: Collection[str]) -> dict[str, tuple[int, int]]:
        return unrouted(self.store.counters, routes)

    async def drop(self, target: str, drop: Drop) -> int:
        """Dead-letter ``target``'s due work now; the rest as it comes due. How many now."""
        self.dropping[target] = drop
        count = await self._dead_letter_due(target, drop)
        log.warning(
            "dropped stranded work", extra=fields(target=target, count=count, reason=drop.reason)
        )
        self.duty.kick()
        return count

    async def _dead_letter_due(self, target: str, drop: Drop) -> int:
        total = 0
        while True:
            claimed = await self.store.claim(target, CHUNK)
            if claimed:
                now = self.wall()
                await self.store.record([drop.settle(m, now) for m in claimed])
            total += len(claimed)
            if len(claimed) < CHUNK:
                return total

    async def step(self) -> float:
        """Dead-letter what has come due; forget targets with a route again, or no work."""
        routes, wait = set(self.routes()), RECHECK_SECONDS
        for target, drop in list(self.dropping.items()):
            if target in routes or sum(work(self.store.counters, target)) == 0:
                del self.dropping[target]
                continue
            await self._dead_letter_due(target, drop)
            due = await self.store.next_due(target)
            if due is not None:
                wait = min(wait, max(MIN_WAIT_SECONDS, due - self.wall()))
        return wait

    async def run(self) -> None:
        await self.duty.run(RECHECK_SECONDS)
