"""End to end: the operator commands against the real daemon process and the real simulator."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .procs import Simulator, config_for, email, ringbearer, running

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def test_dead_letters_are_listed_shown_replayed_and_purged(tmp_path: Path, sim: Simulator) -> None:
    """A refused email is a dead letter; replayed once the provider takes it, it is delivered
    once with its key; another is purged, its history kept; `top --once` shows the daemon."""
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        sim.fault("resend", permanent_rate=1.0)  # a permanent failure is not failed over
        accepted = daemon.call("submit", {"messages": [email(1), email(2)]})["accepted"]
        daemon.wait_idle()
        (first, first_key), (second, _) = ((a["id"], a["key"]) for a in accepted)

        listed = daemon.cli("dead-letters", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        # Newest first.
        assert [d["message_id"] for d in json.loads(listed.stdout)["dead_letters"]] == [
            second,
            first,
        ]
        assert str(first) in daemon.cli("dead-letters").stdout  # no action: list
        shown = daemon.cli("dead-letters", "show", str(first))
        assert shown.returncode == 0, shown.stderr
        assert "dead_lettered resend" in shown.stdout
        # The payload is sealed: shown as whose it is; the subject's export opens it.
        assert "sealed: personal data of s_" in shown.stdout
        assert "Timeline update 1" not in shown.stdout and "guest1@" not in shown.stdout
        opened = daemon.call("subject-export", {"subject": "guest1@example.com"})
        assert opened["messages"][0]["payload"]["subject"] == "Timeline update 1"

        sim.clear()
        replayed = daemon.cli("dead-letters", "replay", str(first))
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.strip() == "replayed 1 dead letter"
        daemon.wait_idle()
        assert daemon.call("message", {"id": first})["status"] == "delivered"
        assert sim.http.get("/_sim/keys?provider=resend").json()["resend"] == {first_key: 1}

        purged = daemon.cli("dead-letters", "purge", str(second))
        assert purged.returncode == 0, purged.stderr
        assert daemon.cli("dead-letters", "show", str(second)).returncode == 1
        audit = daemon.cli("audit", "--message", str(second), "--since", "1h", "--json")
        kinds = [e["kind"] for e in json.loads(audit.stdout)["events"]][::-1]  # oldest first
        assert kinds[0] == "submitted" and kinds[-2:] == ["dead_lettered", "purged"]
        operator = daemon.cli("audit", "--kind", "replayed,purged", "--json")
        events = json.loads(operator.stdout)["events"]
        assert [(e["kind"], e["message_id"]) for e in events] == [
            ("purged", second),
            ("replayed", first),
        ]
        assert all("uid" in e["detail"]["by"] for e in events)

        top = daemon.cli("top", "--once", "--interval", "0.2")
        assert top.returncode == 0, top.stderr
        assert "mode normal" in top.stdout or "mode wedding_day" in top.stdout
        assert any(line.startswith("resend ") for line in top.stdout.splitlines())


def test_config_init_and_show_round_trip_through_config_check(tmp_path: Path) -> None:
    """`config init` writes a file `config check` passes; so does what `config show` prints."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ringbearer(*args), capture_output=True, text=True, cwd=tmp_path, timeout=60
        )

    written = tmp_path / "ringbearer.toml"
    assert cli("config", "init", "-c", str(written)).returncode == 0
    assert cli("config", "init", "-c", str(written)).returncode == 1  # no overwrite
    checked = cli("config", "check", "-c", str(written))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shown = cli("config", "show", "-c", str(written))
    assert shown.returncode == 0, shown.stderr
    assert 'api_key = { env = "RESEND_API_KEY" }' in shown.stdout
    again = tmp_path / "shown.toml"
    again.write_text(shown.stdout)
    rechecked = cli("config", "check", "-c", str(again))
    assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr
