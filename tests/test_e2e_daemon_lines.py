"""What an operator sees of the daemon's own life: where it listens, how it ended, and a
preflight of the running daemon's providers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .procs import Daemon, config_for, ringbearer, running

pytestmark = pytest.mark.e2e


def test_the_log_says_where_the_daemon_listens_and_how_it_ended(tmp_path: Path) -> None:
    """At start: socket, metrics address and sandbox; on SIGTERM: why, then a last line."""
    daemon = Daemon(tmp_path, config_for(tmp_path)).start()
    status = daemon.status()
    assert daemon.stop() == 0
    lines = daemon.log_text().splitlines()
    (ready,) = [line for line in lines if '"ready"' in line or " ready " in line]
    assert f"socket={tmp_path / 'state' / 'ringbearer.sock'}" in ready
    assert f"metrics={status['metrics']}" in ready and f"sandbox={status['sandbox']}" in ready
    assert any("stop requested" in line and "signal=SIGTERM" in line for line in lines)
    assert "stopped" in lines[-1] and "outcome=clean" in lines[-1]


def test_a_daemon_that_cannot_start_says_so_in_its_last_lines(tmp_path: Path) -> None:
    """A metrics port already taken: exit 1, one line naming it, and the last log line."""
    (tmp_path / "first").mkdir()
    with running(tmp_path / "first", config_for(tmp_path / "first")) as first:
        taken = first.status()["metrics"].split("/")[2]
        config = tmp_path / "config.toml"
        config.write_text(
            config_for(tmp_path).replace(
                '[metrics]\nlisten = "127.0.0.1:0"', f'[metrics]\nlisten = "{taken}"'
            )
        )
        ended = subprocess.run(
            ringbearer("run", "-c", str(config)), capture_output=True, text=True, timeout=60
        )
    assert ended.returncode == 1, ended.stderr
    lines = ended.stderr.splitlines()
    assert "stopped" in lines[-2] and "outcome=failed" in lines[-2]
    assert (
        lines[-1] == f"ringbearer: cannot listen for metrics on {taken} ([metrics] listen):"
        " Address already in use"
    )


def test_preflight_checks_the_running_daemons_sandbox(tmp_path: Path) -> None:
    """With Resend in outage in the daemon's own sandbox, preflight fails Resend and says
    what it checked; cleared, it passes again."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        sandbox = daemon.status()["sandbox"]
        faulted = daemon.cli("sandbox", "fault", "resend", "--outage")
        assert faulted.returncode == 0, faulted.stderr
        refused = daemon.cli("preflight", "--json")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        report = json.loads(refused.stdout)
        assert report["checked"] == f"the running daemon's sandbox at {sandbox}"
        verdicts = {i["name"]: i["verdict"] for i in report["integrations"]}
        assert verdicts["resend"] == "fail" and verdicts["mailgun"] != "fail"
        assert daemon.cli("sandbox", "clear").returncode == 0
        ready = daemon.cli("preflight")
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert ready.stdout.startswith(
            f"preflight against the running daemon's sandbox at {sandbox}"
        )
