"""The integration actor: one per configured integration.

An actor owns its circuit breaker, retry policy, health, rate limit, a
bounded mailbox and a fixed number of delivery lanes (each with its own
connection state). Its long-lived state lives in :class:`IntegrationActor`;
:meth:`IntegrationActor.run` is the part the supervisor restarts when it
crashes, so a restart keeps the breaker and the mailbox but loses nothing:
whatever was in a lane at the crash is handed back to the supervisor.

Bad data does not crash an actor: what a message makes its lane raise is that
message's outcome (see ``_boundary``). A crash is a bug; should one message
crash its actor repeatedly all the same, it is quarantined as a dead letter
(:class:`CrashLedger`) long before the supervisor would give up on the actor,
so the messages behind it go on.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import attrs
import trio

from . import _lifecycle
from ._actor_wedding import WeddingRules
from ._boundary import TAKEN_NOTE, LaneSlot, deliver_within
from ._config import IntegrationSettings
from ._delivery import Envelope, Outcome, Permanent, Priority, Retry, Scope, Taken
from ._wedding import WeddingDaySettings
from .integrations import Adapter, BatchLimits
from .resilience import (
    BreakerState,
    BreakerTransition,
    Budgets,
    BudgetSnapshot,
    CircuitBreaker,
    Health,
    HealthState,
    RetryPolicy,
    TokenBucket,
)
from .store import Attempt, Settle, SettleKind
from .store._safe import safe_text

Sink = Callable[[list[Settle]], Awaitable[None]]
WallClock = Callable[[], float]


class ActorState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"  # crashed too often: the supervisor gave up on it
    STOPPED = "stopped"


class InjectedCrash(Exception):
    """Raised inside an actor on an operator's request, to exercise supervision."""


@attrs.frozen
class ActorSnapshot:
    """A read-only view of one actor, for status and metrics."""

    name: str
    kind: str
    state: ActorState
    paused: bool
    breaker: BreakerState
    breaker_forced: bool
    breaker_failure_rate: float
    health: HealthState
    success_rate: float
    p50: float
    p95: float
    p99: float
    lanes: int
    in_flight: int
    mailbox: int
    restarts: int
    delivered: int
    retried: int
    dead: int
    last_error: str | None
    budgets: tuple[BudgetSnapshot, ...] = ()


@attrs.define
class _Tally:
    delivered: int = 0
    retried: int = 0
    dead: int = 0

    def count(self, settle: Settle) -> None:
        if settle.kind is SettleKind.DELIVERED:
            self.delivered += 1
        elif settle.kind is SettleKind.DEAD_LETTERED:
            self.dead += 1
        elif settle.kind is not SettleKind.RETURNED:
            self.retried += 1


# Crashes a message may be in before it is quarantined. One crash proves little
# (a bug in the library, a lane's state, bad luck); a second with the same
# message in the lane that raised is the message. Two stays well under any
# sane restart intensity (max_restarts), so a poisoned message is a dead
# letter before its actor is marked failed, and innocents behind it go on.
QUARANTINE_AFTER = 2


@attrs.define
class CrashLedger:
    """Per message: the crashes of its actor it was being delivered in."""

    counts: dict[int, int] = attrs.Factory(dict)
    culprits: set[int] = attrs.Factory(set)  # in the lane that raised, this crash

    def limits(self, limits: BatchLimits | None) -> BatchLimits | None:
        """A batching adapter's limits, under which a message in a crash already goes
        alone, so that a second crash is pinned on it alone."""
        if limits is None or not self.counts:
            return limits
        alone = limits.alone
        return attrs.evolve(limits, alone=lambda env: env.id in self.counts or alone(env))

    def blame(self, batch: list[Envelope]) -> None:
        self.culprits.update(envelope.id for envelope in batch)

    def settled(self, batch: list[Envelope]) -> None:
        for envelope in batch:
            self.counts.pop(envelope.id, None)

    def verdict(self, envelope: Envelope, error: BaseException) -> Permanent | None:
        """The crash's verdict on one interrupted message: quarantine, or None (a retry)."""
        if envelope.id not in self.culprits:
            return None  # interrupted by another lane's crash: not its fault
        crashes = self.counts[envelope.id] = self.counts.get(envelope.id, 0) + 1
        if crashes < QUARANTINE_AFTER:
            return None
        del self.counts[envelope.id]
        cause = repr(error) if len(repr(error)) <= 300 else repr(error)[:299] + "…"
        return Permanent(
            f"quarantined: the actor crashed {crashes} times delivering this message"
            f" (last: {cause}); {TAKEN_NOTE}"
        )


