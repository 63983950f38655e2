"""The supervisor: runs one actor per integration and restarts the ones that crash.

Like an OTP supervisor with a one-for-one strategy: a crashed actor is
restarted alone, after a jittered exponential backoff; if it crashes more than
``max_restarts`` times within ``within_seconds`` it is marked failed, the
event is logged, its mailbox goes back to the queue unattempted, and the
others run on. Whatever a crash interrupted is settled as an ambiguous
attempt, so it goes back to the queue; a message that crashed its actor
before, in the lane that raised, is quarantined instead (a dead letter naming
the crash, see ``IntegrationActor.crashed``), so one poisoned message ends
long before its actor would be marked failed, and the messages queued behind
it go on. The crash event names what it dead-lettered.
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Callable

import attrs
import trio

from ._actor import ActorState, IntegrationActor
from ._config import SupervisorSettings
from .store import Settle, SettleKind


class SupervisorEventKind(enum.StrEnum):
    """What the supervisor did; each is also the name of the audit event it writes."""

    CRASHED = "actor_crashed"
    RESTARTED = "actor_restarted"
    FAILED = "actor_failed"  # restart intensity exceeded: given up on


@attrs.frozen
class SupervisorEvent:
    """What the supervisor did, handed to its hook (audit log, metrics, alerts)."""

    kind: SupervisorEventKind
    integration: str
    detail: str
    restarts: int


@attrs.define
class RestartIntensity:
    """Counts crashes in a sliding window of ``within_seconds``."""

    max_restarts: int
    within_seconds: float
    _crashes: collections.deque[float] = attrs.Factory(collections.deque)

    def crash(self, now: float) -> bool:
        """Record a crash; True when the limit is exceeded."""
        self._crashes.append(now)
        while self._crashes and self._crashes[0] < now - self.within_seconds:
            self._crashes.popleft()
        return len(self._crashes) > self.max_restarts

    @property
    def recent(self) -> int:
        return len(self._crashes)


def backoff_seconds(settings: SupervisorSettings, recent: int, rng: random.Random) -> float:
    """Exponential in the number of recent crashes, capped, with jitter in [50%, 100%]."""
    growth = float(2 ** max(0, recent - 1))
    ceiling = min(settings.backoff_max_seconds, settings.backoff_initial_seconds * growth)
    return ceiling * (0.5 + rng.random() / 2)


@attrs.define(eq=False)
class Supervisor:
    settings: SupervisorSettings
    on_event: Callable[[SupervisorEvent], None] = lambda event: None
    on_state: Callable[[str], None] = lambda name: None  # an actor's availability changed
    rng: random.Random = attrs.Factory(random.Random)
    _done: dict[str, trio.Event] = attrs.Factory(dict)

    async def supervise(
        self,
        actor: IntegrationActor,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``actor`` until it stops on its own, restarting it after crashes."""
        intensity = RestartIntensity(self.settings.max_restarts, self.settings.within_seconds)
        started = False
        done = self._done[actor.name] = trio.Event()
        try:
            while True:
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(actor.run)
                        if not started:
                            started = True
                            task_status.started()
                        self.on_state(actor.name)
                    return  # the mailbox closed: an orderly stop
                except Exception as exc:
                    if not started:
                        started = True
                        task_status.started()
                    if not await self._crashed(actor, _unwrap(exc), intensity):
                        return
        finally:
            if actor.state is not ActorState.FAILED:
                actor.state = ActorState.STOPPED
            done.set()

    async def _crashed(
        self, actor: IntegrationActor, exc: Exception, intensity: RestartIntensity
    ) -> bool:
        """Settle the interrupted work; wait the backoff; False when giving up."""
        settles = actor.crashed(exc)
        await actor.release(settles)  # before the verdict below: a quarantine comes first
        actor.restarts += 1
        detail = repr(exc) + _dead_lettered(settles)
        self.on_event(
            SupervisorEvent(SupervisorEventKind.CRASHED, actor.name, detail, actor.restarts)
        )
        if intensity.crash(trio.current_time()):
            actor.state = ActorState.FAILED
            # What waits in its mailbox would stay in flight until the next start:
            # back to the queue, for a group's next member, a reload or a restart.
            await actor.release(actor.abandoned())
            self.on_event(
                SupervisorEvent(
                    SupervisorEventKind.FAILED,
                    actor.name,
                    f"{intensity.recent} crashes within {self.settings.within_seconds:g} s",
                    actor.restarts,
                )
            )
            self.on_state(actor.name)
            return False
        actor.state = ActorState.RESTARTING
        self.on_state(actor.name)
        await trio.sleep(backoff_seconds(self.settings, intensity.recent, self.rng))
        self.on_event(
            SupervisorEvent(SupervisorEventKind.RESTARTED, actor.name, "", actor.restarts)
        )
        return True

    def use(self, settings: SupervisorSettings) -> None:
        """Settings from a reload: for crashes from now on."""
        self.settings = settings

    async def wait_stopped(self, name: str) -> None:
        done = self._done.get(name)
        if done is not None:
            await done.wait()


def _dead_lettered(settles: list[Settle]) -> str:
    ids = [s.message_id for s in settles if s.kind is SettleKind.DEAD_LETTERED]
    return f"; dead-lettered message(s) {', '.join(map(str, ids))}" if ids else ""


def _unwrap(exc: Exception) -> Exception:
    """A lane's crash reaches us wrapped in the actor's nursery's group."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
