"""End to end: the real ``ringbearer`` process, the real simulator, a real SQLite file."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from pathlib import Path

import httpx
import pytest

from ringbearer import RequestError, _config
from ringbearer.control import PROTOCOL_VERSION

from .procs import ROOT, SHIPPED_CONFIG, Daemon, Simulator, config_for, email, running, write_jsonl

EXAMPLES = ROOT / "examples" / "every-integration.jsonl"

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim(tmp_path: Path) -> object:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    assert found, f"{name}{{{wanted}}} not in the scrape"
    return float(found.group(1))


def test_shipped_config_delivers_1000_emails_exactly_once(tmp_path: Path) -> None:
    """The shipped config (its own sandbox): 1,000 emails all reach it once, counted delivered."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        messages = write_jsonl(tmp_path / "m.jsonl", [email(i) for i in range(1000)])
        sent = daemon.cli("send", "--file", str(messages), "--json")
        assert sent.returncode == 0, sent.stderr
        keys = {a["key"] for a in json.loads(sent.stdout)["accepted"]}
        assert len(keys) == 1000
        daemon.wait_idle()
        status = daemon.status()
        stats = httpx.get(f"{status['sandbox']}/_sim/stats?provider=resend").json()["resend"]
        assert stats["accepted"] == 1000 and stats["unique_keys"] == 1000
        seen = httpx.get(f"{status['sandbox']}/_sim/keys?provider=resend").json()["resend"]
        assert set(seen) == keys and set(seen.values()) == {1}
        scrape = httpx.get(status["metrics"]).text
        assert (
            metric(scrape, "ringbearer_messages_total", integration="resend", outcome="delivered")
            == 1000
        )
        assert "ringbearer_delivery_seconds_bucket" in scrape


def test_resend_outage_fails_over_to_mailgun_and_recovers(tmp_path: Path, sim: Simulator) -> None:
    """Resend down: its breaker opens, email goes by Mailgun; back up: closed via half-open."""
    extra = """
[integrations.resend.breaker]
minimum_calls = 5
failure_rate = 0.5
open_seconds = 1
half_open_probes = 2
"""
    text = config_for(tmp_path, sim, extra=extra)
    with running(tmp_path, text) as daemon:
        sim.fault("resend", outage=True)
        daemon.call("submit", {"messages": [email(i) for i in range(40)]})
        daemon.wait_idle()
        assert daemon.integration("resend")["breaker"] == "open"
        stats = sim.stats()
        assert stats["mailgun"]["unique_keys"] == 40  # every email went out by Mailgun
        sim.clear()
        half_open = daemon.call("wait", {"breaker": "resend=half_open", "timeout": 10})
        assert half_open["reached"], half_open
        # Now the next emails are Resend's probes; two successes close it.
        daemon.call("submit", {"messages": [email(100 + i) for i in range(6)]})
        closed = daemon.call("wait", {"breaker": "resend=closed", "timeout": 10})
        assert closed["reached"], closed
        daemon.wait_idle()
        assert sim.stats()["resend"]["accepted"] >= 2
        # The audit log lists newest first: read it in the order things happened.
        events = daemon.call("audit", {"limit": 100000})["events"][::-1]
        changes = [
            e["detail"]["new"]
            for e in events
            if e["kind"] == "breaker_changed" and e["integration"] == "resend"
        ]
        assert changes[:3] == ["open", "half_open", "closed"]
        failovers = [e for e in events if e["kind"] == "failed_over"]
        assert failovers and all(e["integration"] == "resend" for e in failovers)


def test_kill_9_mid_run_loses_nothing_acknowledged(tmp_path: Path, sim: Simulator) -> None:
    """kill -9 during 10,000 messages, then a restart: every acknowledged message is delivered.

    The only duplicates are messages in flight at the kill, and they carry
    their original idempotency key.
    """
    extra = "\n[integrations.resend.retry]\ninitial_seconds = 0.2\n"
    # Resend's shipped rate (200/s, a plan's) would make this a 50 s test: the kill and the
    # restart are the point, so Resend runs as fast as the daemon can here.
    text = config_for(tmp_path, sim, extra=extra).replace(
        "rate_limit = { per_second = 200, burst = 50 }",
        "rate_limit = { per_second = 5000, burst = 500 }",
    )
    assert "per_second = 5000" in text
    daemon = Daemon(tmp_path, text).start()
    keys: set[str] = set()
    with daemon.client(timeout=120) as client:
        for first in range(0, 10_000, 1000):
            batch = [email(i) for i in range(first, first + 1000)]
            result = client.raw("submit", {"messages": batch})
            keys |= {a["key"] for a in result["accepted"]}
    assert len(keys) == 10_000
    reached = httpx.get(
        f"{sim.url}/_sim/wait?provider=resend&accepted=3000&timeout=120", timeout=130
    )
    assert reached.status_code == 200
    daemon.kill9()
    in_flight = {
        row[0]
        for row in sqlite3.connect(tmp_path / "state" / "ringbearer.db").execute(
            "SELECT idempotency_key FROM messages WHERE status = 'inflight'"
        )
    }
    with running(tmp_path, text) as again:
        again.wait_idle(300)
        status = {i["name"]: i for i in again.status()["integrations"]}
        assert status["resend"]["dead"] == 0
    db = sqlite3.connect(tmp_path / "state" / "ringbearer.db")
    states = dict(db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall())
    assert states == {"delivered": 10_000}
    seen = httpx.get(f"{sim.url}/_sim/keys").json()
    delivered_keys = {k for provider in ("resend", "mailgun") for k in seen[provider]}
    assert delivered_keys == keys  # every acknowledged message reached a provider
    duplicated = {
        k for provider in ("resend", "mailgun") for k, n in seen[provider].items() if n > 1
    }
    assert duplicated <= in_flight  # only what was in flight at the kill went twice


def test_injected_crash_restarts_one_actor_and_a_loop_trips_the_limit(
    tmp_path: Path, sim: Simulator
) -> None:
    """A crash restarts only that actor and loses nothing; repeated crashes mark it failed."""
    text = config_for(
        tmp_path,
        sim,
        supervisor={
            "max_restarts": "2",
            "backoff_initial_seconds": "0.05",
            "backoff_max_seconds": "0.2",
        },
    )
    with running(tmp_path, text) as daemon:
        daemon.cli("crash", "mailgun")
        daemon.call(
            "submit",
            {
                "messages": [
                    {"target": "mailgun", "payload": email(1)["payload"]},
                    {"target": "slack", "payload": {"text": "all good"}},
                ]
            },
        )
        daemon.wait_idle()
        status = {i["name"]: i for i in daemon.status()["integrations"]}
        assert status["mailgun"]["restarts"] == 1 and status["mailgun"]["state"] == "running"
        assert all(i["restarts"] == 0 for name, i in status.items() if name != "mailgun")
        assert status["mailgun"]["delivered"] == 1 and status["slack"]["delivered"] == 1
        for n in range(3):
            daemon.cli("crash", "mailgun")
            daemon.call(
                "submit", {"messages": [{"target": "mailgun", "payload": email(10 + n)["payload"]}]}
            )
            daemon.call("wait", {"timeout": 2})
        assert daemon.integration("mailgun")["state"] == "failed"
        daemon.call("submit", {"messages": [email(99)]})  # the group routes around it
        daemon.call("wait", {"timeout": 3})  # not idle: mailgun's own message stays queued
        assert daemon.integration("resend")["delivered"] >= 1
        events = [e["kind"] for e in daemon.call("audit")["events"]]
        assert "actor_failed" in events


def test_bad_requests_get_errors_and_the_daemon_stays_up(tmp_path: Path, sim: Simulator) -> None:
    """Malformed lines, unknown commands, bad payloads and huge lines get error replies."""
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            _bad_lines(sock, daemon.socket)
        with pytest.raises(RequestError) as refused:
            daemon.call("submit", {"messages": [{"target": "email", "payload": {"to": "x"}}]})
        assert refused.value.code == "invalid_payload"
        assert daemon.status()["protocol"] == PROTOCOL_VERSION == 2


