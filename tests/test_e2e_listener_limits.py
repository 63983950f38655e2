"""End to end: the real daemon under floods of connections, with 1,024 open files.

Issue 11, symptoms 6, 7 and 8: idle connections to the metrics listener, large
bodies sent to it all at once, and control connections held by another user.
The daemon stays up, its memory and descriptors stay bounded, and an
operator's ``status`` answers. Every figure measured is printed (``-s``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ringbearer.control._protocol import MAX_LINE

from .procs import Daemon, config_for, email, poll, running

pytestmark = pytest.mark.e2e

NOFILE = 1024  # systemd's soft limit for a unit without LimitNOFILE=
MIB = 1024 * 1024
RSS_BOUND_MIB = 64  # what the floods below may add to the daemon's idle RSS


@pytest.fixture(autouse=True)
def room_for_our_end() -> Iterator[None]:
    """This process holds the other end of every connection: 1,100 of them and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-file limit here ({hard}) is below 4,096")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def limit_open_files(daemon: Daemon) -> None:
    """The daemon's soft and hard limits both at 1,024, as if systemd had started it so.

    Both, so its own raising at start (which runs before this) cannot lift them.
    """
    assert daemon.proc is not None
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def open_fds(daemon: Daemon) -> int:
    assert daemon.proc is not None
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def rss_mib(daemon: Daemon) -> float:
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found, status
    return int(found.group(1)) / 1024


def metrics_port(daemon: Daemon) -> int:
    return int(daemon.status()["metrics"].rsplit(":", 1)[1].split("/")[0])


