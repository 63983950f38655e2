"""The alert manager on its own: repeats, resolution, chains, grouping, acknowledgements."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from ringbearer._actor import ActorSnapshot
from ringbearer._alerting import AlertManager
from ringbearer._alerting_settings import AlertingSettings
from ringbearer._secrets import Secret
from ringbearer.control import MessageIn
from ringbearer.control._replies import Severity
from ringbearer.listener import PagerDutyHook, _pagerduty
from ringbearer.listener._http import Request, Response
from ringbearer.listener._refusals import Refusals
from ringbearer.store import AlertRecord, Event, EventKind

KINDS = {"slack": "slack_webhook", "sms": "twilio_sms", "phone": "twilio_call", "pd": "pagerduty"}
SECRET = Secret("whsec_test")


@attrs.define
class Host:
    """The daemon as the alert manager sees it; time moves only when a test says so."""

    now: float = 1_800_000_000.0
    down: set[str] = attrs.Factory(set)
    sent: list[MessageIn] = attrs.Factory(list)
    states: dict[int, str] = attrs.Factory(dict)
    deadlines: list[tuple[int, str, float]] = attrs.Factory(list)
    events: list[tuple[str, dict[str, Any]]] = attrs.Factory(list)
    kept: dict[int, AlertRecord] = attrs.Factory(dict)  # the store's alerts, by id
    dead: list[tuple[float, str]] = attrs.Factory(list)  # the store's dead letters

    def wall(self) -> float:
        return self.now

    def snapshots(self) -> list[ActorSnapshot]:
        return []

    def can_deliver(self, target: str) -> bool:
        return target not in self.down

    def kind_of(self, target: str) -> str:
        return KINDS.get(target, "slack_webhook")

    async def send_alert(self, message: MessageIn) -> int:
        self.sent.append(message)
        self.states[len(self.sent)] = "delivered"
        return len(self.sent)

    async def message_states(self, ids: Sequence[int]) -> dict[int, str]:
        return {i: self.states[i] for i in ids}

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        return [d for d in self.deadlines if d[2] <= wall]

    async def dead_letters_since(self, wall: float, target: str) -> list[float]:
        return sorted(at for at, t in self.dead if t == target and at >= wall)

    def audit(self, kind: EventKind, **detail: object) -> None:
        self.events.append((kind, detail))

    async def save_alert(self, alert: AlertRecord) -> None:
        self.kept[alert.id] = alert

    async def open_alerts(self) -> list[AlertRecord]:
        return [a for _, a in sorted(self.kept.items()) if a.is_open]

    async def last_alert_id(self) -> int:
        return max(self.kept, default=0)

    def to(self, target: str) -> list[MessageIn]:
        return [m for m in self.sent if m.target == target]


def manager(host: Host, wedding: list[bool] | None = None, **settings: Any) -> AlertManager:
    flag = wedding if wedding is not None else [False]
    defaults: dict[str, Any] = {
        "chain": ("slack", "sms", "phone"),
        "wedding_day_chain": ("slack", "phone"),
        "escalate_after_seconds": 300.0,
        "wedding_day_escalate_after_seconds": 120.0,
        "repeat_seconds": 1800.0,
        "phone": "+15558675310",
    }
    return AlertManager(AlertingSettings(**(defaults | settings)), host, lambda: flag[0])


async def run_for(alerts: AlertManager, host: Host, seconds: float, step: float = 5.0) -> None:
    """Tick every ``step`` seconds of the host's wall clock."""
    end = host.now + seconds
    while host.now < end:
        host.now += step
        await alerts.tick()


