"""What is wrong now: the conditions the alert manager turns into alerts.

Sources, checked on every tick: a breaker not closed for too long, an
integration whose health is down, an actor the supervisor gave up on, dead
letters within a window, messages whose deadline is endangered (its target
cannot deliver now, or the deadline is close) or missed, and conditions
found elsewhere (a failed preflight).

Some evidence lives only in this process: how long each breaker has not been
closed, the recent dead letters, the external conditions, an integration's
health window. After a restart, :meth:`Conditions.restore` rebuilds it from
the alerts that were open, so a cause that still holds keeps its alert (an
acknowledged one is not paged again):

* ``breaker_open``: the breaker state is durable; it counts as not closed
  since long enough before the alert opened;
* ``dead_letters``: the target's dead letters within the window are read
  back from the store (the alert messages' own aside);
* an external condition (a failed preflight) holds until whoever found it
  clears it: a verdict stands until the next one;
* ``health_down``: the health window starts empty, so the alert holds until
  the integration has settled an attempt in this run (an open breaker still
  reads as down);
* ``actor_failed`` resolves, and so do the external conditions that are
  observations of the last process (``duty_failed:NAME``, ``stalled:TARGET``:
  their finders look again in this run and raise them again if they still
  hold): the restart started the actor, the duty, the dispatchers again;
* ``deadline`` needs nothing: deadlines are read from the store on each tick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

import attrs

from ._actor import ActorSnapshot, ActorState
from ._alerting_settings import AlertingSettings
from .control._replies import Severity
from .resilience import BreakerState, HealthState
from .store import AlertRecord

Condition = tuple[str, Severity, str]  # (the cause's key, severity, summary)

# External conditions that observe the running process (``_duty``, ``_stalls``):
# a restart starts what they watch afresh, so their alerts are not held over.
OF_THE_LAST_RUN = frozenset({"duty_failed", "stalled"})


class Evidence(Protocol):
    """Where conditions are read from."""

    def snapshots(self) -> list[ActorSnapshot]: ...

    def can_deliver(self, target: str) -> bool: ...

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]: ...

    async def dead_letters_since(self, wall: float, target: str) -> list[float]:
        """When each of ``target``'s dead letters since ``wall`` died, alert messages aside."""
        ...


