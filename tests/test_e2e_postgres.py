"""The real daemon on PostgreSQL (``[store] url``), against the real simulator: what it
accepts is delivered, and what was in flight when it was killed is sent again with the
same key after a restart."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from .procs import Daemon, Simulator, config_for, email, poll, ringbearer, write_jsonl

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def delivered(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered'").fetchone()
        return int(row[0]) if row else 0


KEK = "ab" * 32  # the same key-encryption key on every node (64 hex characters)
TOKEN = "producer-token-" + "9" * 24
INTAKE = """
[intake]
enabled = true
[intake.producers.platform]
token = { env = "RB_TOKEN" }
"""


def node_config(
    workdir: Path, sim: Simulator, url: str, keys_url: str, node: str, base: str | None = None
) -> str:
    """The shipped config (or ``base``) for one of several nodes: one database, one key
    store, one KEK, a short lease so that the test waits seconds, not minutes."""
    config = base if base is not None else config_for(workdir, sim)
    config = config.replace(
        "[store]\n",
        f'[store]\nurl = "{url}"\nnode = "{node}"\nheartbeat_seconds = 0.5\nlease_seconds = 3\n',
        1,
    )
    return config.replace(
        "[privacy]\n", f'[privacy]\nkek = {{ env = "RB_KEK" }}\nkeys_url = "{keys_url}"\n', 1
    )


def keys_database(pg_url: str) -> str:
    base, name = pg_url.rsplit("/", 1)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}_keys")
    return f"{base}/{name}_keys"


def in_flight_on(url: str, node: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM messages WHERE status = 'inflight' AND lease_node = %s", (node,)
        ).fetchone()
        return int(row[0]) if row else 0


def sent_keys(sim: Simulator) -> dict[str, int]:
    found: dict[str, int] = sim.http.get("/_sim/keys", params={"provider": "resend"}).json()[
        "resend"
    ]
    return found


def test_a_node_killed_mid_flow_loses_nothing(tmp_path: Path, sim: Simulator, pg_url: str) -> None:
    """Three nodes on one PostgreSQL and one key store, a flow submitted to all three; one
    is SIGKILLed. Every acknowledged message is delivered, at most once more only if it
    was in flight on the dead node (and then under its key), and the dead node's leases
    are taken over within the lease."""
    keys_url = keys_database(pg_url)
    nodes = []
    for n in range(3):
        workdir = tmp_path / f"node{n}"
        workdir.mkdir()
        text = node_config(workdir, sim, pg_url, keys_url, f"node-{n}")
        nodes.append(Daemon(workdir, text, env={"RB_KEK": KEK}).start())
    alive, dead = list(nodes), nodes[1]
    sim.fault("resend", latency_ms=300)  # attempts take a while: some are in flight at the kill
    acknowledged: list[str] = []
    killed_at = 0.0
    try:
        for round_ in range(6):
            for n, daemon in enumerate(nodes):
                if daemon not in alive:
                    continue
                batch = [email(100 * round_ + 10 * n + i, key=f"r{round_}-n{n}-{i}")
                         for i in range(10)]  # fmt: skip
                reply = daemon.call("submit", {"messages": batch})
                acknowledged += [a["key"] for a in reply["accepted"]]
            if round_ == 2:  # killed while it holds messages in flight
                poll(lambda: in_flight_on(pg_url, "node-1"), bool, 30, "node-1 attempting")
                dead.kill9()
                killed_at = time.time()
                alive.remove(dead)
        poll(lambda: delivered(pg_url), lambda d: d == len(acknowledged), 60, "all delivered")
        keys = sent_keys(sim)
        assert set(acknowledged) <= set(keys)
        twice = {k for k, count in keys.items() if count > 1}
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(
                "SELECT m.idempotency_key, e.at FROM events e"
                " JOIN messages m ON m.id = e.message_id WHERE e.kind = 'recovered'"
            ).fetchall()
        reclaimed = {key for key, _ in rows}
        assert reclaimed  # the kill caught messages in flight, and another node took them
        assert twice <= reclaimed  # sent twice only if it was in flight on the dead node
        assert all(count <= 2 for count in keys.values())
        if rows:  # its leases taken over within the lease (3 s), give or take a beat
            assert min(at for _, at in rows) - killed_at < 3 + 0.5 + 1.5
    finally:
        for daemon in alive:
            daemon.stop()


def test_a_daemon_on_postgres_delivers_and_survives_a_kill(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    config = node_config(tmp_path, sim, pg_url, keys_database(pg_url), "node-a") + INTAKE
    assert 'url = "postgresql://' in config
    env = {"RB_KEK": KEK, "RB_TOKEN": TOKEN}
    daemon = Daemon(tmp_path, config, env=env).start()
    try:
        accepted = daemon.call("submit", {"messages": [email(n) for n in range(20)]})
        assert len(accepted["accepted"]) == 20
        poll(lambda: delivered(pg_url), lambda n: n == 20, 30, "20 delivered")
        shown = daemon.cli("status")
        assert shown.returncode == 0, shown.stderr
        assert "NODES  this is node-a; node-a leads (term 1)" in shown.stdout
        daemon.call("pause", {"name": "email"})
        later = daemon.call("submit", {"messages": [email(n) for n in range(20, 30)]})
        assert len(later["accepted"]) == 10
        daemon.kill9()  # nothing is lost: the queue is in PostgreSQL
        daemon = Daemon(tmp_path, config, env=env).start()
        daemon.call("resume", {"name": "email"})
        poll(lambda: delivered(pg_url), lambda n: n == 30, 30, "30 delivered")
        # A producer on another host: over HTTP to the node's listener, with its token.
        lines = write_jsonl(tmp_path / "net.jsonl", [email(n, key=f"net-{n}") for n in range(5)])
        url = daemon.status()["webhooks"]
        for _ in range(2):  # a retry of the same lines: the same messages
            sent = subprocess.run(
                ringbearer("send", "--file", str(lines), "--url", url, "--token-env", "RB_TOKEN"),
                capture_output=True, text=True, timeout=60, env={**os.environ, "RB_TOKEN": TOKEN},
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
        assert "5 messages (5 duplicates)" in sent.stdout
        poll(lambda: delivered(pg_url), lambda n: n == 35, 30, "35 delivered")
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        refused = httpx.post(f"{url}/v1/messages", json=[email(99)], headers=wrong)
        assert refused.status_code == 401
        with psycopg.connect(pg_url) as conn:
            nodes = conn.execute("SELECT node FROM nodes").fetchall()
        assert nodes == [("node-a",)]
    finally:
        daemon.stop()


def test_three_nodes_keep_together_to_a_providers_rate_limit(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    """Resend allows 100 requests a second (the simulator's bucket refuses the rest with
    429, counted); three nodes configured with 90 a second, as an operator leaves room
    for the network's jitter (requests let go on time may arrive bunched), split it among
    themselves and are never refused, while they send about as fast as that allows.
    Without the split they would send 270 a second."""
    keys_url = keys_database(pg_url)
    sim.fault("resend", limit_per_second=100, limit_burst=10)
    nodes = []
    for n in range(3):
        workdir = tmp_path / f"node{n}"
        workdir.mkdir()
        text = node_config(workdir, sim, pg_url, keys_url, f"node-{n}").replace(
            "rate_limit = { per_second = 200, burst = 50 }",
            "rate_limit = { per_second = 90, burst = 9 }",
        )
        nodes.append(Daemon(workdir, text, env={"RB_KEK": KEK}).start())
    try:
        for url in [daemon.status()["metrics"] for daemon in nodes]:
            # each has beaten knowing of three nodes, and taken its third of the limit
            poll(functools.partial(scrape, url), lambda t: "ringbearer_nodes 3.0" in t, 30, "3")
        began = time.monotonic()
        for round_ in range(3):
            for n, daemon in enumerate(nodes):
                batch = [{**email(1000 * round_ + 100 * n + i), "target": "resend"}
                         for i in range(100)]  # fmt: skip
                daemon.call("submit", {"messages": batch})
        poll(lambda: delivered(pg_url), lambda d: d == 900, 60, "900 delivered")
        took = time.monotonic() - began
        stats = sim.http.get("/_sim/stats", params={"provider": "resend"}).json()["resend"]
        assert stats["status_counts"].get("429", 0) == 0  # never over the provider's limit
        assert stats["accepted"] == 900
        assert 900 / took <= 100 + 10  # together, at most the limit (and its one burst)
    finally:
        for daemon in nodes:
            daemon.stop()


def test_a_paused_node_cannot_settle_what_another_took_over(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    """First, what one node is told the other follows: a pause, a resume, the
    wedding-day override and a suppression, each given to one node, reach the other
    within its beats.

    Then node A is stopped (SIGSTOP) in the middle of its attempts, past its lease; node B
    takes its messages over and delivers them. When A runs again (SIGCONT) its attempts
    end, and its settles are refused by fencing and logged: the messages stay B's."""
    keys_url = keys_database(pg_url)
    workdirs, texts = [], []
    for n in range(2):
        workdir = tmp_path / f"node{n}"
        workdir.mkdir()
        workdirs.append(workdir)
        texts.append(node_config(workdir, sim, pg_url, keys_url, f"node-{n}"))
    env = {"RB_KEK": KEK}
    nodes = [Daemon(w, t, env=env).start() for w, t in zip(workdirs, texts, strict=True)]
    a, b = nodes
    try:
        b.call("pause", {"name": "resend"})
        poll(lambda: a.integration("resend")["paused"], bool, 30, "A follows B's pause")
        a.call("resume", {"name": "resend"})
        poll(lambda: b.integration("resend")["paused"], lambda p: not p, 30, "B follows")
        b.call("wedding-day", {"state": "on"})
        poll(lambda: a.status()["mode"], lambda m: m == "wedding_day", 30, "A follows on")
        b.call("wedding-day", {"state": "auto"})
        poll(lambda: a.status()["mode"], lambda m: m == "normal", 30, "A follows auto")
        b.call("suppression-add", {"address": "gone@example.com", "note": "asked"})
        check = functools.partial(a.call, "suppression-check", {"address": "gone@example.com"})
        poll(lambda: check()["suppressions"], bool, 30, "A's book has B's suppression")
        b.stop()  # only A attempts, at first
        sim.fault("resend", latency_ms=4000)  # each attempt outlives A's lease (3 s)
        a.call("submit", {"messages": [email(n, key=f"p-{n}") for n in range(5)]})
        poll(lambda: in_flight_on(pg_url, "node-0"), lambda n: n == 5, 30, "A attempting")
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        sim.clear()  # B's attempts are quick
        nodes[1] = b = Daemon(workdirs[1], texts[1], env=env).start()
        poll(lambda: delivered(pg_url), lambda n: n == 5, 30, "B delivered A's five")
        a.proc.send_signal(signal.SIGCONT)
        poll(a.log_text, lambda text: text.count("settle fenced") == 5, 30, "A's settles fenced")
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT status, lease_node FROM messages ORDER BY id").fetchall()
        assert rows == [("delivered", None)] * 5 or all(r[0] == "delivered" for r in rows)
        assert delivered(pg_url) == 5
    finally:
        for daemon in nodes:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGCONT)
                daemon.stop()


