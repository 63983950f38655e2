"""A fault matrix: each provider family under each simulator fault, through the real daemon.

Every scenario faults the simulated providers of one family, sends that
family's example messages, lifts the faults after a short window and waits
for the daemon to go idle. The database and its audit log must then show:
every message delivered or dead (a dead one with a readable reason), no
retry sooner than a provider's requested wait, and breakers that open, wait
``open_seconds``, probe half-open and close as configured.

The default size is a representative subset that runs in CI in well under a
minute. The full matrix (every fault alone for every family, more messages)
is one command::

    RINGBEARER_FAULT_MATRIX=full .venv/bin/python -m pytest tests/test_fault_matrix.py
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from .procs import ROOT, Daemon, Simulator, config_for, running

pytestmark = pytest.mark.e2e

FULL = os.environ.get("RINGBEARER_FAULT_MATRIX") == "full"
PER_INTEGRATION = 10 if FULL else 2  # messages to each integration of the family
FAULT_SECONDS = 2.0  # how long the faults stay on before they are lifted
OUTAGE_SECONDS = 3.0
IDLE_BOUND = 90.0  # after the faults are lifted, everything settles within this
OPEN_SECONDS = 2.0
SLACK = 0.02  # seconds: clock reads and float rounding between the daemon's stamps

EXAMPLES = ROOT / "examples" / "every-integration.jsonl"

# Each family's integrations (config names) and the simulated provider behind each.
FAMILIES: dict[str, dict[str, str]] = {
    "email": {"resend": "resend", "mailgun": "mailgun"},
    "alerts": {
        "slack": "slack-webhook",
        "slack_chat": "slack-chat",
        "pagerduty": "pagerduty",
        "sms": "twilio-sms",
        "phone": "twilio-call",
    },
    "analytics": {"mixpanel": "mixpanel", "amplitude": "amplitude"},
    "crm": {"tave": "tave", "light_blue": "light-blue", "honeybook": "honeybook"},
    "social": {
        "facebook": "facebook-page",
        "instagram": "instagram",
        "linkedin": "linkedin",
        "x": "x",
    },
}
OUTAGE_TARGET = {
    "email": "resend",
    "alerts": "slack",
    "analytics": "amplitude",
    "crm": "tave",
    "social": "x",
}

# The faults, as /_sim/faults fields. "slow" stays below the 2 s timeout.
FAULTS: dict[str, dict[str, Any]] = {
    "5xx": {"error_rate": 0.5},
    "429": {"rate_limit_rate": 0.5, "retry_after": 1},
    "timeout": {"hang_rate": 0.3},
    "reset": {"reset_rate": 0.5},
    "slow": {"latency_ms": 800},
    "truncated": {"truncate_rate": 0.5},
    "malformed": {"malformed_rate": 0.5},
    "mixed": {
        "error_rate": 0.08,
        "rate_limit_rate": 0.08,
        "retry_after": 1,
        "reset_rate": 0.04,
        "hang_rate": 0.04,
        "truncate_rate": 0.03,
        "malformed_rate": 0.03,
        "latency_ms": 50,
    },
}

# Every fault and every family at least once, in bounded time.
CI_SCENARIOS = [
    ("email", "429"),
    ("alerts", "timeout"),
    ("analytics", "5xx"),
    ("crm", "reset"),
    ("social", "truncated"),
    ("crm", "malformed"),
    ("email", "slow"),
    ("alerts", "mixed"),
]
SCENARIOS = [(f, k) for f in FAMILIES for k in FAULTS] if FULL else CI_SCENARIOS
OUTAGES = list(FAMILIES) if FULL else ["email"]


def _until_midnight_utc(at: float) -> float:
    now = datetime.fromtimestamp(at, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() - at


def requested_wait(integration: str, answered_at: float) -> float | None:
    """The wait a simulated provider's 429 asks for with ``retry_after=1``, or None.

    Mixpanel, Amplitude, PagerDuty and Zapier send no wait (the policy's backoff
    applies); the Graph APIs round theirs up to whole minutes; LinkedIn's
    daily limit resets at midnight UTC.
    """
    match integration:
        case "facebook" | "instagram":
            return 60.0
        case "linkedin":
            return _until_midnight_utc(answered_at)
        case "mixpanel" | "amplitude" | "pagerduty" | "honeybook":
            return None
        case _:
            return 1.0


def _set(text: str, table: str, key: str, value: str) -> str:
    """``key = value`` inside ``[table]`` of the shipped config (its tables cannot be reopened)."""
    header = re.escape(f"[{table}]")
    pattern = rf"(^{header}\n(?:(?!\[).*\n)*?){re.escape(key)} = [^\n#]*"
    changed, n = re.subn(pattern, rf"\g<1>{key} = {value} ", text, count=1, flags=re.MULTILINE)
    assert n == 1, f"no {key} in [{table}]"
    return changed


def fast_config(workdir: Path, sim: Simulator) -> str:
    """The shipped config with quick retries, timeouts and breakers, and quotas out of the way."""
    text = config_for(workdir, sim)
    for table, key, value in (
        ("defaults", "timeout_seconds", "2"),
        ("defaults.retry", "initial_seconds", "0.2"),
        ("defaults.retry", "max_seconds", "2"),
        ("defaults.retry", "max_attempts", "6"),
        # Bounds the run: a wait longer than this (Graph's minute, LinkedIn's
        # midnight) dead-letters the message instead of parking it.
        ("defaults.retry", "max_age_seconds", "60"),
        ("defaults.breaker", "minimum_calls", "5"),
        ("defaults.breaker", "open_seconds", str(OPEN_SECONDS)),
        ("defaults.breaker", "half_open_probes", "1"),
        # Quotas are not under test here; the shipped ones would park messages.
        ("integrations.slack", "rate_limit", "{ per_second = 50, burst = 50 }"),
        ("integrations.slack_chat", "rate_limit", "{ per_second = 50, burst = 50 }"),
        ("integrations.pagerduty", "budgets", "[]"),
        ("integrations.instagram", "budgets", "[]"),
    ):
        text = _set(text, table, key, value)
    tomllib.loads(text)  # the edits leave valid TOML
    return text


def examples() -> dict[str, dict[str, Any]]:
    rows = (json.loads(line) for line in EXAMPLES.read_text().splitlines())
    return {row["target"]: row for row in rows}


_VARIED = {"text", "subject", "summary", "body", "say", "caption", "message", "name", "title"}


def _vary(value: Any, tag: str) -> Any:
    """The example made unique, so no provider takes it for a duplicate."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, str) and k in _VARIED:
                out[k] = f"{v} [{tag}]"
            elif isinstance(v, str) and k == "email":
                out[k] = v.replace("@", f"+{tag}@")
            elif isinstance(v, str) and k in ("distinct_id", "user_id"):
                out[k] = f"{v}-{tag}"
            else:
                out[k] = _vary(v, tag)
        return out
    if isinstance(value, list):
        return [_vary(v, tag) for v in value]
    return value


