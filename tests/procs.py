"""Real processes for end-to-end tests: the ringbearer daemon and the simulator.

Readiness is waited for, never slept for: the daemon says READY=1 over a real
sd_notify datagram socket, the simulator prints the line naming its ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ringbearer.control import Client

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = ROOT / "config.toml"
START_TIMEOUT = 30.0


def ringbearer(*args: str) -> list[str]:
    return [sys.executable, "-m", "ringbearer", *args]


class Simulator:
    """``ringbearer simulate`` on free ports."""

    def __init__(self, log: Path) -> None:
        with log.open("wb") as errors:
            self.proc = subprocess.Popen(
                ringbearer("simulate", "--listen", "127.0.0.1:0", "--smtp", "127.0.0.1:0"),
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://[\d.]+:\d+) \(smtp ([\d.]+):(\d+)\)", line)
        if not found:
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url, self.smtp = found.group(1), f"{found.group(2)}:{found.group(3)}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.http.get("/_sim/stats").json()
        return result

    def fault(self, provider: str, **fields: Any) -> None:
        self.http.post("/_sim/faults", json={"provider": provider, **fields}).raise_for_status()

    def clear(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Daemon:
    """``ringbearer run`` with its own state folder, told apart by its notify socket."""

    def __init__(self, workdir: Path, config_text: str, env: dict[str, str] | None = None) -> None:
        self.extra_env = env or {}
        self.workdir = workdir
        self.config = workdir / "config.toml"
        self.config.write_text(config_text)
        self.socket = workdir / "state" / "ringbearer.sock"
        self.notify_path = workdir / "notify.sock"
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.notifications: list[str] = []

    def start(self) -> Daemon:
        self.notify_path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self.notify_path))
        self._notify.settimeout(START_TIMEOUT)
        env = {**os.environ, **self.extra_env, "NOTIFY_SOCKET": str(self.notify_path)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ringbearer("run", "-c", str(self.config)),
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.workdir,
            )
        self.wait_for("READY=1")
        return self

    def wait_for(self, key: str) -> str:
        """Block until a notification containing ``key`` arrives (or the daemon dies)."""
        while True:
            try:
                data = self._notify.recv(4096).decode()
            except TimeoutError:
                raise RuntimeError(
                    f"no {key} within {START_TIMEOUT} s:\n{self.log_text()}"
                ) from None
            self.notifications.append(data)
            if key in data.splitlines():
                return data

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, timeout: float = 60.0) -> Client:
        return Client(self.socket, timeout=timeout)

    def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
        with self.client(timeout) as client:
            return client.raw(cmd, args)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ringbearer(*args, "-c", str(self.config)),
            capture_output=True,
            text=True,
            cwd=self.workdir,
            timeout=300,
        )

    def wait_idle(self, timeout: float = 120.0) -> None:
        result = self.call("wait", {"timeout": timeout}, timeout=timeout + 10)
        assert result["idle"], f"not idle after {timeout} s: {result}"

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    def integration(self, name: str) -> dict[str, Any]:
        return next(i for i in self.status()["integrations"] if i["name"] == name)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self._notify.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # keep what it said on the way out (STOPPING=1)
                self.notifications.append(self._notify.recv(4096).decode())
        self._notify.close()
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._notify.close()


T = TypeVar("T")


def poll(read: Callable[[], T], ok: Callable[[T], bool], seconds: float, what: str) -> T:
    """Read a real process's state until ``ok`` holds, or fail after ``seconds`` saying what.

    For what the daemon does on its own clock (a stall check, a timeout, a log line)
    there is nothing to block on but its answers, so they are read again every 50 ms.
    """
    deadline = time.monotonic() + seconds
    while not ok(value := read()):
        assert time.monotonic() < deadline, f"not within {seconds} s: {what} (last: {value!r})"
        time.sleep(0.05)
    return value


def config_for(
    workdir: Path,
    sim: Simulator | None = None,
    *,
    extra: str = "",
    supervisor: dict[str, str] | None = None,
    base: Path = SHIPPED_CONFIG,
) -> str:
    """The shipped config, with its state in ``workdir`` and a free metrics port.

    With a simulator, the daemon uses it instead of starting its own.
    """
    text = base.read_text()
    for key, value in (supervisor or {}).items():
        text = re.sub(rf"^{key} = \S+", f"{key} = {value}", text, count=1, flags=re.MULTILINE)
    text = text.replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
    # Off, unless a test turns it on: the shipped calendar would make a test
    # run on a Saturday behave differently.
    text = text.replace('weekdays = ["saturday"]', "weekdays = []")
    text = text.replace('state_dir = "state"', f'state_dir = "{workdir / "state"}"')
    if sim is not None:
        text = text.replace(
            "[sandbox]\nenabled = true",
            f'[sandbox]\nenabled = true\nurl = "{sim.url}"\nsmtp = "{sim.smtp}"',
        )
    return text + "\n" + extra


def write_jsonl(path: Path, messages: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def email(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "target": "email",
        "payload": {
            "from": "Studio <studio@example.com>",
            "to": [f"guest{n}@example.com"],
            "subject": f"Timeline update {n}",
            "text": "The first dance is at 19:30.",
        },
        **extra,
    }


@contextmanager
def running(workdir: Path, config_text: str) -> Iterator[Daemon]:
    daemon = Daemon(workdir, config_text).start()
    try:
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            code = daemon.stop()
            assert code == 0, f"daemon exited {code}:\n{daemon.log_text()}"
