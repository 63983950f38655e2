"""A background duty's loop, with each step's failure contained.

A duty runs one step at a time; a step says when the next one is due. A step
that raises is logged and raised as an alert (``duty_failed:NAME``), and the
duty tries again after a jittered exponential backoff that grows with each
failure in a row; the alert clears at the next step that succeeds. So a
failing duty never stops delivery, and never stops for good either.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol

import attrs
import trio

from ._logging import fields
from .control._replies import Severity

log = logging.getLogger("ringbearer.duty")

BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0


class AlertSink(Protocol):
    """Where a condition found outside the alert manager is raised and cleared."""

    def found(self, key: str, severity: Severity, summary: str) -> None: ...

    def cleared(self, key: str) -> None: ...


def backoff_seconds(failures: int, rng: random.Random) -> float:
    """Exponential in the failures in a row, capped, with jitter in [50%, 100%]."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2.0 ** max(0, failures - 1))
    return ceiling * (0.5 + rng.random() / 2)


@attrs.define(eq=False)
class Duty:
    """Runs ``step`` over and over; ``step`` returns the seconds until the next one."""

    name: str
    step: Callable[[], Awaitable[float]]
    alerts: AlertSink
    rng: random.Random = attrs.Factory(random.Random)
    failures: int = 0  # in a row
    _kicked: trio.Event = attrs.Factory(trio.Event)

    @property
    def alert_key(self) -> str:
        return f"duty_failed:{self.name}"

    def kick(self) -> None:
        """Run the next step now rather than when it is due."""
        self._kicked.set()

    async def run(self, first_wait: float) -> NoReturn:
        wait = first_wait
        while True:
            with trio.move_on_after(wait):
                await self._kicked.wait()
            self._kicked = trio.Event()
            wait = await self.once()

    async def once(self) -> float:
        """One step, its failure contained: the seconds until the next."""
        try:
            wait = await self.step()
        except Exception as exc:
            self.failures += 1
            wait = backoff_seconds(self.failures, self.rng)
            log.exception(
                "duty failed; trying again",
                extra=fields(duty=self.name, failures=self.failures, retry_in=round(wait, 3)),
            )
            summary = f"{self.name} failed {self.failures} time(s) in a row: {exc!r}"
            self.alerts.found(self.alert_key, Severity.WARNING, summary)
            return wait
        if self.failures:
            log.info("duty recovered", extra=fields(duty=self.name, failures=self.failures))
            self.failures = 0
            self.alerts.cleared(self.alert_key)
        return wait