def messages_for(targets: list[str], scenario: str, count: int) -> list[dict[str, Any]]:
    shown = examples()
    out = []
    for target in targets:
        for n in range(count):
            tag = f"{scenario}-{n}"
            row = shown[target]
            out.append({**row, "payload": _vary(row["payload"], tag), "key": f"fm-{tag}-{target}"})
    return out


@attrs.frozen
class Event:
    id: int
    at: float
    kind: str
    message_id: int | None
    integration: str | None
    detail: dict[str, Any]


class Db:
    """The daemon's SQLite file, read-only."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def close(self) -> None:
        self.conn.close()

    def messages(self, prefix: str = "") -> list[tuple[int, str, str, str | None]]:
        """(id, key, status, last_error) of the messages whose key starts with ``prefix``."""
        return self.conn.execute(
            "SELECT id, idempotency_key, status, last_error FROM messages"
            " WHERE idempotency_key LIKE ? ORDER BY id",
            (prefix + "%",),
        ).fetchall()

    def events(self, since: float = 0.0) -> list[Event]:
        rows = self.conn.execute(
            "SELECT id, at, kind, message_id, integration, detail FROM events"
            " WHERE at >= ? ORDER BY id",
            (since,),
        )
        return [Event(i, at, k, m, n, json.loads(d) if d else {}) for i, at, k, m, n, d in rows]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Simulator, Db]]:
    """One simulator and one daemon for the whole matrix; scenarios tell theirs apart by key."""
    workdir = tmp_path_factory.mktemp("fault-matrix")
    sim = Simulator(workdir / "simulator.log")
    try:
        with running(workdir, fast_config(workdir, sim)) as daemon:
            db = Db(workdir / "state" / "ringbearer.db")
            try:
                yield daemon, sim, db
            finally:
                db.close()
    finally:
        sim.stop()


def settle(daemon: Daemon, sim: Simulator) -> None:
    """Lift every fault and wait, with a bound, for the daemon to finish."""
    sim.clear()
    daemon.wait_idle(IDLE_BOUND)


def assert_all_settled(db: Db) -> None:
    """No message left queued or in flight; each dead one says why, readably."""
    for id_, key, status, error in db.messages():
        assert status in ("delivered", "dead"), (id_, key, status)
        if status == "dead":
            assert error and error.strip(), f"message {id_} ({key}) is dead with no reason"
            assert all(c.isprintable() or c.isspace() for c in error), (id_, error)


def assert_waits_honoured(db: Db) -> None:
    """A retry after a 429 comes no sooner than the wait that provider asked for."""
    by_message: dict[int, list[Event]] = {}
    for e in db.events():
        if e.message_id is not None:
            by_message.setdefault(e.message_id, []).append(e)
    for events in by_message.values():
        for i, e in enumerate(events):
            if e.kind != "attempted" or e.detail.get("status") != 429:
                continue
            answered = e.at + (e.detail.get("seconds") or 0.0)
            later = events[i + 1 :]
            retried = next((r for r in later if r.kind in ("retried", "attempted")), None)
            if retried is None or retried.kind != "retried":
                continue
            again = next((a for a in later if a.kind == "attempted"), None)
            if again is None:
                continue
            assert again.at >= retried.detail["next_attempt_at"] - SLACK, (e, retried, again)
            wait = requested_wait(e.integration or "", answered)
            if wait is not None:
                assert again.at >= answered + wait - SLACK, (
                    f"{e.integration} asked for {wait} s, retried after {again.at - answered:.3f}",
                    e,
                    again,
                )


def assert_breakers_as_configured(db: Db) -> None:
    """Open lasts ``open_seconds`` then goes half-open; half-open ends open or closed."""
    changes: dict[str, list[Event]] = {}
    for e in db.events():
        if e.kind == "breaker_changed" and e.integration is not None:
            changes.setdefault(e.integration, []).append(e)
    for name, seq in changes.items():
        for before, after in itertools.pairwise(seq):
            assert after.detail["old"] == before.detail["new"], (name, before, after)
            if before.detail["new"] == "open" and not after.detail.get("forced"):
                assert after.detail["new"] == "half_open", (name, before, after)
                assert after.at >= before.at + OPEN_SECONDS - SLACK, (name, before, after)
            if before.detail["new"] == "half_open":
                assert after.detail["new"] in ("open", "closed"), (name, before, after)


def check(db: Db) -> None:
    assert_all_settled(db)
    assert_waits_honoured(db)
    assert_breakers_as_configured(db)


@pytest.mark.parametrize(("family", "fault"), SCENARIOS, ids=[f"{f}-{k}" for f, k in SCENARIOS])
def test_family_under_fault_settles_and_honours_waits(
    world: tuple[Daemon, Simulator, Db], family: str, fault: str
) -> None:
    """Under one fault profile, a family's messages all end delivered or dead, waits honoured."""
    daemon, sim, db = world
    settle(daemon, sim)
    integrations = FAMILIES[family]
    for provider in integrations.values():
        sim.fault(provider, **FAULTS[fault])
    scenario = f"{family}-{fault}"
    sent = daemon.call(
        "submit", {"messages": messages_for(list(integrations), scenario, PER_INTEGRATION)}
    )
    assert len(sent["accepted"]) == len(integrations) * PER_INTEGRATION, sent
    # The faults' duration is the input here; the wait ends early if all is done.
    daemon.call("wait", {"timeout": FAULT_SECONDS})
    settle(daemon, sim)
    check(db)
    mine = db.messages(f"fm-{scenario}-")
    assert len(mine) == len(integrations) * PER_INTEGRATION
    if fault == "slow":  # slower than usual but inside the timeout: nothing fails
        assert {status for _, _, status, _ in mine} == {"delivered"}, mine


@pytest.mark.parametrize("family", OUTAGES)
def test_outage_opens_the_breaker_which_closes_after_recovery(
    world: tuple[Daemon, Simulator, Db], family: str
) -> None:
    """A ~3 s outage opens the breaker; after it, half-open after open_seconds, then closed."""
    daemon, sim, db = world
    settle(daemon, sim)
    target = OUTAGE_TARGET[family]
    started = time.time()
    sim.fault(FAMILIES[family][target], outage=True)
    scenario = f"{family}-outage"
    daemon.call("submit", {"messages": messages_for([target], scenario, 8)})
    opened = daemon.call("wait", {"breaker": f"{target}=open", "timeout": OUTAGE_SECONDS * 3})
    assert opened["reached"], opened
    daemon.call("wait", {"timeout": max(0.0, started + OUTAGE_SECONDS - time.time())})
    sim.clear()
    # Fresh messages are the probes once it turns half-open.
    daemon.call("submit", {"messages": messages_for([target], f"{scenario}-after", 3)})
    closed = daemon.call("wait", {"breaker": f"{target}=closed", "timeout": 20})
    assert closed["reached"], closed
    settle(daemon, sim)
    check(db)
    states = [
        (e.detail["new"], e.at)
        for e in db.events(since=started)
        if e.kind == "breaker_changed" and e.integration == target
    ]
    news = [s for s, _ in states]
    assert "open" in news, states
    first_open = news.index("open")
    assert news[first_open:][-2:] == ["half_open", "closed"], states
    assert daemon.integration(target)["breaker"] == "closed"
    for _, _, status, _ in db.messages(f"fm-{scenario}-after-"):
        assert status == "delivered"
