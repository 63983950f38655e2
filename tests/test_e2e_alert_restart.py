"""Alerts survive a restart of the real daemon: an acknowledged alert is not paged again.

Slack and Twilio SMS refuse every message (the simulator's permanent fault),
so each raises a dead-letter alert, sent by email through Resend and repeated
every second while unacknowledged. The Slack alert is acknowledged with
``ringbearer alerts ack ID``; the daemon is stopped (SIGTERM, or kill -9 right
after the ack's reply) and started again on the same state folder.

Afterwards the SMS alert, never acknowledged, goes on repeating: each of its
repeats is a tick of the alert manager that passed. Over at least three of
them Resend takes no new email for the Slack alert (the simulator counts each
idempotency key it accepted, and alert message keys start ``alert:ID:``),
the daemon records no notification for it after the ack, and ``ringbearer
alerts`` still lists it, acknowledged, under its id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .procs import Daemon, Simulator, config_for, running

pytestmark = pytest.mark.e2e

BOUND = 60.0  # seconds any wait of this test may take
CAUSES = [
    {"target": "slack", "payload": {"text": "The florist moved the delivery to 10:00."}},
    {"target": "sms", "payload": {"to": "+15558675310", "body": "Cake at 16:00."}},
]
REPEATS_AFTER_RESTART = 3


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def alert_config(workdir: Path, sim: Simulator) -> str:
    """The shipped config: alerts by email through Resend, a fast tick, a repeat each second."""
    text = config_for(workdir, sim)
    for old, new in (
        ('chain = ["slack", "sms", "phone"]', 'chain = ["resend"]\ntick_seconds = 0.2'),
        ('wedding_day_chain = ["slack", "phone"]', 'wedding_day_chain = ["resend"]'),
        ("repeat_seconds = 1800", "repeat_seconds = 1"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def emails_for(sim: Simulator, alert_id: int) -> set[str]:
    """The idempotency keys of the alert emails Resend accepted for ``alert_id``."""
    keys: dict[str, int] = sim.http.get("/_sim/keys", params={"provider": "resend"}).json()[
        "resend"
    ]
    return {key for key in keys if key.startswith(f"alert:{alert_id}:")}


def accepted(sim: Simulator) -> int:
    count: int = sim.stats()["resend"]["accepted"]
    return count


def wait_until(sim: Simulator, done: Any, deadline: float) -> None:
    """Wait, bounded by ``deadline``, until ``done()``: each round blocks on Resend's next send."""
    while not done():
        left = deadline - time.monotonic()
        assert left > 0, "timed out"
        params: dict[str, str | int | float] = {
            "provider": "resend",
            "accepted": accepted(sim) + 1,
            "timeout": min(left, 5.0),
        }
        sim.http.get("/_sim/wait", params=params, timeout=left + 10)


def open_alerts(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """``ringbearer alerts --json``, by cause."""
    shown = daemon.cli("alerts", "--json")
    assert shown.returncode == 0, shown.stderr
    return {a["key"]: a for a in json.loads(shown.stdout)["alerts"]}


def raise_both_and_ack_slack(daemon: Daemon, sim: Simulator) -> tuple[int, int]:
    """Both alerts paged by email; the Slack one acknowledged through the CLI: their ids."""
    daemon.call("submit", {"messages": CAUSES})
    deadline = time.monotonic() + BOUND

    def both_paged() -> bool:
        alerts = open_alerts(daemon)
        return all(
            key in alerts and emails_for(sim, alerts[key]["id"])
            for key in ("dead_letters:slack", "dead_letters:sms")
        )

    wait_until(sim, both_paged, deadline)
    alerts = open_alerts(daemon)
    slack, sms = alerts["dead_letters:slack"]["id"], alerts["dead_letters:sms"]["id"]
    acked = daemon.cli("alerts", "ack", str(slack))
    assert acked.returncode == 0, acked.stderr
    return slack, sms


def assert_quiet_after_restart(daemon: Daemon, sim: Simulator, slack: int, sms: int) -> None:
    """Over several repeats of the SMS alert, nothing new for the acknowledged Slack alert."""
    before = emails_for(sim, slack)
    sms_before = emails_for(sim, sms)
    deadline = time.monotonic() + BOUND
    wait_until(
        sim, lambda: len(emails_for(sim, sms) - sms_before) >= REPEATS_AFTER_RESTART, deadline
    )
    alerts = open_alerts(daemon)
    assert (alerts["dead_letters:slack"]["id"], alerts["dead_letters:slack"]["acked"]) == (
        slack,
        True,
    )
    assert (alerts["dead_letters:sms"]["id"], alerts["dead_letters:sms"]["acked"]) == (sms, False)
    events = daemon.call("audit", {"kinds": ["alert_sent", "alert_acked", "alert_raised"]})
    ours = [e for e in events["events"] if e["detail"].get("alert") == slack]
    (ack,) = [e for e in ours if e["kind"] == "alert_acked"]
    assert all(e["id"] < ack["id"] for e in ours if e["kind"] != "alert_acked")
    raised = [e for e in events["events"] if e["kind"] == "alert_raised"]
    assert sorted(e["detail"]["key"] for e in raised) == ["dead_letters:slack", "dead_letters:sms"]
    assert emails_for(sim, slack) <= before | sent_before_the_ack(daemon, ours)


def sent_before_the_ack(daemon: Daemon, events: list[dict[str, Any]]) -> set[str]:
    """Keys of the alert's messages submitted before its ack: a stop may deliver one late."""
    keys = set()
    for event in events:
        if event["kind"] == "alert_sent":
            keys.add(daemon.call("message", {"id": event["detail"]["message"]})["idempotency_key"])
    return keys


def test_an_acked_alert_is_not_paged_again_after_sigterm_and_a_start(
    tmp_path: Path, sim: Simulator
) -> None:
    """SIGTERM, start on the same state: the acked alert stays quiet and listed acked."""
    sim.fault("slack-webhook", permanent_rate=1.0)
    sim.fault("twilio-sms", permanent_rate=1.0)
    text = alert_config(tmp_path, sim)
    with running(tmp_path, text) as daemon:
        slack, sms = raise_both_and_ack_slack(daemon, sim)
        assert daemon.stop() == 0
        daemon.start()
        assert_quiet_after_restart(daemon, sim, slack, sms)
    log = (tmp_path / "daemon.log").read_text()
    assert "alerts open at the last stop" in log


def test_an_ack_answered_survives_kill_9(tmp_path: Path, sim: Simulator) -> None:
    """kill -9 right after the ack's reply: the ack was already durable; nothing is re-paged."""
    sim.fault("slack-webhook", permanent_rate=1.0)
    sim.fault("twilio-sms", permanent_rate=1.0)
    text = alert_config(tmp_path, sim)
    daemon = Daemon(tmp_path, text).start()
    try:
        slack, sms = raise_both_and_ack_slack(daemon, sim)
        daemon.kill9()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
    with running(tmp_path, text) as again:
        assert_quiet_after_restart(again, sim, slack, sms)