def with_metrics(text: str, **settings: object) -> str:
    """The config with ``[metrics]`` keys added."""
    lines = "".join(f"\n{key} = {value}" for key, value in settings.items())
    return text.replace('path = "/metrics"', 'path = "/metrics"' + lines, 1)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Bounded polling of a real process (see procs.poll)."""
    poll(condition, bool, seconds, what)


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to 127.0.0.1:port that never send a byte."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        socks.append(sock)
    return socks


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def answers(socks: list[socket.socket], seen: dict[int, bytes]) -> int:
    """Read what the server said on each socket and whether it closed; how many it closed."""
    closed = 0
    for index, sock in enumerate(socks):
        if seen.get(index, b"").endswith(b"<closed>"):
            closed += 1
            continue
        try:
            while chunk := sock.recv(65536):
                seen[index] = seen.get(index, b"") + chunk
            seen[index] = seen.get(index, b"") + b"<closed>"
            closed += 1
        except (BlockingIOError, ConnectionResetError):
            pass
    return closed


def delivers(daemon: Daemon) -> None:
    """A message submitted now is delivered."""
    accepted = daemon.call("submit", {"messages": [email(1)]})["accepted"]
    daemon.wait_idle(60)
    assert daemon.call("message", {"id": accepted[0]["id"]})["status"] == "delivered"


def scrape(daemon: Daemon) -> int:
    """The status code of a scrape of /metrics."""
    return httpx.get(daemon.status()["metrics"], timeout=10).status_code


def log_lines(daemon: Daemon, words: str) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if words in line]


# -- symptom 6: idle connections ---------------------------------------------------------------


def test_1100_idle_metrics_connections_leave_the_daemon_up_and_status_fast(
    tmp_path: Path,
) -> None:
    """With 1,024 open files, 1,100 idle metrics connections: 64 held, the rest get 503 at once,
    the held ones 408 at the header deadline; status answers within a second throughout."""
    text = with_metrics(config_for(tmp_path), header_timeout_seconds=3)
    with running(tmp_path, text) as daemon:
        limit_open_files(daemon)
        port, before = metrics_port(daemon), open_fds(daemon)
        with closing_all(idle_connections(port, 1100)) as socks:
            seen: dict[int, bytes] = {}
            until(lambda: answers(socks, seen) >= 1100 - 64, 20, "the connections past 64 refused")
            held = open_fds(daemon)
            _, took = timed(daemon.status)
            print(f"\nfds: {before} idle, {held} with 1,100 connections; status took {took:.3f} s")
            assert took < 1.0
            assert held <= before + 64 + 4
            until(lambda: answers(socks, seen) == 1100, 20, "the held connections closed")
        said = sorted(set(reply.split(b"\r\n", 1)[0] for reply in seen.values()))
        assert said == [b"HTTP/1.1 408 Request Timeout", b"HTTP/1.1 503 Service Unavailable"]
        assert sum(reply.startswith(b"HTTP/1.1 408") for reply in seen.values()) == 64
        assert scrape(daemon) == 200
        delivers(daemon)
        assert len(log_lines(daemon, "connection limit reached")) == 1
        assert log_lines(daemon, "accept failed") == []


# -- accepts through EMFILE --------------------------------------------------------------------


def test_accept_loops_outlive_a_full_descriptor_table(tmp_path: Path) -> None:
    """A metrics limit above the open-file limit: the table fills, accepts fail with EMFILE,
    the daemon stays up, logs once per listener, and serves again once descriptors free."""
    text = with_metrics(config_for(tmp_path), max_connections=4000, header_timeout_seconds=3)
    with running(tmp_path, text) as daemon:
        limit_open_files(daemon)
        with closing_all(idle_connections(metrics_port(daemon), 1100)):
            until(lambda: bool(log_lines(daemon, "accept failed")), 20, "the table full")
            assert open_fds(daemon) >= NOFILE - 8
            # The operator's request waits in the backlog until the held ones time out.
            reply, took = timed(lambda: daemon.call("status", timeout=30))
            print(f"\nstatus with the table full took {took:.3f} s (held ones expire at 3 s)")
            assert reply["version"] and took < 3 + 5
            until(lambda: len(log_lines(daemon, "accepting again")) == 2, 30, "both recovered")
        assert daemon.proc is not None and daemon.proc.poll() is None
        failed = log_lines(daemon, "accept failed")
        assert len(failed) == 2  # once per listener, not once per failed accept
        assert any("control " in line for line in failed) and any(
            "metrics " in line for line in failed
        )
        assert scrape(daemon) == 200
        delivers(daemon)


# -- symptom 7: bodies all at once -------------------------------------------------------------


async def send_body(port: int, length: int, sent: int) -> bytes:
    """POST a body of ``length`` bytes (sending ``sent`` of them) and read the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = f"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
    received = bytearray()

    async def push() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head)
            for _ in range(sent // MIB):
                await stream.send_all(b"x" * MIB)

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(push)
        with contextlib.suppress(trio.BrokenResourceError):
            while chunk := await stream.receive_some():
                received += chunk
                if b"\r\n\r\n" in received:
                    nursery.cancel_scope.cancel()
                    break
    return bytes(received)


async def peak_rss(daemon: Daemon, load: Callable[[], Any]) -> tuple[float, list[bytes]]:
    """The highest RSS (MiB) sampled every 10 ms while ``load`` runs, and its answers."""
    peak = rss_mib(daemon)
    results: list[bytes] = []
    done = trio.Event()

    async def run() -> None:
        results.extend(await load())
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        while not done.is_set():
            peak = max(peak, rss_mib(daemon))
            await trio.sleep(0.01)
    return peak, results


async def all_at_once(port: int, count: int, length: int, sent: int) -> list[bytes]:
    results: list[bytes] = []

    async def one() -> None:
        results.append(await send_body(port, length, sent))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
    return results


async def test_40_bodies_of_8_mib_at_once_keep_rss_within_64_mib_of_idle(tmp_path: Path) -> None:
    """40 connections each sending an 8 MiB body at once: 413 before the body is read; 40 more
    of 1 MiB (the limit) are read within the 16 MiB budget; RSS stays within +64 MiB."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        port = metrics_port(daemon)
        assert scrape(daemon) == 200  # warm: the first scrape builds what it needs
        idle = rss_mib(daemon)
        peak, big = await peak_rss(daemon, lambda: all_at_once(port, 40, 8 * MIB, 8 * MIB))
        assert [r[:13] for r in big] == [b"HTTP/1.1 413 "] * 40
        peak_limit, at_limit = await peak_rss(daemon, lambda: all_at_once(port, 40, MIB, MIB))
        assert {r[:13] for r in at_limit} == {b"HTTP/1.1 405 "}  # read whole, then answered
        print(
            f"\nRSS: idle {idle:.1f} MiB; peak {peak:.1f} MiB under 40 x 8 MiB, "
            f"{peak_limit:.1f} MiB under 40 x 1 MiB; after {rss_mib(daemon):.1f} MiB"
        )
        assert max(peak, peak_limit) - idle <= RSS_BOUND_MIB
        _, took = timed(daemon.status)
        assert took < 1.0
        assert scrape(daemon) == 200


# -- symptom 11: the line cap -------------------------------------------------------------------


def ask_raw(path: Path, data: bytes) -> dict[str, Any]:
    """Send ``data`` on a fresh control connection and read the one reply line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(data)
        reply = sock.makefile("rb").readline()
    found: dict[str, Any] = json.loads(reply)
    return found


def test_the_line_cap_is_exact_on_the_daemon_socket(tmp_path: Path) -> None:
    """A request line of exactly 1 MiB is served; 1 MiB + 1 byte is refused as line_too_long."""
    request = json.dumps({"id": 1, "cmd": "status", "args": {}}).encode()
    with running(tmp_path, config_for(tmp_path)) as daemon:
        for size, ok in ((MAX_LINE, True), (MAX_LINE + 1, False)):
            reply = ask_raw(daemon.socket, request + b" " * (size - len(request)) + b"\n")
            assert reply["ok"] is ok, (size, reply)
        assert reply["error"]["code"] == "line_too_long"
        assert daemon.status()["version"]


# -- symptom 8: held control connections -------------------------------------------------------

HOLDER = """
import json, selectors, socket, sys, time
path, count, expect_held = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.setblocking(False)
    socks.append(s)
busy, deadline = set(), time.monotonic() + 30
waiting = selectors.DefaultSelector()  # epoll: more sockets than select() takes
for i, s in enumerate(socks):
    waiting.register(s, selectors.EVENT_READ, i)
while len(busy) < count - expect_held and time.monotonic() < deadline:
    for key, _ in waiting.select(timeout=1.0):  # a refusal arrives, or a second passes
        data = key.fileobj.recv(65536)
        if b'"busy"' in data or not data:
            waiting.unregister(key.fileobj)
        if b'"busy"' in data:
            busy.add(key.data)
print(json.dumps({"connected": len(socks), "busy": len(busy)}), flush=True)
sys.stdin.readline()  # hold them until told
"""


def python_for(user: str) -> str | None:
    """A Python the given user may run (this one may sit in a home it cannot enter)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate is None:
            continue
        try:
            subprocess.run([candidate, "-c", "pass"], user=user, timeout=30, check=True)
        except (OSError, subprocess.CalledProcessError):
            continue  # cannot even reach it
        return candidate
    return None


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A folder for the control socket that another user can reach (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rb-lim-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="holding connections as another user needs root")
def test_1000_control_connections_held_by_a_reader_leave_the_operator_status(
    tmp_path: Path, socket_dir: Path
) -> None:
    """nobody (a reader) opens 1,000 control connections: 64 held, 936 busy at once; the
    operator's status answers within a second; the refusals are 2 audit events, not 936."""
    python = python_for("nobody")
    if python is None:
        pytest.skip("no Python that user nobody may run")
    path = socket_dir / "rb.sock"
    text = config_for(tmp_path)
    text = text.replace("[daemon]\n", f'[daemon]\nsocket = "{path}"\n', 1)
    text = text.replace('[control]\ngroup = ""', '[control]\ngroup = "nogroup"', 1)
    text = text.replace("readers = { users = [], groups = [] }", 'readers = { users = ["nobody"] }')
    daemon = Daemon(tmp_path, text)
    daemon.socket = path
    daemon.start()
    limit_open_files(daemon)
    holder = subprocess.Popen(
        [python, "-c", HOLDER, str(path), "1000", "64"],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        assert held == {"connected": 1000, "busy": 936}
        reply, took = timed(daemon.status)
        print(f"\noperator status with 1,000 reader connections opened: {took:.3f} s")
        assert reply["version"] and took < 1.0
        until(lambda: refused_count(daemon) == 936, 30, "the refusals counted")
        events = refusal_events(daemon)
        assert [e["detail"]["count"] for e in events] == [1, 935]  # oldest first
        assert {e["detail"]["uid"] for e in events} == {65534}
        assert len(log_lines(daemon, '"control refused"')) == 2
    finally:
        holder.communicate("done\n", timeout=30)
        code = daemon.stop()
    assert code == 0, daemon.log_text()


def refusal_events(daemon: Daemon) -> list[dict[str, Any]]:
    reply = daemon.call("audit", {"kinds": ["control_refused"]})
    events: list[dict[str, Any]] = list(reversed(reply["events"]))
    return events


def refused_count(daemon: Daemon) -> int:
    return sum(int(e["detail"]["count"]) for e in refusal_events(daemon))
