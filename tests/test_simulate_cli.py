"""``ringbearer simulate`` as a real process: it starts, logs, and stops cleanly on a signal.

Readiness is waited for, never slept for: the test reads the process's
stderr until its start log line, within a deadline.
"""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

HOST = "127.0.0.1"
DEADLINE = 30.0  # seconds for the process to start or to stop


def simulate(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ringbearer._cli_sandbox", "simulate", *argv]


class Running:
    """A ``simulate`` process, its stderr lines gathered by a thread as they come."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            simulate(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, words: str) -> str:
        """The first stderr line holding ``words``; fail once the deadline passes."""
        end = time.monotonic() + DEADLINE
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if words in line:
                return line
        raise AssertionError(f"no line with {words!r} within {DEADLINE}s: {self.seen}")

    def stop(self, signum: signal.Signals) -> tuple[int, list[str]]:
        """Send ``signum``; the exit code, and every stderr line after the start."""
        self.proc.send_signal(signum)
        code = self.proc.wait(DEADLINE)
        self._reader.join(DEADLINE)
        rest: list[str] = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        return code, rest


@contextmanager
def running(*argv: str) -> Iterator[Running]:
    process = Running(*argv)
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(DEADLINE)
        for pipe in (process.proc.stdout, process.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_it_cleanly(signum: signal.Signals) -> None:
    """Started, it logs its URL and SMTP address; Ctrl-C or SIGTERM: exit 0, one line, no trace."""
    with running("--listen", f"{HOST}:0", "--smtp", f"{HOST}:0") as sim:
        started = sim.wait_for("simulator started")
        assert sim.proc.stdout is not None
        announced = sim.proc.stdout.readline()
        assert announced.startswith(f"simulator listening on http://{HOST}:")
        url = announced.split()[3]
        assert f"url={url}" in started and f"smtp={HOST}:" in started
        assert httpx.get(f"{url}/_sim/stats?provider=resend", timeout=5).status_code == 200
        code, rest = sim.stop(signum)
    assert code == 0
    assert len(rest) == 1, rest
    assert "simulator stopped" in rest[0] and f"signal={signum.name}" in rest[0]


def test_no_smtp_when_asked_for_none() -> None:
    """``--smtp ''`` serves HTTP alone, and says so."""
    with running("--listen", f"{HOST}:0", "--smtp", "") as sim:
        assert "smtp=none" in sim.wait_for("simulator started")
        code, _ = sim.stop(signal.SIGTERM)
    assert code == 0


@pytest.mark.parametrize(("option", "service"), [("--listen", "HTTP"), ("--smtp", "SMTP")])
def test_a_busy_address_is_one_line_and_exit_2(option: str, service: str) -> None:
    """An address already taken: one line on stderr naming it, exit 2, no traceback."""
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--listen": f"{HOST}:0", "--smtp": f"{HOST}:0", option: f"{HOST}:{port}"}
        done = subprocess.run(
            simulate(*(word for pair in ports.items() for word in pair)),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"ringbearer: cannot start the simulator: {HOST}:{port} ({service}): Address already in use"
    ]
    assert done.stdout == ""


def test_a_malformed_address_is_bad_usage() -> None:
    """``--listen`` that is no HOST:PORT stops at the parser: exit 2 and a usage line."""
    done = subprocess.run(
        simulate("--listen", "nowhere"), capture_output=True, text=True, timeout=DEADLINE
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ringbearer simulate")
    assert "invalid HOST:PORT value: 'nowhere'" in done.stderr
