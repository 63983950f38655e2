"""A full disk: submits fail with a clear error, nothing is corrupted, and the daemon
recovers when space returns. The state folder is a small tmpfs the test mounts."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringbearer import RequestError

from .procs import Daemon, Simulator, config_for, email

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_refuses_submits_clearly_and_recovers(tmp_path: Path) -> None:
    """Submits fail with 'refuses writes' once the disk is full; the daemon stays up; when
    space returns, submits work again and every acknowledged message is delivered."""
    sim = Simulator(tmp_path / "simulator.log")
    with small_filesystem(tmp_path / "small", "3m") as small:
        daemon = Daemon(tmp_path, config_for(small, sim))  # its state on the small disk
        daemon.socket = small / "state" / "ringbearer.sock"
        daemon.start()
        try:
            daemon.call("pause", {"name": "email"})
            keys: set[str] = set()
            error = None
            for batch in range(200):
                messages = [email(batch * 100 + i) for i in range(100)]
                for m in messages:
                    m["payload"]["text"] = "x" * 2000
                try:
                    result = daemon.call("submit", {"messages": messages})
                except RequestError as exc:
                    error = exc
                    break
                keys |= {a["key"] for a in result["accepted"]}
            assert error is not None, "the disk never filled"
            assert "refuses writes" in error.message and "full" in error.message
            assert keys  # some were acknowledged before the disk filled
            assert daemon.status()["integrations"]  # still answering
            grow(small, "64m")
            later = daemon.call("submit", {"messages": [email(99_999)]})
            keys.add(later["accepted"][0]["key"])
            daemon.call("resume", {"name": "email"})
            daemon.wait_idle(120)
        finally:
            assert daemon.stop() == 0
            sim.stop()
        db = sqlite3.connect(small / "state" / "ringbearer.db")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = dict(db.execute("SELECT idempotency_key, status FROM messages").fetchall())
        db.close()
        assert set(stored) == keys  # every acknowledged message, and only those
        assert set(stored.values()) == {"delivered"}
