"""Wedding-day mode, alerts and preflight through the real CLI and daemon process."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .procs import ROOT, Daemon, Simulator, config_for, email, ringbearer, running

SIGNATURE = "X-PagerDuty-Signature"

pytestmark = pytest.mark.e2e


def preflight(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ringbearer("preflight", "-c", str(config)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
        env={**os.environ, **env},
    )


def test_preflight_names_a_misconfigured_provider_and_exits_non_zero(tmp_path: Path) -> None:
    """Against the sandbox: ready (exit 0); with Resend's key refused, it names Resend (exit 1)."""
    config = tmp_path / "config.toml"
    config.write_text(config_for(tmp_path))
    ready = preflight(config)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "ready with warnings: 19 integrations" in ready.stdout
    refused = preflight(config, RESEND_API_KEY="invalid")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    failing = [line for line in refused.stdout.splitlines() if " fail " in f" {line} "]
    assert failing and all("resend" in line or line.startswith(" ") for line in failing)
    assert "credentials refused" in refused.stdout
    assert refused.stdout.rstrip().splitlines()[-1].startswith("not ready")


def test_wedding_day_from_the_cli_freezes_changes_and_shows_the_mode(tmp_path: Path) -> None:
    """`wedding-day on --until 2h`: status shows it and why; pause needs --force; off again."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        shown = daemon.cli("wedding-day", "on", "--until", "2h")
        assert shown.returncode == 0, shown.stderr
        assert "wedding-day mode on (operator until" in shown.stdout
        status = json.loads(daemon.cli("status", "--json").stdout)
        assert status["mode"] == "wedding_day" and status["wedding_day"]["cause"] == "operator"
        frozen = daemon.cli("pause", "slack")
        assert frozen.returncode == 1 and "needs --force" in frozen.stderr
        forced = daemon.cli("pause", "slack", "--force")
        assert forced.returncode == 0, forced.stderr
        assert daemon.cli("resume", "slack", "--force").returncode == 0
        sent = daemon.cli(
            "send",
            "email",
            "--payload",
            json.dumps(email(1)["payload"]),
            "--priority",
            "critical",
            "--deliver-by",
            "10m",
        )
        assert sent.returncode == 0, sent.stderr
        daemon.wait_idle(60)
        assert daemon.cli("alerts").stdout.strip() == "no open alerts"
        off = daemon.cli("wedding-day", "auto")
        assert off.returncode == 0 and "following the calendar" in off.stdout
        assert daemon.status()["mode"] == "normal"
        assert daemon.cli("alerts", "ack", "99").returncode == 1
    kinds = daemon.log_text()
    assert "wedding-day mode on" in kinds and "forced during the wedding-day freeze" in kinds


def test_examples_file_is_where_the_tests_expect_it() -> None:
    """The example messages the README points at exist, one JSON object a line."""
    lines = (ROOT / "examples" / "every-integration.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_a_pagerduty_acknowledgement_reaches_the_daemon_over_its_webhook(tmp_path: Path) -> None:
    """A dead letter pages PagerDuty; PagerDuty's signed webhook acks it; a forged one cannot."""
    sim = Simulator(tmp_path / "simulator.log")
    extra_alerting = 'chain = ["pagerduty", "phone"]\ntick_seconds = 0.2'
    text = config_for(tmp_path, sim).replace('chain = ["slack", "sms", "phone"]', extra_alerting)
    secret = "whsec_e2e_canary"
    daemon = Daemon(tmp_path, text, env={"PAGERDUTY_WEBHOOK_SECRET": secret}).start()
    try:
        sim.fault("resend", permanent_rate=1.0)  # refused: a dead letter, and so an alert
        daemon.call("submit", {"messages": [email(1)]})
        daemon.wait_idle()
        waited = sim.http.get("/_sim/wait", params={"provider": "pagerduty", "accepted": 1})
        assert waited.status_code == 200, waited.text
        (alert,) = json.loads(daemon.cli("alerts", "--json").stdout)["alerts"]
        assert alert["channels"] == ["pagerduty"] and not alert["acked"]
        (sent,) = sim.http.get("/_sim/requests", params={"provider": "pagerduty"}).json()[
            "pagerduty"
        ]
        assert json.loads(sent["body"])["dedup_key"] == alert["key"]

        body = json.dumps(
            {
                "event": {
                    "event_type": "incident.acknowledged",
                    "agent": {"summary": "On-call Photographer"},
                    "data": {"type": "incident", "incident_key": alert["key"]},
                }
            }
        ).encode()
        url = daemon.status()["webhooks"] + "/pagerduty/webhook"
        forged = "v1=" + hmac.new(b"a guess", body, hashlib.sha256).hexdigest()
        assert httpx.post(url, content=body, headers={SIGNATURE: forged}).status_code == 401
        assert not json.loads(daemon.cli("alerts", "--json").stdout)["alerts"][0]["acked"]
        good = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert httpx.post(url, content=body, headers={SIGNATURE: good}).status_code == 200
        (acked,) = json.loads(daemon.cli("alerts", "--json").stdout)["alerts"]
        assert acked["acked"] is True
        audit = daemon.cli("audit", "--kind", "alert_acked", "--json")
        assert "pagerduty (On-call Photographer)" in audit.stdout
    finally:
        assert daemon.stop() == 0, daemon.log_text()
        sim.stop()
    assert secret not in daemon.log_text()