def _bad_lines(sock: socket.socket, path: Path) -> None:
    sock.connect(str(path))
    with sock.makefile("rb") as replies:
        for line, code in (
            (b"{not json\n", "bad_json"),
            (b"[1, 2]\n", "bad_request"),
            (b'{"id": 7, "cmd": "explode"}\n', "unknown_command"),
            (b'{"id": 8, "cmd": "pause", "args": {"name": 5}}\n', "bad_args"),
        ):
            sock.sendall(line)
            reply = json.loads(replies.readline())
            assert reply["ok"] is False and reply["error"]["code"] == code
        sock.sendall(b"x" * ((1 << 20) + 1024))  # over the 1 MiB line cap, no newline
        reply = json.loads(replies.readline())
        assert reply["error"]["code"] == "line_too_long"


def test_sigterm_finishes_attempts_in_flight_and_keeps_the_rest(
    tmp_path: Path, sim: Simulator
) -> None:
    """SIGTERM: intake stops, attempts in flight finish, the rest stays queued, exit 0."""
    text = config_for(tmp_path, sim)
    daemon = Daemon(tmp_path, text).start()
    sim.fault("resend", latency_ms=300)  # every attempt is in flight for a while
    daemon.call("submit", {"messages": [email(i) for i in range(300)]})
    reached = httpx.get(f"{sim.url}/_sim/wait?provider=resend&accepted=20&timeout=60", timeout=70)
    assert reached.status_code == 200
    assert daemon.stop() == 0
    assert any("STOPPING=1" in n.splitlines() for n in daemon.notifications)
    db = sqlite3.connect(tmp_path / "state" / "ringbearer.db")
    states = dict(db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall())
    db.close()
    assert "inflight" not in states  # every started attempt was finished and recorded
    assert states.get("delivered", 0) >= 20 and states.get("queued", 0) > 0
    assert sum(states.values()) == 300
    sim.clear()
    with running(tmp_path, text) as again:
        again.wait_idle()
    db = sqlite3.connect(tmp_path / "state" / "ringbearer.db")
    assert db.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered'").fetchone() == (
        300,
    )
    db.close()


def test_secrets_never_reach_logs_status_or_the_database(tmp_path: Path, sim: Simulator) -> None:
    """Every secret of the shipped config, set from the environment, appears in no log line,
    reply or stored byte, while every integration is used, on success and error paths."""
    config = _config.load(SHIPPED_CONFIG)
    refs = [ref for s in config.integrations.values() for _, ref in _config.secret_refs(s.provider)]
    refs += [ref for _, ref in _config.secret_refs(config.alerting)]
    names = {ref.env for ref in refs if ref.env is not None}
    assert "PAGERDUTY_WEBHOOK_SECRET" in names
    canaries = {
        name: f"canary-{n:02d}-{name.lower()}-7f3a91" for n, name in enumerate(sorted(names))
    }
    assert len(canaries) >= 15
    daemon = Daemon(tmp_path, config_for(tmp_path, sim), env=canaries).start()
    try:
        sim.fault("resend", permanent_rate=0.5, error_rate=0.3)  # error paths too
        sim.fault("mailgun", permanent_rate=0.5)
        daemon.call("submit", {"messages": [email(i) for i in range(30)]})
        examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
        daemon.call("submit", {"messages": examples})
        daemon.wait_idle()
        replies = json.dumps(
            [daemon.status(), daemon.call("audit", {"limit": 100000}), daemon.call("dead-letters")]
        )
        assert sim.stats()["resend"]["requests"] > 0  # the secrets were really used
    finally:
        assert daemon.stop() == 0
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("ringbearer.db*"))
    log = daemon.log_text()
    for secret in canaries.values():
        assert secret not in replies
        assert secret not in log
        assert secret.encode() not in stored