@attrs.define
class Conditions:
    """The conditions that hold now, and the evidence kept between ticks."""

    evidence: Evidence
    not_closed_since: dict[str, float] = attrs.Factory(dict)
    dead: deque[tuple[float, str]] = attrs.Factory(deque)  # (wall, target) of dead letters
    # Conditions found elsewhere (a failed preflight): key -> (severity, summary).
    external: dict[str, tuple[Severity, str]] = attrs.Factory(dict)
    # Restored health_down alerts waiting for evidence: key -> summary.
    unproven: dict[str, str] = attrs.Factory(dict)

    async def restore(
        self, alerts: Sequence[AlertRecord], settings: AlertingSettings, now: float
    ) -> None:
        """Rebuild the evidence behind the alerts open at the last stop (see the module)."""
        opened_after = max(settings.breaker_open_seconds, settings.wedding_day_breaker_open_seconds)
        dead: list[tuple[float, str]] = []
        for alert in alerts:
            kind, _, name = alert.key.partition(":")
            if alert.external and kind not in OF_THE_LAST_RUN:
                self.external.setdefault(alert.key, (Severity(alert.severity), alert.summary))
            elif kind == "breaker_open":
                self.not_closed_since[name] = alert.opened_at - opened_after
            elif kind == "health_down":
                self.unproven[alert.key] = alert.summary
            elif kind == "dead_letters":
                since = now - settings.dead_letter_window_seconds
                at = await self.evidence.dead_letters_since(since, name)
                dead.extend((when, name) for when in at)
        self.dead.extend(sorted(dead))

    async def holding(
        self, settings: AlertingSettings, wedding: bool, now: float
    ) -> list[Condition]:
        """Every condition that holds at ``now``."""
        found = self._actors(settings, wedding, now)
        found += self._dead_letters(settings, wedding, now)
        found += await self._deadlines(settings, now)
        found += [(key, sev, summary) for key, (sev, summary) in self.external.items()]
        return found

    def _actors(self, settings: AlertingSettings, wedding: bool, now: float) -> list[Condition]:
        limit = (
            settings.wedding_day_breaker_open_seconds if wedding else settings.breaker_open_seconds
        )
        found: list[Condition] = []
        snapshots = self.evidence.snapshots()
        for s in snapshots:
            if s.breaker is BreakerState.CLOSED:
                self.not_closed_since.pop(s.name, None)
            else:
                since = self.not_closed_since.setdefault(s.name, now)
                if now - since >= limit and not s.breaker_forced:
                    summary = f"{s.name}: breaker {s.breaker.value} for {now - since:.0f} s"
                    found.append((f"breaker_open:{s.name}", Severity.CRITICAL, summary))
            if s.health is HealthState.DOWN:
                found.append((f"health_down:{s.name}", Severity.CRITICAL, f"{s.name} is down"))
            if s.state is ActorState.FAILED:
                summary = f"{s.name}: crashed too often; the supervisor gave up ({s.last_error})"
                found.append((f"actor_failed:{s.name}", Severity.CRITICAL, summary))
        return found + self._unproven(snapshots)

    def _unproven(self, snapshots: Sequence[ActorSnapshot]) -> list[Condition]:
        """Restored health_down alerts of integrations with no attempt settled in this run."""
        quiet = {
            f"health_down:{s.name}"
            for s in snapshots
            if s.health is not HealthState.DOWN and s.delivered + s.retried + s.dead == 0
        }
        self.unproven = {key: text for key, text in self.unproven.items() if key in quiet}
        return [(key, Severity.CRITICAL, text) for key, text in self.unproven.items()]

    def _dead_letters(
        self, settings: AlertingSettings, wedding: bool, now: float
    ) -> list[Condition]:
        window = settings.dead_letter_window_seconds
        while self.dead and self.dead[0][0] < now - window:
            self.dead.popleft()
        counts: dict[str, int] = {}
        for _, target in self.dead:
            counts[target] = counts.get(target, 0) + 1
        severity = Severity.CRITICAL if wedding else Severity.WARNING
        return [
            (f"dead_letters:{t}", severity, f"{t}: {n} dead letter(s) in {window:.0f} s")
            for t, n in sorted(counts.items())
        ]

    async def _deadlines(self, settings: AlertingSettings, now: float) -> list[Condition]:
        """One condition per target whose deadlines are missed or endangered."""
        horizon = settings.deadline_warning_seconds
        at_risk: dict[str, list[tuple[float, int]]] = {}
        for message_id, target, deliver_by in await self.evidence.deadlines_before(now + horizon):
            left = deliver_by - now
            if left <= 0 or not self.evidence.can_deliver(target) or left <= horizon / 4:
                at_risk.setdefault(target, []).append((deliver_by, message_id))
        return [
            (f"deadline:{target}", Severity.CRITICAL, self._deadline_summary(target, risks, now))
            for target, risks in sorted(at_risk.items())
        ]

    def _deadline_summary(self, target: str, risks: list[tuple[float, int]], now: float) -> str:
        deliver_by, first = min(risks)
        missed = sum(1 for d, _ in risks if d <= now)
        why = "cannot deliver now" if not self.evidence.can_deliver(target) else "still queued"
        when = (
            f"deadline in {deliver_by - now:.0f} s"
            if deliver_by > now
            else f"missed by {now - deliver_by:.0f} s"
        )
        return (
            f"{target}: {len(risks)} message(s) with a deadline at risk ({why}), "
            f"{missed} missed; nearest: message {first}, {when}"
        )
