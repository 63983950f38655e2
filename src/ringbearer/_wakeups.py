"""Wake-ups: the one owner of waking dispatchers, and of waking those who wait.

A message's path, after each commit: the store tells this listener what it
made durable; new work wakes its target's dispatcher, a retry due later is
noted with it, and settles go on to the observers (metrics, alerts). A freed
actor slot, a pause, a breaker or a mode change wakes dispatchers through
here too, so nothing else calls ``Dispatcher.kick``. Waiters (``ringbearer
wait``) are woken when the daemon becomes idle or a breaker moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import trio

from ._fleet import Fleet
from .store import Counters, MessageStatus, Settle, SettleKind

SettleObserver = Callable[[Sequence[Settle], float], None]


@attrs.define(eq=False)
class Wakeups:
    fleet: Fleet
    counters: Counters
    wall: Callable[[], float]
    observers: tuple[SettleObserver, ...] = ()
    # Wall time of each target's latest settle: the stall detector's sign of progress.
    progress: dict[str, float] = attrs.Factory(dict)
    _changed: trio.Event = attrs.Factory(trio.Event)

    # -- the store's listener ---------------------------------------------------------------

    def submitted(self, targets: set[str]) -> None:
        for target in targets:
            self.target(target)
        self._idle_changed()

    def settled(self, settles: Sequence[Settle]) -> None:
        now = self.wall()
        for observe in self.observers:
            observe(settles, now)
        for s in settles:
            self.progress[s.target] = now
            dispatcher = self.fleet.dispatchers.get(s.target)
            if dispatcher is None or s.kind.status is not MessageStatus.QUEUED:
                continue
            if s.kind is SettleKind.HELD:
                continue  # due when its hold is released, which tells us as a submit
            if s.next_attempt_at <= now + 0.001:
                dispatcher.kick()
            else:
                dispatcher.note_due(s.next_attempt_at)
        self._idle_changed()

    # -- the rest of the daemon ----------------------------------------------------------------

    def target(self, name: str) -> None:
        """New work for target ``name``."""
        dispatcher = self.fleet.dispatchers.get(name)
        if dispatcher is not None:
            dispatcher.kick()

    def scheduled(self, target: str, at: float) -> None:
        """A message of ``target`` was submitted to wait until wall time ``at`` (not_before)."""
        dispatcher = self.fleet.dispatchers.get(target)
        if dispatcher is not None:
            dispatcher.note_due(at)

    def slot_freed(self, name: str) -> None:
        """Integration ``name`` can take work again (a slot, its breaker, its state)."""
        for dispatcher in self.fleet.feeding(name):
            dispatcher.kick()

    def everyone(self) -> None:
        """The rules changed (a pause, the mode): every dispatcher looks again."""
        for dispatcher in self.fleet.dispatchers.values():
            dispatcher.kick()

    def breaker_moved(self, name: str) -> None:
        self._changed.set()
        self.slot_freed(name)

    # -- waiting -----------------------------------------------------------------------------

    def queued_total(self) -> int:
        """Messages queued or in flight, every target."""
        return sum(c.total_queued + c.inflight for c in self.counters.by_target.values())

    def is_idle(self) -> bool:
        return self.queued_total() == 0

    async def wait_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Until ``condition`` holds (checked at each idle or breaker change) or time is up."""
        with trio.move_on_after(seconds):
            while not condition():
                if self._changed.is_set():  # an old change: wait for the next one
                    self._changed = trio.Event()
                await self._changed.wait()
        return condition()

    def _idle_changed(self) -> None:
        if self.is_idle():
            self._changed.set()