def test_a_wedding_day_on_the_real_daemon_with_resend_down_and_mailgun_slow(
    tmp_path: Path,
) -> None:
    """The real daemon, store and simulator, the mode on for a few seconds: every critical
    email goes out before its deadline by Mailgun; bulk waits in the store, untouched, and
    all of it goes out once the mode ends; each email reaches a provider exactly once."""
    sim = Simulator(tmp_path / "simulator.log")
    try:
        with running(tmp_path, config_for(tmp_path, sim)) as daemon:
            sim.fault("resend", outage=True)
            sim.fault("mailgun", latency_ms=300)
            on = daemon.cli("wedding-day", "on", "--until", "6s")
            assert on.returncode == 0, on.stderr
            deliver_by = time.time() + 60
            critical = [email(n, priority="critical", deliver_by=deliver_by) for n in range(10)]
            bulk = [email(100 + n, priority="bulk") for n in range(30)]
            accepted = daemon.call("submit", {"messages": bulk + critical})["accepted"]
            daemon.wait_idle(120)  # deferred bulk counts as queued: idle means all of it went
        db = sqlite3.connect(tmp_path / "state" / "ringbearer.db")
        (on_at,) = db.execute("SELECT at FROM events WHERE kind = 'wedding_day_on'").fetchone()
        (off_at,) = db.execute("SELECT at FROM events WHERE kind = 'wedding_day_off'").fetchone()
        ours = ",".join(str(a["id"]) for a in accepted)  # not the alerts the outage raised
        rows = db.execute(
            "SELECT id, priority, status, delivered_at, deliver_by FROM messages"
            f" WHERE id IN ({ours})"
        ).fetchall()
        bulk_ids = {a["id"] for a in accepted[:30]}
        first_bulk_try = db.execute(
            f"SELECT MIN(at) FROM events WHERE kind = 'attempted' "
            f"AND message_id IN ({','.join(map(str, bulk_ids))})"
        ).fetchone()[0]
        db.close()
        assert len(rows) == 40 and {r[2] for r in rows} == {"delivered"}
        for _, _, _, delivered_at, due in (r for r in rows if r[0] not in bulk_ids):
            assert on_at <= delivered_at <= off_at and delivered_at <= due
        assert first_bulk_try >= off_at  # nothing of the bulk was tried during the day
        keys = {a["key"] for a in accepted}
        seen: dict[str, int] = {}
        for provider in ("resend", "mailgun", "smtp"):
            counts = sim.http.get("/_sim/keys", params={"provider": provider}).json()[provider]
            for key, count in counts.items():
                seen[key] = seen.get(key, 0) + count
        assert seen == dict.fromkeys(keys, 1)
    finally:
        sim.stop()
