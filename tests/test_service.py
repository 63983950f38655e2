"""Running as a service: the sd_notify sequence on a real socket, reload by signal and command."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from ringbearer._heartbeat import Heartbeat
from ringbearer._systemd import Notifier
from ringbearer.store import MemoryStore

from .harness import running_core, wall
from .procs import Daemon, config_for, email

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "ringbearer.service"
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


def test_the_unit_lets_a_control_group_reach_the_socket_and_be_told_apart() -> None:
    """/run/ringbearer is searchable by all, and no private user namespace hides peers' uids."""
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings[key] = value
    assert int(settings["RuntimeDirectoryMode"], 8) & 0o005 == 0o005
    assert settings.get("PrivateUsers", "no") in ("no", "false", "0")


class StallingStore(MemoryStore):
    """An in-memory store whose writer can be made to stop answering (a wedged disk)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.answering = trio.Event()
        self.answering.set()

    async def flush(self) -> None:
        await self.answering.wait()
        await super().flush()


def received(listener: socket.socket) -> list[str]:
    """The keys of every notification waiting on ``listener``."""
    keys = []
    with contextlib.suppress(BlockingIOError):
        while True:
            data = listener.recv(4096).decode()
            keys += [line.partition("=")[0] for line in data.splitlines()]
    return keys


async def test_the_watchdog_ping_is_withheld_while_the_store_does_not_answer(
    tmp_path: Path, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    """WATCHDOG=1 stops while the store's writer hangs and comes back when it answers again."""
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.setblocking(False)
    store = StallingStore(wall)
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    async with running_core(tmp_path, store=store) as core, trio.open_nursery() as nursery:
        parts = core.parts
        beat = Heartbeat(store, store, notifier, parts.summary, wall, interval=1.0, watchdog=True)
        await nursery.start(beat.run)
        await trio.sleep(10.5)  # between beats: none is half done
        assert received(listener).count("WATCHDOG") >= 9
        store.answering = trio.Event()
        await trio.sleep(60)
        assert "WATCHDOG" not in received(listener)
        store.answering.set()
        await trio.sleep(10)
        assert received(listener).count("WATCHDOG") >= 9
        nursery.cancel_scope.cancel()
    notifier.close()
    listener.close()
    stalls = [r for r in caplog.records if "did not answer the heartbeat" in r.getMessage()]
    assert stalls and all(r.levelno == logging.ERROR for r in stalls)


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
