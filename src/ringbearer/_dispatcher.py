"""The dispatcher: moves due messages of one target from the store to actors.

A target is an integration or a failover group. The dispatcher claims due
messages (by priority, then due time) only as fast as the actors on its
route have room, so claimed work never piles up in memory. For a group, each
message goes to the first member, from where its route stands, that accepts
work now (running, not paused, breaker not open). It sleeps until it is
kicked (new work, a free slot, a breaker or pause change) or until the next
scheduled retry is due.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio

from . import _lifecycle
from ._actor import IntegrationActor
from ._delivery import Envelope, Priority
from ._errors import StoreError
from ._logging import fields
from .deliverability import PASS, Pass, Verdict
from .resilience import RateLimitSettings, TokenBucket
from .store import ALL_PRIORITIES, Claimed, Span, Store

WallClock = Callable[[], float]


class Gate(Protocol):
    """Decides, just before a claimed message is handed on, whether it may go now."""

    async def check(self, message: Claimed, now: float) -> Verdict: ...


class OpenGate:
    """Every message goes: work that no deliverability rule concerns."""

    async def check(self, message: Claimed, now: float) -> Verdict:
        return PASS


STORE_RETRY_SECONDS = 1.0  # after a store failure, claim again this much later
log = logging.getLogger("ringbearer.dispatch")
IDLE_RECHECK_SECONDS = 60.0  # a safety net: a missed kick costs at most this much delay


@attrs.define(eq=False)
class Dispatcher:
    target: str
    members: Sequence[IntegrationActor]
    store: Store
    wall: WallClock
    claim_batch: int = 256
    paused: bool = False
    _kicked: trio.Event = attrs.Factory(trio.Event)
    # Wall times at which queued messages become due, learnt from settles, so
    # that finding the next wake-up costs no query on the hot path.
    _due: list[float] = attrs.Factory(list)
    _seeded_at: float = -math.inf
    _handed: list[Claimed] = attrs.Factory(list)  # claimed for us with a submit
    _stopping: bool = False
    _stopped: trio.Event = attrs.Factory(trio.Event)
    # Wedding-day mode: bulk waits in the store; after the mode, it is released
    # at a controlled rate.
    defer_bulk: bool = False
    release: TokenBucket | None = None
    # Deliverability: a suppressed recipient, a paused sending domain, a cap.
    gate: Gate = attrs.Factory(OpenGate)

    def kick(self) -> None:
        self._kicked.set()

    def follow_mode(self, *, defer_bulk: bool, release_per_second: float, released: bool) -> None:
        """Wedding-day policy: bulk waits in the store while deferred, then goes at a set rate.

        ``released``: the mode has just ended, so what waited is let out at
        ``release_per_second`` rather than all at once.
        """
        deferring, self.defer_bulk = self.defer_bulk, defer_bulk
        if (released or deferring) and not defer_bulk:
            burst = max(1, math.ceil(release_per_second))
            self.release = TokenBucket(
                RateLimitSettings(per_second=release_per_second, burst=burst)
            )

    def note_due(self, at: float) -> None:
        """A message of this target becomes due at wall time ``at``."""
        heapq.heappush(self._due, at)
        if self._due[0] == at:
            self.kick()  # earlier than what we sleep towards

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while not self._stopping:
                deadline = await self._step_or_wait()
                if deadline is not None and not self._stopping:
                    with trio.move_on_at(deadline):
                        await self._kicked.wait()
                    self._kicked = trio.Event()
        finally:
            self.store.unpark_claim(self.target)
        await self._give_back_handed()
        self._stopped.set()

    async def _step_or_wait(self) -> float | None:
        """One step; if the store failed it (a lost connection, a full disk), say so and
        look again a little later: the messages are in the store, nothing is lost."""
        try:
            return await self._step()
        except StoreError as exc:
            log.error("claim failed", extra=fields(target=self.target, error=str(exc)))
            return trio.current_time() + STORE_RETRY_SECONDS

    async def stop(self) -> None:
        """Stop claiming; give back what was claimed but not handed to an actor; return when done.

        Unlike cancelling :meth:`run`, this loses nothing: every message this
        dispatcher holds goes back to the queue.
        """
        self._stopping = True
        self.kick()
        await self._stopped.wait()

    async def _give_back_handed(self) -> None:
        # A submit already in its transaction may still hand us a parked
        # claim: wait for the writer to finish it, then give all of it back.
        await self.store.flush()
        handed, self._handed = self._handed, []
        for message in handed:
            await self._give_back(message, message.route_index % len(self.members))

    async def _give_back(self, message: Claimed, index: int) -> None:
        reason = "dispatcher stopped" if self._stopping else "no member accepting"
        envelope = _envelope(message, self.members[index].name, index)
        settle = _lifecycle.returned(
            envelope, route_index=index, next_attempt_at=self.wall(), reason=reason
        )
        await self.store.record([settle])

    def _handoff(self, claimed: list[Claimed]) -> None:
        self._handed.extend(claimed)
        self.kick()

    async def _step(self) -> float | None:
        """Dispatch what can go now; return when to look again (None: at once)."""
        self.store.unpark_claim(self.target)  # awake: we claim for ourselves
        while self._handed and not self._stopping:
            handed, self._handed = self._handed, []
            for message in handed:
                await self._hand_over(message)
        if self.paused:
            return math.inf
        ready = [m for m in self.members if m.admits()]
        if not ready:
            return await self._bypass()
        # A group is failover, not load balancing: work waits for the first
        # member that admits it, rather than spill to the next one.
        primary = ready[0]
        if not primary.wants_work():
            return math.inf  # a freed slot kicks us
        room = primary.free_slots()
        if self._plain(primary, room):
            return await self._claim_all(room)
        return await self._claim_by_class(primary, room)

    def _plain(self, primary: IntegrationActor, room: int) -> bool:
        """No wedding-day rule applies: one claim of every priority, as usual."""
        return (
            not self.defer_bulk
            and self.release is None
            and (primary.free_slots_for_others() >= room)
        )

    async def _claim_all(self, room: int) -> float | None:
        claimed = await self._claim_and_hand(min(room, self.claim_batch), ALL_PRIORITIES)
        if self._stopping or claimed == min(room, self.claim_batch):
            return None
        deadline = await self._due_deadline()
        if room > claimed:
            self.store.park_claim(self.target, room - claimed, self._handoff)
        return deadline

    async def _claim_by_class(self, primary: IntegrationActor, room: int) -> float | None:
        """Wedding day, or just after: critical first, then the others within their lanes.

        Bulk waits in the store while it is deferred; once released, it goes
        at the release rate.
        """
        limit = min(room, self.claim_batch)
        full = False
        critical = await self._claim_and_hand(limit, (Priority.CRITICAL, Priority.CRITICAL))
        full |= critical == limit
        others = min(primary.free_slots_for_others(), limit - critical)
        last = Priority.NORMAL if self.defer_bulk or self.release is not None else Priority.BULK
        normal = await self._claim_and_hand(others, (Priority.NORMAL, last))
        full |= normal == others > 0
        wait = math.inf
        if self.release is not None and not self.defer_bulk:
            # The bucket refills over a float clock: a hair short of a token is one.
            tokens = min(others - normal, math.floor(self.release.available() + 1e-6))
            bulk = await self._claim_and_hand(tokens, (Priority.BULK, Priority.BULK))
            if bulk:
                self.release.try_take(bulk)
            if bulk < tokens:
                self.release = None  # no more deferred bulk is due: the release is over
            elif others - normal > bulk:
                wait = trio.current_time() + self.release.wait_time(1)
        if self._stopping or full:
            return None
        return min(wait, await self._due_deadline())

    async def _claim_and_hand(self, limit: int, span: Span) -> int:
        if limit <= 0:
            return 0
        claimed = await self.store.claim(self.target, limit, span)
        for message in claimed:
            if self._stopping:
                await self._give_back(message, message.route_index % len(self.members))
            else:
                await self._hand_over(message)
        return len(claimed)

    async def _bypass(self) -> float:
        """No member admits work: on a wedding day, critical work may still pass an open
        breaker, a bounded number of times (see ``IntegrationActor.bypass_slots``)."""
        for index, member in enumerate(self.members):
            slots = member.bypass_slots()
            if slots <= 0:
                continue
            span = (Priority.CRITICAL, Priority.CRITICAL)
            for message in await self.store.claim(self.target, slots, span):
                if await self._stopped_by_gate(message):
                    continue
                await member.put(_envelope(message, member.name, index))
        return self._breaker_deadline()

    def _breaker_deadline(self) -> float:
        times = [t for t in (m.retry_at() for m in self.members) if t is not None]
        return min(times) if times else math.inf

    async def _due_deadline(self) -> float:
        """Everything due was claimed: sleep until the next known due time."""
        now = self.wall()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)
        if not self._due and trio.current_time() - self._seeded_at >= IDLE_RECHECK_SECONDS:
            # At start, and now and then, ask the store: it knows retries
            # scheduled before this run, which no settle has told us about.
            self._seeded_at = trio.current_time()
            due = await self.store.next_due(self.target)
            if due is not None and due > now:
                heapq.heappush(self._due, due)
        if not self._due:
            return trio.current_time() + IDLE_RECHECK_SECONDS
        return trio.current_time() + max(0.0, self._due[0] - now)

    def _pick(self, route_index: int) -> tuple[int, IntegrationActor | None]:
        """The first member, from where the message's route stands, that admits work."""
        count = len(self.members)
        for step in range(count):
            index = (route_index + step) % count
            member = self.members[index]
            if member.admits():
                return index, member if member.free_slots() > 0 else None
        return route_index % count, None

    async def _stopped_by_gate(self, message: Claimed) -> bool:
        """Settle a message the gate will not let go now (dropped, held, deferred)."""
        verdict = await self.gate.check(message, self.wall())
        if isinstance(verdict, Pass):
            return False
        index = message.route_index % len(self.members)
        envelope = _envelope(message, self.members[index].name, index)
        await self.store.record([_lifecycle.gated(envelope, verdict)])
        return True

    async def _hand_over(self, message: Claimed) -> None:
        if await self._stopped_by_gate(message):
            return
        index, member = self._pick(message.route_index)
        while member is None:
            if self._stopping or not any(m.admits() for m in self.members):
                # Every member closed between the claim and now (a breaker
                # opened), or we are stopping: give the message back rather
                # than hold it here.
                await self._give_back(message, index)
                return
            # Members are running but full: wait for room, then choose again.
            with trio.move_on_after(1.0):
                await self._kicked.wait()
            self._kicked = trio.Event()
            index, member = self._pick(message.route_index)
        await member.put(_envelope(message, member.name, index))


def _envelope(message: Claimed, integration: str, index: int) -> Envelope:
    moved = index != message.route_index
    return Envelope(
        id=message.id,
        target=message.target,
        integration=integration,
        priority=message.priority,
        payload=message.payload,
        idempotency_key=message.idempotency_key,
        attempts=message.attempts,
        created_at=message.created_at,
        route_index=index,
        member_attempts=0 if moved else message.member_attempts,
        progress=message.progress.get(integration, {}),
    )
