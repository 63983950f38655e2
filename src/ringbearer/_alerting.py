"""Alerting: conditions become alerts, and alerts become messages to people.

Sources, checked on every tick: a breaker not closed for too long, an
integration whose health is down, an actor the supervisor gave up on, dead
letters, and messages whose deadline is endangered (its target cannot deliver
now, or the deadline is close) or missed.

An alert is keyed by its cause (``breaker_open:resend``): the same cause
never opens a second alert while one is open (de-duplication), and its
notifications carry the key (PagerDuty's ``dedup_key``). An alert is sent
through the first channel of the escalation chain, as a critical message
through the same actors as any other message, then:

* when a channel cannot take it (its integration cannot deliver now) or has
  not delivered it within ``channel_timeout_seconds``, it goes to the next
  channel;
* unacknowledged after ``escalate_after_seconds``, it escalates to the next
  channel too, until the end of the chain;
* unacknowledged, it repeats every ``repeat_seconds``;
* it resolves when its cause clears (a notice goes to the channels it
  reached); ``ringbearer alerts ack ID``, or an acknowledgement in PagerDuty
  (its webhook, see ``_pagerduty_webhook``), stops escalation and repeats; an
  operator's ack is passed on to the PagerDuty channels the alert reached.

On a wedding day the chain is the (shorter) wedding-day chain, which should
reach a phone, and the thresholds are shorter. An alert follows the chain in
force when it was raised, to its end, even if the mode changes meanwhile.

Deadlines are one alert per target (``deadline:email``), naming how many
messages are at risk and the nearest deadline: a group that is down with a
hundred deadlines pages once, not a hundred times.

Alert messages carry keys starting ``alert:``; their own dead letters never
raise a dead-letter alert (no alert storm about alerts).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from ._actor import ActorSnapshot, ActorState
from ._alerting_settings import AlertingSettings
from ._errors import RingbearerError
from ._logging import fields
from .control import MessageIn
from .control._replies import AlertView, Severity
from .resilience import BreakerState, HealthState
from .store import EventKind, Settle, SettleKind

log = logging.getLogger("ringbearer.alerts")

Condition = tuple[str, Severity, str]  # (the cause's key, severity, summary)

ALERT_KEY_PREFIX = "alert:"


class Host(Protocol):
    """What the alert manager needs from the daemon."""

    def wall(self) -> float: ...

    def snapshots(self) -> list[ActorSnapshot]: ...

    def can_deliver(self, target: str) -> bool: ...

    def kind_of(self, target: str) -> str: ...

    async def send_alert(self, message: MessageIn) -> int: ...

    async def message_states(self, ids: Sequence[int]) -> dict[int, str]: ...

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]: ...

    def audit(self, kind: EventKind, **detail: object) -> None: ...


@attrs.define
class Alert:
    id: int
    key: str
    severity: Severity
    summary: str
    opened_at: float
    escalated_at: float
    chain: tuple[str, ...]  # the escalation chain in force when it was raised
    level: int = 0  # the furthest channel of the chain notified
    sent: dict[int, int] = attrs.Factory(dict)  # chain index -> message id
    sent_at: dict[int, float] = attrs.Factory(dict)
    last_sent_at: float = 0.0
    acked: bool = False
    resolved: bool = False

    @property
    def key_prefix(self) -> str:
        """Its messages' idempotency keys start so: ids start again at 1 after a restart,
        the time it opened tells two alerts with one id apart."""
        return f"{ALERT_KEY_PREFIX}{self.id}:{self.opened_at:.3f}"

    def view(self) -> AlertView:
        return AlertView(
            id=self.id,
            key=self.key,
            severity=self.severity,
            summary=self.summary,
            opened_at=self.opened_at,
            level=self.level,
            channels=[self.chain[level] for level in sorted(self.sent)],
            acked=self.acked,
            resolved=self.resolved,
        )


@attrs.define
class AlertManager:
    settings: AlertingSettings
    host: Host
    wedding_day: Callable[[], bool]
    alerts: dict[str, Alert] = attrs.Factory(dict)  # open alerts by key
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))
    _not_closed_since: dict[str, float] = attrs.Factory(dict)
    _dead: deque[tuple[float, str]] = attrs.Factory(deque)  # (wall, target) of dead letters
    _own: set[int] = attrs.Factory(set)  # ids of the alert messages we sent
    # Conditions found elsewhere (a failed preflight): key -> (severity, summary).
    external: dict[str, tuple[Severity, str]] = attrs.Factory(dict)

    # -- what the daemon tells it ------------------------------------------------------

    def observe_settles(self, settles: Sequence[Settle], now: float) -> None:
        """Count dead letters, except those of alert messages (no alerts about alerts)."""
        for s in settles:
            if s.kind is SettleKind.DEAD_LETTERED and s.message_id not in self._own:
                self._dead.append((now, s.target))

    async def ack(self, alert_id: int, by: str = "operator") -> AlertView:
        """Acknowledge by id (the CLI); tell the PagerDuty channels it reached. KeyError if none."""
        for alert in self.alerts.values():
            if alert.id == alert_id:
                if not alert.acked:
                    self._acknowledge(alert, by)
                    await self._pass_on_ack(alert)
                return alert.view()
        raise KeyError(alert_id)

    async def ack_key(self, key: str, by: str) -> bool:
        """Acknowledge by cause (PagerDuty's ``incident_key``); was an open alert acked?"""
        alert = self.alerts.get(key)
        if alert is None or alert.acked:
            return False
        self._acknowledge(alert, by)
        return True

    def _acknowledge(self, alert: Alert, by: str) -> None:
        alert.acked = True
        self.host.audit(EventKind.ALERT_ACKED, alert=alert.id, key=alert.key, by=by)
        log.warning("alert acknowledged", extra=fields(alert=alert.id, by=by))

    async def _pass_on_ack(self, alert: Alert) -> None:
        """PagerDuty pages on its own until told: acknowledge its incident too."""
        for level in sorted(alert.sent):
            target = alert.chain[level]
            if self.host.kind_of(target) != "pagerduty":
                continue
            message = MessageIn(
                target=target,
                payload={"event_action": "acknowledge", "dedup_key": alert.key},
                priority="critical",
                key=f"{alert.key_prefix}:acknowledged:{level}",
            )
            await self._send(alert, message)

    def views(self) -> list[AlertView]:
        return [a.view() for a in sorted(self.alerts.values(), key=lambda a: a.id)]

    def found(self, key: str, severity: Severity, summary: str) -> None:
        """A condition found elsewhere (a failed preflight): alerted until :meth:`cleared`."""
        self.external[key] = (severity, summary)

    def cleared(self, key: str) -> None:
        self.external.pop(key, None)

    def use(self, settings: AlertingSettings) -> None:
        """Settings from a reload: for every tick from now on."""
        self.settings = settings

    # -- the periodic work -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Turn conditions into alerts, and follow them up, every ``tick_seconds``."""
        task_status.started()
        while self.settings.enabled:
            await trio.sleep(self.settings.tick_seconds)
            try:
                await self.tick()
            except RingbearerError as exc:  # the store refused: try again next tick
                log.error("alerting tick failed", extra=fields(error=str(exc)))

    @property
    def chain(self) -> tuple[str, ...]:
        s = self.settings
        return (s.wedding_day_chain or s.chain) if self.wedding_day() else s.chain

    async def tick(self) -> None:
        now = self.host.wall()
        wanted = self._conditions(now) + await self._deadline_conditions(now)
        wanted += [(key, sev, summary) for key, (sev, summary) in self.external.items()]
        keys = {key for key, _, _ in wanted}
        for key, severity, summary in wanted:
            await self._raise(key, severity, summary, now)
        for key in [k for k in self.alerts if k not in keys]:
            await self._resolve(self.alerts.pop(key))
        for alert in list(self.alerts.values()):
            if not alert.acked:
                await self._follow_up(alert, now)

    def _conditions(self, now: float) -> list[Condition]:
        wedding = self.wedding_day()
        limit = (
            self.settings.wedding_day_breaker_open_seconds
            if wedding
            else self.settings.breaker_open_seconds
        )
        found: list[Condition] = []
        for s in self.host.snapshots():
            if s.breaker is BreakerState.CLOSED:
                self._not_closed_since.pop(s.name, None)
            else:
                since = self._not_closed_since.setdefault(s.name, now)
                if now - since >= limit and not s.breaker_forced:
                    summary = f"{s.name}: breaker {s.breaker.value} for {now - since:.0f} s"
                    found.append((f"breaker_open:{s.name}", Severity.CRITICAL, summary))
            if s.health is HealthState.DOWN:
                found.append((f"health_down:{s.name}", Severity.CRITICAL, f"{s.name} is down"))
            if s.state is ActorState.FAILED:
                summary = f"{s.name}: crashed too often; the supervisor gave up ({s.last_error})"
                found.append((f"actor_failed:{s.name}", Severity.CRITICAL, summary))
        found.extend(self._dead_letter_conditions(now, wedding))
        return found

    def _dead_letter_conditions(self, now: float, wedding: bool) -> list[Condition]:
        window = self.settings.dead_letter_window_seconds
        while self._dead and self._dead[0][0] < now - window:
            self._dead.popleft()
        counts: dict[str, int] = {}
        for _, target in self._dead:
            counts[target] = counts.get(target, 0) + 1
        severity = Severity.CRITICAL if wedding else Severity.WARNING
        return [
            (f"dead_letters:{t}", severity, f"{t}: {n} dead letter(s) in {window:.0f} s")
            for t, n in sorted(counts.items())
        ]

    async def _deadline_conditions(self, now: float) -> list[Condition]:
        """One alert per target whose deadlines are missed or endangered."""
        horizon = self.settings.deadline_warning_seconds
        at_risk: dict[str, list[tuple[float, int]]] = {}
        for message_id, target, deliver_by in await self.host.deadlines_before(now + horizon):
            left = deliver_by - now
            if left <= 0 or not self.host.can_deliver(target) or left <= horizon / 4:
                at_risk.setdefault(target, []).append((deliver_by, message_id))
        found = []
        for target, risks in sorted(at_risk.items()):
            deliver_by, first = min(risks)
            missed = sum(1 for d, _ in risks if d <= now)
            why = "cannot deliver now" if not self.host.can_deliver(target) else "still queued"
            summary = (
                f"{target}: {len(risks)} message(s) with a deadline at risk ({why}), "
                f"{missed} missed; nearest: message {first}, "
                + (
                    f"deadline in {deliver_by - now:.0f} s"
                    if deliver_by > now
                    else f"missed by {now - deliver_by:.0f} s"
                )
            )
            found.append((f"deadline:{target}", Severity.CRITICAL, summary))
        return found

    # -- one alert -----------------------------------------------------------------------

    async def _raise(self, key: str, severity: Severity, summary: str, now: float) -> None:
        alert = self.alerts.get(key)
        if alert is not None:
            alert.summary = summary  # the same cause: one alert, kept current
            return
        alert = self.alerts[key] = Alert(
            next(self._ids), key, severity, summary, now, now, chain=self.chain
        )
        log.warning("alert", extra=fields(alert=alert.id, key=key, summary=summary))
        self.host.audit(EventKind.ALERT_RAISED, alert=alert.id, key=key, summary=summary)
        await self._notify(alert, self._first_usable(alert, 0), now)

    async def _follow_up(self, alert: Alert, now: float) -> None:
        chain = alert.chain
        s = self.settings
        escalate_after = (
            s.wedding_day_escalate_after_seconds if self.wedding_day() else s.escalate_after_seconds
        )
        if alert.level < len(chain) - 1 and await self._channel_failed(alert, now):
            self.host.audit(
                EventKind.ALERT_CHANNEL_FAILED, alert=alert.id, channel=chain[alert.level]
            )
            await self._notify(alert, self._first_usable(alert, alert.level + 1), now)
        elif alert.level < len(chain) - 1 and now - alert.escalated_at >= escalate_after:
            alert.escalated_at = now
            self.host.audit(EventKind.ALERT_ESCALATED, alert=alert.id, to=chain[alert.level + 1])
            await self._notify(alert, self._first_usable(alert, alert.level + 1), now)
        elif now - alert.last_sent_at >= s.repeat_seconds:
            await self._notify(alert, alert.level, now)

    async def _channel_failed(self, alert: Alert, now: float) -> bool:
        """The current channel cannot deliver, or has not delivered within its time."""
        chain = alert.chain
        message_id = alert.sent.get(alert.level)
        if message_id is None or not self.host.can_deliver(chain[alert.level]):
            return True
        state = (await self.host.message_states([message_id])).get(message_id)
        if state == "delivered":
            return False
        late = now - alert.sent_at[alert.level] >= self.settings.channel_timeout_seconds
        return state == "dead" or late

    def _first_usable(self, alert: Alert, start: int) -> int:
        """The first channel from ``start`` whose target can deliver now (else the last)."""
        chain = alert.chain
        for index in range(start, len(chain)):
            if self.host.can_deliver(chain[index]):
                return index
        return max(0, len(chain) - 1)

    async def _notify(self, alert: Alert, level: int, now: float) -> None:
        chain = alert.chain
        if not chain:
            return
        level = min(level, len(chain) - 1)
        alert.level = max(alert.level, level)
        target = chain[level]
        n = len(alert.sent_at)
        message = MessageIn(
            target=target,
            payload=self.payload(self.host.kind_of(target), alert, resolved=False),
            priority="critical",
            key=f"{alert.key_prefix}:{level}:{n}:{now:.0f}",
        )
        message_id = await self._send(alert, message)
        if message_id is None:
            return
        alert.sent[level], alert.sent_at[level], alert.last_sent_at = message_id, now, now
        self.host.audit(EventKind.ALERT_SENT, alert=alert.id, channel=target, message=message_id)

    async def _send(self, alert: Alert, message: MessageIn) -> int | None:
        try:
            message_id = await self.host.send_alert(message)
        except Exception as exc:  # a channel refusing the payload must not stop alerting
            log.error("alert not sent", extra=fields(alert=alert.id, error=str(exc)))
            return None
        self._own.add(message_id)
        return message_id

    async def _resolve(self, alert: Alert) -> None:
        alert.resolved = True
        self.host.audit(EventKind.ALERT_RESOLVED, alert=alert.id, key=alert.key)
        log.info("alert resolved", extra=fields(alert=alert.id, key=alert.key))
        for level in sorted(alert.sent):
            target = alert.chain[level]
            message = MessageIn(
                target=target,
                payload=self.payload(self.host.kind_of(target), alert, resolved=True),
                priority="critical",
                key=f"{alert.key_prefix}:resolved:{level}",
            )
            await self._send(alert, message)

    # -- payloads ------------------------------------------------------------------------

    def payload(self, kind: str, alert: Alert, *, resolved: bool) -> dict[str, Any]:
        """The alert as the channel's provider takes it."""
        s = self.settings
        state = "RESOLVED" if resolved else alert.severity.upper()
        text = f"[ringbearer {state}] {alert.summary} (ack: ringbearer alerts ack {alert.id})"
        match kind:
            case "slack_webhook" | "slack_chat":
                return {"text": text}
            case "twilio_sms":
                return {"to": s.phone, "body": text[:1600]}
            case "twilio_call":
                return {"to": s.phone, "say": text}
            case "pagerduty":
                if resolved:
                    return {"event_action": "resolve", "dedup_key": alert.key}
                severity = alert.severity.value
                return {"summary": alert.summary, "severity": severity, "dedup_key": alert.key}
            case "resend" | "mailgun" | "smtp":
                subject = f"[ringbearer {state}] {alert.summary}"[:200]
                return {"from": s.email_from, "to": s.email_to, "subject": subject, "text": text}
        return {"text": text}
