"""Preflight on a schedule: every integration checked a set time before each wedding day."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import attrs
import trio

from ._alerting import AlertManager
from ._journal import Journal
from ._logging import fields
from ._preflight import PreflightReport, Step, Verdict, preflight
from ._reload import CurrentConfig
from ._sandbox import Sandbox
from ._wedding import Calendar
from .control._replies import Severity
from .integrations import ProviderKind
from .store import EventKind

log = logging.getLogger("ringbearer.preflight")

PREFLIGHT_KEY = "preflight"  # the alert a failed preflight raises
LOOK_AT_LEAST_EVERY = 3600.0  # a reload may change the calendar


@attrs.frozen
class PreflightDuty:
    current: CurrentConfig
    kinds: Mapping[str, ProviderKind]
    sandbox: Sandbox | None
    alerts: AlertManager
    journal: Journal
    wall: Callable[[], float]
    timeout: float = 10.0
    # An integration's kept OAuth token, as a step of its own (how long it has left).
    token_step: Callable[[str], Step | None] = lambda name: None

    async def check(self, timeout: float | None = None) -> PreflightReport:  # noqa: ASYNC109 (each probe's bound)
        """Check every integration where this daemon sends, sending nothing; alert if not ready."""
        report = await preflight(
            self.current.value,
            kinds=self.kinds,
            sandbox=self.sandbox,
            timeout=self.timeout if timeout is None else timeout,
        )
        report = self._with_tokens(report)
        failing = [i.name for i in report.integrations if i.verdict is Verdict.FAIL]
        self.journal.event(EventKind.PREFLIGHT, verdict=report.readiness.value, failing=failing)
        if failing:
            summary = f"preflight: not ready ({', '.join(failing)}); run ringbearer preflight"
            self.alerts.found(PREFLIGHT_KEY, Severity.CRITICAL, summary)
            log.error("preflight: not ready", extra=fields(failing=",".join(failing)))
        else:
            self.alerts.cleared(PREFLIGHT_KEY)
            log.info("preflight: " + report.readiness.value)
        return report

    def _with_tokens(self, report: PreflightReport) -> PreflightReport:
        integrations = []
        for found in report.integrations:
            step = self.token_step(found.name)
            steps = found.steps if step is None else (*found.steps, step)
            integrations.append(attrs.evolve(found, steps=steps))
        return attrs.evolve(report, integrations=tuple(integrations))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the preflight ``preflight_hours_before`` each wedding day the calendar knows of."""
        task_status.started()
        while (hours := self.current.value.wedding_day.preflight_hours_before) > 0:
            start = Calendar(self.current.value.wedding_day).next_day_on(self.wall())
            due = None if start is None else start - hours * 3600
            if start is None or due is None or due > self.wall():
                wait = LOOK_AT_LEAST_EVERY if due is None else due - self.wall()
                await trio.sleep(min(LOOK_AT_LEAST_EVERY, wait))
                continue
            await self.check()
            await trio.sleep(max(1.0, start - self.wall() + 1))