async def test_an_alert_repeats_then_resolves_on_every_channel_it_reached() -> None:
    """Unacknowledged, an alert repeats; when its cause clears, every channel it reached hears."""
    host = Host()
    alerts = manager(host, chain=("slack", "sms"), escalate_after_seconds=10_000.0)
    alerts.found("boom", Severity.CRITICAL, "the boiler is on fire")
    await alerts.tick()
    assert [m.target for m in host.sent] == ["slack"]
    assert host.sent[0].priority == "critical"
    await run_for(alerts, host, 3 * 1800)
    assert len(host.to("slack")) == 4  # the first, then one every repeat_seconds
    assert host.to("sms") == []  # escalation not due yet
    alerts.cleared("boom")
    await alerts.tick()
    assert alerts.views() == []
    assert sum("RESOLVED" in m.payload["text"] for m in host.to("slack")) == 1
    assert ("alert_resolved", {"alert": 1, "key": "boom"}) in host.events


async def test_on_a_wedding_day_the_shorter_chain_reaches_the_phone() -> None:
    """Saturday: slack, then straight to a phone call after the shorter escalation time."""
    host = Host()
    alerts = manager(host, wedding=[True])
    alerts.found("boom", Severity.CRITICAL, "resend is down")
    await alerts.tick()
    await run_for(alerts, host, 125)
    assert [m.target for m in host.sent] == ["slack", "phone"]
    assert host.sent[1].payload["to"] == "+15558675310"
    assert "resend is down" in host.sent[1].payload["say"]


async def test_an_alert_keeps_the_chain_it_was_raised_with() -> None:
    """The mode changing mid-alert does not send its escalation to another chain's position."""
    host = Host()
    wedding = [False]
    alerts = manager(host, wedding=wedding)
    alerts.found("boom", Severity.CRITICAL, "down")
    await alerts.tick()
    wedding[0] = True  # midnight: the wedding-day chain (slack, phone) is now in force
    await run_for(alerts, host, 125)  # the wedding day's shorter escalation time
    assert [m.target for m in host.sent] == ["slack", "sms"]  # its own chain's next step
    assert alerts.views()[0].channels == ["slack", "sms"]


async def test_deadlines_of_one_target_are_one_alert() -> None:
    """Many endangered deadlines to one group page once, naming the count and the nearest."""
    host = Host(down={"email"})
    host.deadlines = [(7, "email", host.now + 500), (3, "email", host.now + 200)]
    host.deadlines += [(9, "sms", host.now + 100)]  # sms can deliver, but its time is short
    alerts = manager(host, deadline_warning_seconds=600.0)
    await alerts.tick()
    keys = sorted(a.key for a in alerts.views())
    assert keys == ["deadline:email", "deadline:sms"]
    (email,) = [a for a in alerts.views() if a.key == "deadline:email"]
    assert "2 message(s)" in email.summary
    assert "nearest: message 3" in email.summary
    assert "cannot deliver now" in email.summary


def webhook_request(body: bytes, signature: str | None) -> Request:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-pagerduty-signature"] = signature
    path = "/pagerduty/webhook"
    return Request("POST", path, path, "", headers, "127.0.0.1", body)


class Audit:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def append_event(self, event: Event) -> None:
        self.events.append(event)


def pagerduty(alerts: AlertManager, audit: Audit | None = None) -> Any:
    """The listener's PagerDuty route, answering one request at a time."""
    hook = PagerDutyHook(SECRET, alerts.ack_key)
    refusals = Refusals(audit or Audit(), lambda: 0.0)

    async def answer(request: Request) -> Response:
        return await _pagerduty.answer(hook, refusals, request)

    return answer


def sign(body: bytes, secret: Secret = SECRET) -> str:
    return "v1=" + hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()


def incident_event(event_type: str, incident_key: str) -> bytes:
    """A V3 webhook body as PagerDuty posts it (the fields we read, and a few we do not)."""
    event = {
        "event": {
            "id": "01DEN0S0Z0RMMUZQVEHBHRE2K4",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2027-01-16T14:02:11.112Z",
            "agent": {"id": "PLH1HKV", "type": "user_reference", "summary": "Tenex Engineer"},
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "status": event_type.removeprefix("incident."),
                "incident_key": incident_key,
                "title": "resend is down",
            },
        }
    }
    return json.dumps(event).encode()


