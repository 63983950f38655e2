"""Alerting: conditions become alerts, and alerts become messages to people.

The conditions (a breaker not closed for too long, an integration whose
health is down, an actor the supervisor gave up on, dead letters, endangered
or missed deadlines, a failed preflight) are found by ``_alert_conditions``.

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
  (its webhook, see ``listener._pagerduty``), stops escalation and repeats; an
  operator's ack is passed on to the PagerDuty channels the alert reached.

On a wedding day the chain is the (shorter) wedding-day chain, which should
reach a phone, and the thresholds are shorter. An alert follows the chain in
force when it was raised, to its end, even if the mode changes meanwhile.

Deadlines are one alert per target (``deadline:email``), naming how many
messages are at risk and the nearest deadline: a group that is down with a
hundred deadlines pages once, not a hundred times.

Alerts live in the store (its ``AlertState`` role). Each is written at the
end of the tick that moved it (raised, sent, escalated, resolved; a summary
that only re-words itself is not worth a write), and an acknowledgement is
written before the ack is answered. At start, :meth:`AlertManager.restore`
takes up the alerts open at the last stop where they stood: an acknowledged
one stays quiet while its cause holds, an unacknowledged one goes on with its
own chain, level and times (a channel's time to deliver counts from the
restart at the earliest: the daemon being down is not the channel's fault),
and one whose cause cleared meanwhile resolves at the first tick, with a
notice to the channels it reached. New ids go on from the highest kept.

Alert messages carry keys starting ``alert:``; their own dead letters never
raise a dead-letter alert (no alert storm about alerts).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from ._alert_conditions import Conditions, Evidence
from ._alerting_settings import AlertingSettings
from ._errors import RingbearerError
from ._logging import fields
from .control import MessageIn
from .control._replies import AlertView, Severity
from .store import AlertRecord, EventKind, SentNotice, Settle, SettleKind

log = logging.getLogger("ringbearer.alerts")

ALERT_KEY_PREFIX = "alert:"


class Host(Evidence, Protocol):
    """What the alert manager needs from the daemon: the evidence, the way out, the store."""

    def wall(self) -> float: ...

    def kind_of(self, target: str) -> str: ...

    async def send_alert(self, message: MessageIn) -> int: ...

    async def message_states(self, ids: Sequence[int]) -> dict[int, str]: ...

    def audit(self, kind: EventKind, **detail: object) -> None: ...

    async def save_alert(self, alert: AlertRecord) -> None: ...

    async def open_alerts(self) -> list[AlertRecord]: ...

    async def last_alert_id(self) -> int: ...


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
    external: bool = False  # its cause was found elsewhere (a failed preflight)
    acked_by: str | None = None
    acked_at: float | None = None
    resolved_at: float | None = None

    @property
    def acked(self) -> bool:
        return self.acked_by is not None

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None

    @property
    def key_prefix(self) -> str:
        """Its messages' idempotency keys start so. Ids now go on across restarts; the time
        it opened stays in the key all the same, so that no key repeats one written when ids
        started again at 1 on each start (a store from before migration 5)."""
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

    def record(self) -> AlertRecord:
        """The alert as the store keeps it."""
        sent = tuple(SentNotice(n, self.sent[n], self.sent_at[n]) for n in sorted(self.sent))
        return AlertRecord(
            id=self.id,
            key=self.key,
            severity=self.severity.value,
            summary=self.summary,
            opened_at=self.opened_at,
            chain=self.chain,
            escalated_at=self.escalated_at,
            level=self.level,
            sent=sent,
            last_sent_at=self.last_sent_at,
            external=self.external,
            acked_by=self.acked_by,
            acked_at=self.acked_at,
            resolved_at=self.resolved_at,
        )

    @classmethod
    def of(cls, r: AlertRecord) -> Alert:
        """The alert the store kept as ``r``."""
        return cls(
            r.id, r.key, Severity(r.severity), r.summary, r.opened_at, r.escalated_at, r.chain,
            level=r.level,
            sent={n.level: n.message_id for n in r.sent},
            sent_at={n.level: n.at for n in r.sent},
            last_sent_at=r.last_sent_at,
            external=r.external,
            acked_by=r.acked_by,
            acked_at=r.acked_at,
            resolved_at=r.resolved_at,
        )  # fmt: skip


@attrs.define
class AlertManager:
    settings: AlertingSettings
    host: Host
    wedding_day: Callable[[], bool]
    alerts: dict[str, Alert] = attrs.Factory(dict)  # open alerts by key
    conditions: Conditions = attrs.Factory(lambda self: Conditions(self.host), takes_self=True)
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))
    _own: set[int] = attrs.Factory(set)  # ids of the alert messages we sent
    _kept: dict[int, AlertRecord] = attrs.Factory(dict)  # each alert as the store holds it
    _closing: list[Alert] = attrs.Factory(list)  # resolved, not yet kept so
    _started_at: float = 0.0  # when this run took up the alerts of the last

    # -- start ---------------------------------------------------------------------------

    async def restore(self) -> None:
        """Take up the alerts open at the last stop, where they stood (see the module)."""
        records = await self.host.open_alerts()
        self._ids = itertools.count(await self.host.last_alert_id() + 1)
        self._started_at = now = self.host.wall()
        for record in records:
            self._take_up(Alert.of(record), record, now)
        await self.conditions.restore(records, self.settings, now)
        if records:
            acked = sum(1 for r in records if r.acked_by is not None)
            log.warning(
                "alerts open at the last stop", extra=fields(open=len(records), acked=acked)
            )

    def _take_up(self, alert: Alert, record: AlertRecord, now: float) -> None:
        earlier = self.alerts.get(alert.key)
        if earlier is not None and earlier.id != alert.id:  # never kept so; one per cause
            earlier.resolved_at = now
            self._closing.append(earlier)
        self.alerts[alert.key] = alert
        self._kept[alert.id] = record
        self._own.update(alert.sent.values())

    # -- what the daemon tells it ------------------------------------------------------

    def observe_settles(self, settles: Sequence[Settle], now: float) -> None:
        """Count dead letters, except those of alert messages (no alerts about alerts)."""
        for s in settles:
            if s.kind is SettleKind.DEAD_LETTERED:
                self.observe_dead(s.message_id, s.target, now)

    def observe_dead(self, message_id: int, target: str, at: float) -> None:
        """One dead letter (here, or on another node: ``_alert_feed``), unless an alert's own."""
        if message_id not in self._own:
            self.conditions.dead.append((at, target))

    async def ack(self, alert_id: int, by: str = "operator") -> AlertView:
        """Acknowledge by id (the CLI), durably; tell the PagerDuty channels it reached.

        KeyError if no open alert has that id; the store's error if it cannot keep the ack
        (the alert is then not acknowledged)."""
        for alert in list(self.alerts.values()):
            if alert.id == alert_id:
                if await self._acknowledge(alert, by):
                    await self._pass_on_ack(alert)
                return alert.view()
        raise KeyError(alert_id)

    async def ack_key(self, key: str, by: str) -> bool:
        """Acknowledge by cause (PagerDuty's ``incident_key``); was an open alert acked?"""
        alert = self.alerts.get(key)
        return alert is not None and await self._acknowledge(alert, by)

    async def _acknowledge(self, alert: Alert, by: str) -> bool:
        """Kept before it is answered: an ack the operator was told of survives any stop."""
        if alert.acked:
            return False
        record = attrs.evolve(alert.record(), acked_by=by, acked_at=self.host.wall())
        alert.acked_by, alert.acked_at = record.acked_by, record.acked_at  # no tick pages now
        try:
            await self.host.save_alert(record)
        except Exception:
            alert.acked_by = alert.acked_at = None  # not kept: not acknowledged
            raise
        self._kept[alert.id] = record
        self.host.audit(EventKind.ALERT_ACKED, alert=alert.id, key=alert.key, by=by)
        log.warning("alert acknowledged", extra=fields(alert=alert.id, by=by))
        return True

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
        self.conditions.external[key] = (severity, summary)

    def cleared(self, key: str) -> None:
        self.conditions.external.pop(key, None)

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
        wanted = await self.conditions.holding(self.settings, self.wedding_day(), now)
        keys = {key for key, _, _ in wanted}
        for key, severity, summary in wanted:
            await self._raise(key, severity, summary, now)
        for key in [k for k in self.alerts if k not in keys]:
            await self._resolve(self.alerts.pop(key), now)
        for alert in list(self.alerts.values()):
            if not alert.acked:
                await self._follow_up(alert, now)
        await self._keep()

    async def _keep(self) -> None:
        """Write each alert whose position moved since the store last took it."""
        while self._closing:
            await self._keep_one(self._closing[0])
            self._kept.pop(self._closing.pop(0).id, None)
        for alert in list(self.alerts.values()):
            await self._keep_one(alert)

    async def _keep_one(self, alert: Alert) -> None:
        record = alert.record()
        kept = self._kept.get(alert.id)
        if kept is None or attrs.evolve(kept, summary=record.summary) != record:
            await self.host.save_alert(record)
            self._kept[alert.id] = record

    # -- one alert -----------------------------------------------------------------------

    async def _raise(self, key: str, severity: Severity, summary: str, now: float) -> None:
        alert = self.alerts.get(key)
        if alert is not None:
            alert.summary = summary  # the same cause: one alert, kept current
            return
        external = key in self.conditions.external
        alert = self.alerts[key] = Alert(
            next(self._ids), key, severity, summary, now, now, self.chain, external=external
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
        # The daemon being down is not the channel's fault: its time counts from the start.
        since = max(alert.sent_at[alert.level], self._started_at)
        late = now - since >= self.settings.channel_timeout_seconds
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

    async def _resolve(self, alert: Alert, now: float) -> None:
        alert.resolved_at = now
        self._closing.append(alert)
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