def _breaker_ok(outcome: Outcome) -> bool:
    # A permanent answer means the provider is up and said no: not an outage;
    # nor is a retry that concerns one message (a throttled user, say).
    return not isinstance(outcome, Retry) or outcome.scope is Scope.MESSAGE


def _health_ok(outcome: Outcome) -> bool:
    # Refused credentials are a health problem even though retrying cannot help.
    if isinstance(outcome, Permanent) and outcome.status in (401, 403):
        return False
    return _breaker_ok(outcome)


@attrs.define(eq=False)
class IntegrationActor:
    settings: IntegrationSettings
    adapter: Adapter
    sink: Sink  # where settled attempts go (the store's writer)
    wall: WallClock
    retry: RetryPolicy
    routes: dict[str, int]  # target -> number of members on its route
    on_breaker: Callable[[str, BreakerTransition], None] = lambda name, t: None
    on_health: Callable[[str, HealthState, HealthState, str], None] = lambda *a: None
    on_slot_freed: Callable[[str], None] = lambda name: None
    breaker: CircuitBreaker = attrs.field(init=False)
    health: Health = attrs.field(init=False)
    limiter: TokenBucket | None = attrs.field(init=False)
    budgets: Budgets = attrs.field(init=False)
    state: ActorState = ActorState.STARTING
    paused: bool = False
    restarts: int = 0
    last_error: str | None = None
    in_flight: dict[int, Envelope] = attrs.Factory(dict)
    _send: trio.MemorySendChannel[Envelope] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Envelope] = attrs.field(init=False)
    _reserved: int = 0
    _reserved_others: int = 0  # of those, not critical
    _day: WeddingRules = attrs.field(init=False)  # wedding-day mode, as the mode controller sets
    _stopping: bool = False
    _crash_requested: bool = False
    _tally: _Tally = attrs.Factory(_Tally)
    _crashes: CrashLedger = attrs.Factory(CrashLedger)

    def __attrs_post_init__(self) -> None:
        s = self.settings
        self.breaker = CircuitBreaker(s.breaker, on_transition=self._breaker_changed)
        self.health = Health(s.health, on_change=self._health_changed)
        self.limiter = TokenBucket(s.rate_limit) if s.rate_limit is not None else None
        self.budgets = Budgets.of(s.budgets, self.wall)
        self._day = WeddingRules(self.retry, s.breaker.open_seconds, s.health)
        self._send, self._receive = trio.open_memory_channel[Envelope](self._mailbox_size)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def _mailbox_size(self) -> int:
        # A batching actor needs room to gather a full batch for every lane.
        batch = self.adapter.batching
        extra = batch.max_size * self.settings.lanes if batch is not None else 0
        return max(self.settings.mailbox, extra)

    @property
    def capacity(self) -> int:
        return self._mailbox_size + self.settings.lanes

    def _breaker_changed(self, transition: BreakerTransition) -> None:
        if transition.new is BreakerState.OPEN:
            self._day.breaker_opened()
        self.on_breaker(self.name, transition)

    @property
    def wedding(self) -> WeddingDaySettings | None:
        """Wedding-day mode's policy in force (None: the mode is off)."""
        return self._day.settings

    def set_wedding(self, wedding: WeddingDaySettings | None) -> None:
        """Apply wedding-day mode's policy (None: back to the integration's own settings)."""
        self._day.apply(wedding, self.breaker, self.health)

    def _health_changed(self, old: HealthState, new: HealthState, reason: str) -> None:
        self.on_health(self.name, old, new, reason)

    # -- what dispatchers ask --------------------------------------------------------

    def accepting(self) -> bool:
        """May a dispatcher hand this actor work now?"""
        return (
            self.state is ActorState.RUNNING
            and not self.paused
            and not self._stopping
            and self.breaker.state is not BreakerState.OPEN
        )

    def admits(self) -> bool:
        """Should work for this actor wait for it (rather than go to the next member)?

        A running actor with a closed breaker admits work even when its slots
        are full; a half-open one only while it has probes to spare.
        """
        if not self.accepting():
            return False
        return self.breaker.state is BreakerState.CLOSED or self.free_slots() > 0

    def free_slots(self) -> int:
        if not self.accepting():
            return 0
        free = self.capacity - self._reserved
        if self.breaker.state is BreakerState.HALF_OPEN:
            # Only the probes the breaker admits; more would bounce straight back.
            free = min(free, self.settings.breaker.half_open_probes - self._reserved)
        return max(0, free)

    def free_slots_for_others(self) -> int:
        """Slots normal and bulk work may take: on a wedding day, some lanes stay critical's."""
        free = self.free_slots()
        held = self._day.held_lanes(self.settings.lanes)
        if held <= 0:
            return free
        return max(0, min(free, self.settings.lanes - held - self._reserved_others))

    def bypass_slots(self) -> int:
        """Critical messages an open breaker may still take on a wedding day (the bypass)."""
        if (
            self.wedding is None
            or self.breaker.state is not BreakerState.OPEN
            or self.breaker.snapshot().forced
            or self.state is not ActorState.RUNNING
            or self.paused
            or self._stopping
        ):
            return 0
        return max(0, min(self._day.bypass_left, self.capacity - self._reserved))

    def wants_work(self) -> bool:
        """Refill in chunks, not one message a commit, unless the lanes are starving."""
        free = self.free_slots()
        return free > 0 and (free >= max(1, self.capacity // 4) or self._reserved == 0)

    def retry_at(self) -> float | None:
        """Monotonic time when an open breaker will admit probes again."""
        return self.breaker.retry_at()

    async def put(self, envelope: Envelope) -> None:
        """Hand over one claimed message (the dispatcher checked ``free_slots``)."""
        self._reserved += 1
        if envelope.priority is not Priority.CRITICAL:
            self._reserved_others += 1
        self._day.handed(envelope.id, envelope.priority, self.breaker.state is BreakerState.OPEN)
        try:
            self._send.send_nowait(envelope)  # room was reserved: usually no wait
        except trio.WouldBlock:
            await self._send.send(envelope)

    # -- the restartable part ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the lanes until the mailbox closes; raise if the actor crashes."""
        self._crash_requested = False
        async with trio.open_nursery() as nursery:
            for index in range(self.settings.lanes):
                await nursery.start(self._lane, index)
            self.state = ActorState.RUNNING
            task_status.started()

    async def _lane(self, index: int, *, task_status: trio.TaskStatus[None]) -> None:
        held: list[Envelope] = []  # one that must go alone, met while gathering
        started = False
        while True:  # a lane left mid-exchange by a delivery that raised is replaced
            async with self.adapter.open_lane() as lane:
                if not started:
                    started = True
                    task_status.started()
                slot = LaneSlot(lane)
                while not slot.spoiled:
                    limits = self._crashes.limits(self.adapter.batching)
                    batch = await gather(self._receive, limits, held, self.in_flight)
                    if not batch:
                        return
                    await self._handle(slot, batch)

    async def _handle(self, slot: LaneSlot, batch: list[Envelope]) -> None:
        try:
            settles = await self._settles(slot, batch)
        except InjectedCrash:
            raise  # the operator's exercise, not the message's fault
        except Exception:
            self._crashes.blame(batch)  # a bug, raised delivering these: see crashed()
            raise
        await self._finish(batch, settles)

    async def _settles(self, slot: LaneSlot, batch: list[Envelope]) -> list[Settle]:
        if self._stopping:
            return [_stopping(envelope, self.wall()) for envelope in batch]
        if self.breaker.try_acquire():
            return await self._attempt(slot, batch)
        if self._day.bypassing({envelope.id for envelope in batch}):
            return await self._attempt(slot, batch, bypass=True)
        wait = self._breaker_wait()
        return [self._returned(envelope, "breaker open", wait) for envelope in batch]

    async def _attempt(
        self, slot: LaneSlot, batch: list[Envelope], *, bypass: bool = False
    ) -> list[Settle]:
        allowed, settles = _spend_budgets(self.budgets, batch, self._returned)
        if not allowed:
            if not bypass:
                self.breaker.release()
            return settles
        if self.limiter is not None:
            await self.limiter.acquire()
        if self._crash_requested:
            self._crash_requested = False
            raise InjectedCrash(f"crash injected into {self.name}")
        started_wall = self.wall()
        started = trio.current_time()
        outcomes = await deliver_within(slot, allowed, self.adapter.batching is not None)
        seconds = trio.current_time() - started
        # One request, one verdict for the breaker and health, however many it
        # carried. A bypass attempt went past an open breaker: not its probe.
        if not bypass:
            self.breaker.record(ok=all(map(_breaker_ok, outcomes)), duration=seconds)
        self.health.record(ok=all(map(_health_ok, outcomes)), latency=seconds)
        for envelope, outcome in zip(allowed, outcomes, strict=True):
            reason = outcome.reason if isinstance(outcome, Retry | Permanent) else None
            if reason is not None:
                self.last_error = safe_text(reason)  # a provider's words, shown in status
            attempt = _attempt_of(self.name, outcome, reason, started_wall, seconds)
            settles.append(self.decide(envelope, outcome, attempt))
        return settles

    def decide(self, envelope: Envelope, outcome: Outcome, attempt: Attempt | None) -> Settle:
        retry = self._day.retry_for(envelope.priority)
        rules = _lifecycle.Rules(
            self.routes.get(envelope.target, 1), retry, self.settings.failover_after
        )
        return _lifecycle.decide(envelope, outcome, rules, now=self.wall(), attempt=attempt)

    def _breaker_wait(self) -> float:
        retry_at = self.breaker.retry_at()
        return 0.0 if retry_at is None else max(0.0, retry_at - trio.current_time())

    def _returned(self, envelope: Envelope, reason: str, wait: float) -> Settle:
        """Back to the queue unattempted: to the next member of a group now, else after ``wait``."""
        return _returned(envelope, self.routes.get(envelope.target, 1), self.wall(), reason, wait)

    async def _finish(self, batch: list[Envelope], settles: list[Settle]) -> None:
        await self.sink(settles)
        for settle in settles:
            self._tally.count(settle)
        for envelope in batch:
            self.in_flight.pop(envelope.id, None)
        if self._crashes.counts:  # rarely: only after a crash
            self._crashes.settled(batch)
        self._unreserve(batch)
        self.on_slot_freed(self.name)

    def _unreserve(self, envelopes: Collection[Envelope]) -> None:
        self._reserved -= len(envelopes)
        self._reserved_others -= sum(e.priority is not Priority.CRITICAL for e in envelopes)

    # -- what the supervisor does -------------------------------------------------------

    def crashed(self, error: BaseException) -> list[Settle]:
        """Settle whatever the crash interrupted: each counts as an ambiguous attempt.

        A message that was in the lane that raised, for the ``QUARANTINE_AFTER``th
        time, is quarantined instead: a dead letter whose reason names the crash.
        """
        self.last_error = safe_text(f"actor crashed: {error!r}")
        retry = Retry(reason=self.last_error, taken=Taken.MAYBE)
        settles = [
            self.decide(env, self._crashes.verdict(env, error) or retry, None)
            for env in self.in_flight.values()
        ]
        self._crashes.culprits.clear()
        self._unreserve(list(self.in_flight.values()))
        self.in_flight.clear()
        return settles

    def abandoned(self) -> list[Settle]:
        """An actor given up on: its mailbox back to the queue, unattempted (a group's next)."""
        waiting = _drain(self._receive)
        self._unreserve(waiting)
        reason = f"{self.name} failed (crashed too often); not attempted"
        return [self._returned(envelope, reason, 0.0) for envelope in waiting]

    def carry_over(self, old: IntegrationActor) -> None:
        """Keep what the actor this one replaces (on a reload) learnt and was told."""
        state, forced, remaining = old.breaker.export()
        self.breaker.restore(state, forced, remaining)
        self.paused, self.restarts, self.last_error = old.paused, old.restarts, old.last_error
        self._crashes = old._crashes  # a poisoned message's count survives a reload

    def request_crash(self) -> None:
        self._crash_requested = True

    def stop_intake(self) -> None:
        """Stop taking new work; lanes return what is left in the mailbox, unattempted."""
        self._stopping = True
        self._send.close()

    async def release(self, settles: list[Settle]) -> None:
        await self.sink(settles)
        for settle in settles:
            self._tally.count(settle)
        self.on_slot_freed(self.name)

    def statistics(self) -> ActorSnapshot:
        return _snapshot(self, self._receive.statistics().current_buffer_used, self._tally)


def _stopping(envelope: Envelope, now: float) -> Settle:
    """Back to the queue unattempted, where it stood on its route: the daemon is stopping."""
    return _lifecycle.returned(
        envelope,
        route_index=envelope.route_index,
        next_attempt_at=now,
        reason="the daemon is stopping",
    )


def _returned(envelope: Envelope, route_len: int, now: float, reason: str, wait: float) -> Settle:
    if route_len > 1:
        return _lifecycle.returned(
            envelope,
            route_index=(envelope.route_index + 1) % route_len,
            next_attempt_at=now,
            reason=reason,
        )
    return _lifecycle.returned(envelope, route_index=0, next_attempt_at=now + wait, reason=reason)


def _spend_budgets(
    budgets: Budgets, batch: list[Envelope], returned: Callable[[Envelope, str, float], Settle]
) -> tuple[list[Envelope], list[Settle]]:
    """The envelopes every quota budget lets through now; the others go back to wait."""
    allowed: list[Envelope] = []
    refused: list[Settle] = []
    for envelope in batch:
        wait = budgets.try_spend(envelope.priority)
        if wait == 0.0:
            allowed.append(envelope)
            continue
        reason = f"quota budget spent for {envelope.priority.label} work; room in {wait:.1f}s"
        refused.append(returned(envelope, reason, wait))
    return allowed, refused


def _attempt_of(
    name: str, outcome: Outcome, reason: str | None, started_wall: float, seconds: float
) -> Attempt:
    return Attempt(
        integration=name,
        started_at=started_wall,
        duration=seconds,
        outcome=_lifecycle.outcome_label(outcome),
        status=_status(outcome),
        detail=reason,
    )


def _drain(receive: trio.MemoryReceiveChannel[Envelope]) -> list[Envelope]:
    waiting: list[Envelope] = []
    while True:
        try:
            waiting.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return waiting


def _status(outcome: Outcome) -> int | None:
    status: Any = getattr(outcome, "status", None)
    return status if isinstance(status, int) else None


async def gather(
    receive: trio.MemoryReceiveChannel[Envelope],
    limits: BatchLimits | None,
    held: list[Envelope],
    in_flight: dict[int, Envelope],
) -> list[Envelope]:
    """The next envelope; for a batching adapter, up to ``max_size`` within ``max_wait``.

    Empty once the mailbox is closed and drained. Each envelope is in
    flight from the moment it leaves the mailbox, so a crash while a batch
    gathers still hands it back. One that must go alone ends the batch
    and is the next batch, by itself.
    """
    if held:
        return [held.pop()]
    try:
        batch = [await receive.receive()]
    except trio.EndOfChannel:
        return []
    in_flight[batch[0].id] = batch[0]
    if limits is None or limits.alone(batch[0]):
        return batch
    with trio.move_on_after(limits.max_wait):
        while len(batch) < limits.max_size:
            try:
                envelope = await receive.receive()
            except trio.EndOfChannel:
                break
            in_flight[envelope.id] = envelope
            if limits.alone(envelope):
                held.append(envelope)
                break
            batch.append(envelope)
    return batch


def _snapshot(actor: IntegrationActor, mailbox: int, tally: _Tally) -> ActorSnapshot:
    breaker = actor.breaker.snapshot()
    health = actor.health.snapshot()
    state = actor.health.state_with(breaker_open=breaker.state is BreakerState.OPEN)
    return ActorSnapshot(
        name=actor.name,
        kind=actor.settings.kind,
        state=actor.state,
        paused=actor.paused,
        breaker=breaker.state,
        breaker_forced=breaker.forced,
        breaker_failure_rate=breaker.failure_rate,
        health=state,
        success_rate=health.success_rate,
        p50=health.p50,
        p95=health.p95,
        p99=health.p99,
        lanes=actor.settings.lanes,
        in_flight=len(actor.in_flight),
        mailbox=mailbox,
        budgets=actor.budgets.snapshot(),
        restarts=actor.restarts,
        delivered=tally.delivered,
        retried=tally.retried,
        dead=tally.dead,
        last_error=actor.last_error,
    )