async def test_a_pagerduty_acknowledgement_stops_escalation() -> None:
    """A signed incident.acknowledged webhook acks the alert whose dedup key it names."""
    host = Host()
    alerts = manager(host, chain=("pd", "phone"))
    alerts.found("breaker_open:resend", Severity.CRITICAL, "resend: breaker open for 300 s")
    await alerts.tick()
    (trigger,) = host.sent
    assert trigger.payload["dedup_key"] == "breaker_open:resend"
    answer = pagerduty(alerts)
    body = incident_event("incident.acknowledged", "breaker_open:resend")
    other = sign(body, Secret("an old secret"))
    response = await answer(webhook_request(body, f"{other},{sign(body)}"))  # rotation: two
    assert response.status == 200
    assert alerts.views()[0].acked is True
    assert (
        "alert_acked",
        {"alert": 1, "key": "breaker_open:resend", "by": "pagerduty (Tenex Engineer)"},
    ) in host.events
    await run_for(alerts, host, 4 * 3600)
    assert len(host.sent) == 1  # no escalation to the phone, no repeats
    assert not any(m.payload.get("event_action") == "acknowledge" for m in host.sent)


@pytest.mark.parametrize(
    "signature",
    [None, "", "v1=" + "0" * 64, "v0=whatever", "sha256=abc"],
    ids=["missing", "empty", "wrong", "other-version", "other-scheme"],
)
async def test_a_webhook_without_a_valid_signature_changes_nothing(signature: str | None) -> None:
    """No matching v1 signature: 401, and the alert stays unacknowledged."""
    host = Host()
    alerts = manager(host, chain=("pd",))
    alerts.found("boom", Severity.CRITICAL, "down")
    await alerts.tick()
    answer = pagerduty(alerts)
    response = await answer(
        webhook_request(incident_event("incident.acknowledged", "boom"), signature)
    )
    assert response.status == 401
    assert alerts.views()[0].acked is False


async def test_signed_webhooks_that_ack_nothing_still_answer_2xx() -> None:
    """Other event types, unknown incidents and pings are taken (PagerDuty retries failures)."""
    host = Host()
    alerts = manager(host, chain=("pd",))
    alerts.found("boom", Severity.CRITICAL, "down")
    await alerts.tick()
    answer = pagerduty(alerts)
    for body in (
        incident_event("incident.triggered", "boom"),
        incident_event("incident.acknowledged", "someone-elses-incident"),
        json.dumps({"event": {"event_type": "pagey.ping", "data": None}}).encode(),
    ):
        assert (await answer(webhook_request(body, sign(body)))).status == 200
    assert alerts.views()[0].acked is False
    bad = b'{"event": [1, 2]}'
    assert (await answer(webhook_request(bad, sign(bad)))).status == 400
    assert (await answer(webhook_request(b"not json", sign(b"not json")))).status == 400


async def test_an_operator_ack_acknowledges_the_pagerduty_incident_too() -> None:
    """`alerts ack` stops our escalation and tells PagerDuty, which pages on its own otherwise."""
    host = Host()
    alerts = manager(host, chain=("slack", "pd"), escalate_after_seconds=60.0)
    alerts.found("boom", Severity.CRITICAL, "down")
    await alerts.tick()
    await run_for(alerts, host, 65)
    assert [m.target for m in host.sent] == ["slack", "pd"]
    view = await alerts.ack(1)
    assert view.acked is True
    (ack,) = [m for m in host.sent if m.payload.get("event_action") == "acknowledge"]
    assert ack.target == "pd"
    assert ack.payload == {"event_action": "acknowledge", "dedup_key": "boom"}
    assert ack.priority == "critical"
    await alerts.ack(1)  # a second ack changes nothing and sends nothing
    assert len(host.sent) == 3
    with pytest.raises(KeyError):
        await alerts.ack(99)
