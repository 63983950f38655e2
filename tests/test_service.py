"""Running as a service: the sd_notify sequence on a real socket, reload by signal and command."""

from __future__ import annotations

import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from ringbearer._systemd import Notifier

from .procs import Daemon, config_for, email

EXTRA_SLACK = """
[integrations.slack2]
kind = "slack_webhook"
url = { env = "SLACK2_WEBHOOK_URL" }
"""


def test_a_notification_never_blocks_on_a_full_socket(tmp_path: Path) -> None:
    """When the listener stops reading, notifications are dropped, never waited on."""
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    try:
        for n in range(5000):  # far more than the socket's queue holds
            notifier.status(f"line {n}")
        listener.setblocking(False)
        first = listener.recv(4096)
        assert first == b"STATUS=line 0"
    finally:
        notifier.close()
        listener.close()


@pytest.mark.e2e
def test_notify_sequence_ready_watchdog_reloading_ready_stopping(tmp_path: Path) -> None:
    """READY once up, WATCHDOG while alive, RELOADING (with MONOTONIC_USEC) then READY on
    SIGHUP, STOPPING on SIGTERM, all on a real datagram socket."""
    daemon = Daemon(tmp_path, config_for(tmp_path), env={"WATCHDOG_USEC": "2000000"})
    daemon.start()
    try:
        daemon.wait_for("WATCHDOG=1")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = daemon.wait_for("RELOADING=1")
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.splitlines())
        daemon.wait_for("READY=1")
        daemon.wait_for("WATCHDOG=1")
    finally:
        assert daemon.stop() == 0
    seen = [n for n in daemon.notifications if "=" in n]
    keys = [line.partition("=")[0] for n in seen for line in n.splitlines()]
    order = [k for k in keys if k in ("READY", "RELOADING", "STOPPING")]
    assert order == ["READY", "RELOADING", "READY", "STOPPING"]
    assert any(line.startswith("STATUS=") for n in seen for line in n.splitlines())


@pytest.mark.e2e
def test_reload_command_applies_a_new_file_and_refuses_a_broken_one(tmp_path: Path) -> None:
    """`ringbearer reload` adds an integration; a broken file is refused and changes nothing."""
    text = config_for(tmp_path)
    daemon = Daemon(tmp_path, text).start()
    try:
        daemon.config.write_text(text + EXTRA_SLACK)
        done = daemon.cli("reload", "--json")
        assert done.returncode == 0, done.stderr
        assert '"added": [\n    "slack2"' in done.stdout or '"slack2"' in done.stdout
        assert daemon.integration("slack2")["state"] == "running"
        daemon.call("submit", {"messages": [{"target": "slack2", "payload": {"text": "hi"}}]})
        daemon.call("submit", {"messages": [email(1)]})
        daemon.wait_idle(60)

        daemon.config.write_text(text.replace("lanes = ", "lanes = -") + "\n[nonsense]\n")
        refused = daemon.cli("reload")
        assert refused.returncode == 1
        assert "invalid_config" in refused.stderr and "nonsense" in refused.stderr
        assert "the running config stays" in refused.stderr
        assert daemon.integration("slack2")["state"] == "running"
        assert "reload refused" in daemon.log_text()
    finally:
        assert daemon.stop() == 0
    db = sqlite3.connect(tmp_path / "state" / "ringbearer.db")
    kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE kind LIKE 'reload%'")]
    assert kinds == ["reloaded", "reload_refused"]
    states = dict(db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status"))
    assert states == {"delivered": 2}
