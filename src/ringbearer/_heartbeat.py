"""The heartbeat: tells systemd the daemon is alive, and what it is doing, while it really is."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import attrs
import trio

from ._systemd import Notifier
from .store import Lifecycle, Queries

log = logging.getLogger("ringbearer.daemon")

AGES_EVERY_SECONDS = 15.0  # the oldest-queued query scans the queue: not every beat


@attrs.define(eq=False)
class Heartbeat:
    """Each beat asks the store's writer to commit (an empty transaction).

    A wedged disk or a stuck writer stops the beats, and systemd's watchdog
    restarts the service; a beat that runs at all shows the event loop
    turns. STATUS= is sent whenever the one-line summary changes. Every
    ``AGES_EVERY_SECONDS`` it also reads how old the oldest queued message
    of each target and priority is, for the metric.
    """

    store: Lifecycle
    queries: Queries
    notifier: Notifier
    summary: Callable[[], str]
    wall: Callable[[], float]
    interval: float
    watchdog: bool
    # Seconds since the oldest queued message was submitted, by target and priority.
    oldest_queued: dict[tuple[str, str], float] = attrs.Factory(dict)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        shown, last_ages = "", -math.inf
        task_status.started()
        while True:
            if trio.current_time() - last_ages >= AGES_EVERY_SECONDS:
                last_ages = trio.current_time()
                await self.refresh_ages()
            await self._beat()
            line = self.summary()
            if line != shown:
                self.notifier.status(line)
                shown = line
            await trio.sleep(self.interval)

    async def _beat(self) -> None:
        with trio.move_on_after(self.interval * 4) as late:
            await self.store.flush()
        if late.cancelled_caught:
            log.error("the store did not answer the heartbeat; withholding the watchdog ping")
        elif self.watchdog:
            self.notifier.watchdog()

    async def refresh_ages(self) -> None:
        now = self.wall()
        found = await self.queries.oldest_queued()
        self.oldest_queued = {(t, p.label): max(0.0, now - at) for (t, p), at in found.items()}
