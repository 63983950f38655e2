"""Alerts by email, end to end: the real daemon and simulator, each email kind as the channel.

A Slack message refused by the simulator becomes a dead letter, the dead
letter an alert, and the alert an email through the first channel of the
chain: Resend, Mailgun or SMTP. The simulator must have taken that email,
addressed to ``[alerting] email_to`` and naming the alert.

What the simulator keeps differs: Resend's JSON body and Mailgun's form are
in ``/_sim/requests``; of an SMTP message it keeps only the ``Message-ID``
(``/_sim/keys``), so there the message is matched by its id to the alert
message in the daemon's store, whose payload names the recipient and subject.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from ringbearer.integrations._smtp import message_id

from .procs import Daemon, Simulator, config_for, running

pytestmark = pytest.mark.e2e

ONCALL = "oncall-e2e@example.com"
CAUSE = {"target": "slack", "payload": {"text": "The florist moved the delivery to 10:00."}}
BOUND = 60.0  # seconds any wait of this test may take


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def email_alert_config(workdir: Path, sim: Simulator, kind: str) -> str:
    """The shipped config with both chains ``[kind]``, a fast tick and our own ``email_to``."""
    text = config_for(workdir, sim)
    for old, new in (
        ('chain = ["slack", "sms", "phone"]', f'chain = ["{kind}"]\ntick_seconds = 0.2'),
        ('wedding_day_chain = ["slack", "phone"]', f'wedding_day_chain = ["{kind}"]'),
        ('email_to = "oncall@example.com"', f'email_to = "{ONCALL}"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def wait_accepted(sim: Simulator, provider: str, count: int, deadline: float) -> None:
    """Block (bounded by ``deadline``) until ``provider`` has accepted ``count`` requests."""
    left = deadline - time.monotonic()
    assert left > 0, f"{provider} never received the alert email"
    params: dict[str, str | int | float] = {
        "provider": provider,
        "accepted": count,
        "timeout": left,
    }
    waited = sim.http.get("/_sim/wait", params=params, timeout=left + 10)
    assert waited.status_code == 200, f"{provider}: {waited.text}"


def alert_email(kind: str, seen: dict[str, Any]) -> dict[str, Any] | None:
    """The recipients, subject, text and key of an email the provider received; None if not one."""
    if kind == "resend" and seen["path"] == "/emails":
        body = json.loads(seen["body"])
        key = seen["headers"].get("idempotency-key")
        return {"to": body["to"], "subject": body["subject"], "text": body["text"], "key": key}
    if kind == "mailgun" and seen["path"].endswith("/messages"):
        form = parse_qs(seen["body"])
        return {
            "to": form["to"],
            "subject": form["subject"][0],
            "text": form["text"][0],
            "key": form["v:ringbearer-key"][0],
        }
    return None


def received(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    """The emails the provider took: bodies for HTTP providers, Message-IDs for SMTP."""
    if kind == "smtp":
        keys = sim.http.get("/_sim/keys", params={"provider": "smtp"}).json()["smtp"]
        return [{"message_id": key} for key in keys]
    seen = sim.http.get("/_sim/requests", params={"provider": kind}).json()[kind]
    return [email for email in (alert_email(kind, s) for s in seen) if email is not None]


def first_email(sim: Simulator, kind: str) -> dict[str, Any]:
    """Wait for the provider to take an email, however many other requests it also took."""
    deadline = time.monotonic() + BOUND
    count = 1
    while True:
        wait_accepted(sim, kind, count, deadline)
        emails = received(sim, kind)
        if emails:
            return emails[0]
        count += 1


def alert_message(daemon: Daemon, alert_id: int) -> dict[str, Any]:
    """The message the daemon sent for the alert, as ``ringbearer message`` shows it."""
    events = daemon.call("audit", {"kinds": ["alert_sent"]})["events"]
    (sent,) = [e for e in events if e["detail"]["alert"] == alert_id]
    message: dict[str, Any] = daemon.call("message", {"id": sent["detail"]["message"]})
    return message


def stored_payload(workdir: Path, number: int) -> dict[str, Any]:
    """The payload of message ``number`` as the daemon stored (and so sent) it."""
    db = sqlite3.connect(workdir / "state" / "ringbearer.db")
    try:
        (payload,) = db.execute("SELECT payload FROM messages WHERE id = ?", (number,)).fetchone()
    finally:
        db.close()
    found: dict[str, Any] = json.loads(payload)
    return found


@pytest.mark.parametrize("kind", ["resend", "mailgun", "smtp"])
def test_a_dead_letter_alert_reaches_email_to_by_each_email_kind(
    tmp_path: Path, sim: Simulator, kind: str
) -> None:
    """With an email channel first in the chain, an alert is an email to email_to naming it."""
    sim.fault("slack-webhook", permanent_rate=1.0)  # refused: a dead letter, and so an alert
    with running(tmp_path, email_alert_config(tmp_path, sim, kind)) as daemon:
        daemon.call("submit", {"messages": [CAUSE]})
        email = first_email(sim, kind)
        daemon.wait_idle(BOUND)  # the delivery is settled in the store too
        (alert,) = daemon.call("alerts")["alerts"]
        assert (alert["key"], alert["severity"], alert["channels"]) == (
            "dead_letters:slack",
            "warning",
            [kind],
        )
        message = alert_message(daemon, alert["id"])
        assert (message["target"], message["status"]) == (kind, "delivered")
        # Stored sealed under the on-call address's key; opened, it is what was sent.
        export = daemon.call("subject-export", {"subject": ONCALL})
        (payload,) = [m["payload"] for m in export["messages"] if m["id"] == message["id"]]
    subject = f"[ringbearer WARNING] {alert['summary']}"
    ack = f"ringbearer alerts ack {alert['id']}"
    assert alert["summary"].startswith("slack: 1 dead letter(s)")
    if kind == "smtp":
        # The SMTP server took the very message the daemon composed for the alert.
        assert email["message_id"] == message["provider_id"]
        assert email["message_id"] == message_id(message["idempotency_key"])
    else:
        assert (email["to"], email["subject"]) == ([ONCALL], subject)
        assert ack in email["text"] and email["key"] == message["idempotency_key"]
    assert (payload["to"], payload["subject"]) == (ONCALL, subject)
    assert ack in payload["text"]
    stored = stored_payload(tmp_path, message["id"])
    assert stored["sealed"] == 1 and ONCALL not in json.dumps(stored)