def test_when_the_leader_dies_another_takes_up_its_open_alert_without_paging_twice(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    """Slack refuses everything: its dead letter (on whichever node) opens an alert, which
    the leader emails through Resend every second. The leader is SIGKILLed: the other node
    leads within the lease and goes on with the same alert, each of its emails sent once."""
    from .test_e2e_alert_restart import alert_config, emails_for

    keys_url = keys_database(pg_url)
    sim.fault("slack-webhook", permanent_rate=1.0)
    nodes = []
    for n in range(2):
        workdir = tmp_path / f"node{n}"
        workdir.mkdir()
        base = alert_config(workdir, sim)
        text = node_config(workdir, sim, pg_url, keys_url, f"node-{n}", base=base)
        nodes.append(Daemon(workdir, text, env={"RB_KEK": KEK}).start())
        poll(lambda: leader_of(pg_url), lambda node: node == "node-0", 30, "node-0 leads")
    leader, other = nodes
    try:
        cause = {"target": "slack", "payload": {"text": "The florist moved to 10:00."}}
        other.call("submit", {"messages": [cause]})  # any node may dead-letter it
        found = poll(lambda: open_alert(pg_url), bool, 30, "the alert opened")
        assert found is not None
        alert = found
        poll(lambda: emails_for(sim, alert), lambda e: len(e) >= 2, 30, "two emails")
        leader.kill9()
        killed = time.monotonic()
        before = emails_for(sim, alert)
        poll(lambda: emails_for(sim, alert) - before, lambda e: len(e) >= 2, 30, "it goes on")
        assert time.monotonic() - killed < 3 + 5  # led again within the lease, and a repeat
        assert open_alert(pg_url) == alert  # the same alert, taken up, not a new one
        keys = sent_keys(sim)
        assert all(keys[k] == 1 for k in emails_for(sim, alert))  # each email sent once
    finally:
        other.stop()


def scrape(url: str) -> str:
    return httpx.get(url).text


def leader_of(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT node FROM leaders WHERE duty = 'duties'").fetchone()
    return str(row[0]) if row else None


def open_alert(url: str) -> int | None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM alerts WHERE key = 'dead_letters:slack' AND resolved_at IS NULL"
        ).fetchall()
    return int(rows[0][0]) if len(rows) == 1 else None
