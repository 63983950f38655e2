"""Bounded listeners, in process: the HTTP server's limits, accepts that outlive EMFILE,
the control socket's slots kept for operators, refusals counted per interval, the
exact line cap, and the open-file limit at start.

The real daemon under the same floods is in test_e2e_listener_limits.py.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from ringbearer import ConfigError, _front
from ringbearer._accept import QUIET_SECONDS, accept_failures, accept_forever
from ringbearer._config import ControlSettings, MetricsSettings, parse
from ringbearer._httpserver import HttpLimits, HttpRequest, HttpResponse, serve_http
from ringbearer._journal import REFUSALS_EVERY_SECONDS, Journal
from ringbearer.control import (
    AccessPolicy,
    Guard,
    Peer,
    Refusal,
    RefusalReason,
    Request,
    Role,
    ServerLimits,
    serve_control,
)
from ringbearer.control._protocol import MAX_LINE
from ringbearer.store import MemoryStore

HOST = "127.0.0.1"
SWEEP = 0.5  # deadlines are enforced by a sweep this often: a timeout lands up to this late
GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
MIB = 1024 * 1024


# -- the HTTP server ---------------------------------------------------------------------------


@attrs.define
class Held:
    """A handler that answers at once, except on /hold: there it waits for ``release``."""

    release: trio.Event = attrs.Factory(trio.Event)
    holding: int = 0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/hold":
            self.holding += 1
            await self.release.wait()
        return HttpResponse.text(200, f"{request.method} {len(request.body)}\n")


async def start_http(nursery: trio.Nursery, limits: HttpLimits, handler: Any = None) -> int:
    """serve_http on a free loopback port with ``limits``; the port."""
    serve = functools.partial(serve_http, handler or Held(), HOST, 0, limits=limits)
    port: int = await nursery.start(serve)
    return port


async def read_until_closed(stream: trio.SocketStream) -> tuple[bytes, float]:
    """All the server sends until it closes, and when its first byte came."""
    data, first = bytearray(), None
    while chunk := await stream.receive_some():
        first = trio.current_time() if first is None else first
        data += chunk
    return bytes(data), first if first is not None else trio.current_time()


async def read_head(stream: trio.SocketStream) -> bytes:
    """The next response head (or interim response) off the stream."""
    data = bytearray()
    while not data.endswith(b"\r\n\r\n"):
        chunk = await stream.receive_some(1)
        assert chunk, f"closed after {bytes(data)!r}"
        data += chunk
    return bytes(data)


async def trickle(stream: trio.SocketStream, pieces: list[bytes], every: float) -> None:
    """Send one piece every ``every`` seconds, as long as the server lets it in."""
    for piece in pieces:
        try:
            await stream.send_all(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        await trio.sleep(every)


def post(path: str, length: int, *, expect: bool = False) -> bytes:
    extra = "Expect: 100-continue\r\n" if expect else ""
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


async def test_past_max_connections_a_connection_gets_503_and_is_closed_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The connection past the limit is answered 503 and closed at once; a freed slot serves."""
    port = await start_http(nursery, HttpLimits(max_connections=2))
    held = [await trio.open_tcp_stream(HOST, port) for _ in range(2)]
    await trio.testing.wait_all_tasks_blocked()
    started = trio.current_time()
    async with await trio.open_tcp_stream(HOST, port) as extra:
        reply, at = await read_until_closed(extra)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1\r\n" in reply
    assert at == started  # not queued behind the held ones
    await held[0].aclose()
    await trio.testing.wait_all_tasks_blocked()
    async with await trio.open_tcp_stream(HOST, port) as again:
        await again.send_all(GET)
        assert (await read_head(again)).startswith(b"HTTP/1.1 200 ")
    await held[1].aclose()


async def test_a_head_sent_a_byte_at_a_time_gets_408_at_the_header_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Slowloris: a head still incomplete header_seconds after it began gets 408 and a close."""
    port = await start_http(nursery, HttpLimits(header_seconds=10))
    async with await trio.open_tcp_stream(HOST, port) as slow:
        started = trio.current_time()
        pieces = [b"GET /metrics HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"]
        nursery.start_soon(trickle, slow, pieces, 4)
        reply, at = await read_until_closed(slow)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"head not received within 10 s" in reply
    assert 10 <= at - started <= 10 + SWEEP
    async with await trio.open_tcp_stream(HOST, port) as silent:  # sends nothing at all
        started = trio.current_time()
        reply, at = await read_until_closed(silent)
    assert reply.startswith(b"HTTP/1.1 408 ") and 10 <= at - started <= 10 + SWEEP


async def test_a_body_that_stops_coming_gets_408_at_the_body_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A body still short body_seconds after its head gets 408 and a close."""
    port = await start_http(nursery, HttpLimits(body_seconds=20))
    async with await trio.open_tcp_stream(HOST, port) as slow:
        started = trio.current_time()
        await slow.send_all(post("/metrics", 100) + b"x" * 10)
        reply, at = await read_until_closed(slow)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"body not received within 20 s" in reply
    assert 20 <= at - started <= 20 + SWEEP


async def test_a_kept_alive_connection_is_closed_after_idle_seconds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Between requests a connection may rest up to idle_seconds; past that it is closed quietly."""
    port = await start_http(nursery, HttpLimits(idle_seconds=30))
    async with await trio.open_tcp_stream(HOST, port) as client:
        for _ in range(3):
            await client.send_all(GET)
            assert (await read_head(client)).startswith(b"HTTP/1.1 200 ")
            await client.receive_some()  # the body
            await trio.sleep(29)
        started = trio.current_time()
        reply, _ = await read_until_closed(client)
    assert reply == b""  # closed, with nothing said: there was no request to answer
    assert 1 <= trio.current_time() - started <= 1 + SWEEP


async def test_a_body_over_max_body_bytes_gets_413_before_it_is_read(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The declared length decides: 413 comes at once, before a byte of the body is sent."""
    port = await start_http(nursery, HttpLimits(max_body_bytes=MIB))
    async with await trio.open_tcp_stream(HOST, port) as client:
        started = trio.current_time()
        await client.send_all(post("/metrics", MIB + 1))
        head = await read_head(client)
        assert trio.current_time() == started
    assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head
    async with await trio.open_tcp_stream(HOST, port) as exact:
        await exact.send_all(post("/metrics", MIB) + b"x" * MIB)
        assert (await read_head(exact)).startswith(b"HTTP/1.1 200 ")


async def test_bodies_in_flight_share_one_budget_and_a_body_without_room_waits_then_gets_503(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """1 MiB bodies held in a 2 MiB budget: a third waits (no 100 Continue), 503 at body_seconds."""
    handler = Held()
    limits = HttpLimits(max_body_bytes=MIB, max_buffered_bytes=2 * MIB, body_seconds=30)
    port = await start_http(nursery, limits, handler)
    holders = [await trio.open_tcp_stream(HOST, port) for _ in range(2)]
    for holder in holders:
        await holder.send_all(post("/hold", MIB) + b"x" * MIB)
    await trio.testing.wait_all_tasks_blocked()
    assert handler.holding == 2
    async with await trio.open_tcp_stream(HOST, port) as third:
        started = trio.current_time()
        await third.send_all(post("/metrics", MIB, expect=True))
        reply, at = await read_until_closed(third)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"100 Continue" not in reply
    assert 30 <= at - started <= 30 + SWEEP
    handler.release.set()
    for holder in holders:
        assert (await read_head(holder)).startswith(b"HTTP/1.1 200 ")
        await holder.aclose()
    async with await trio.open_tcp_stream(HOST, port) as fourth:  # room again: at once
        await fourth.send_all(post("/metrics", MIB, expect=True))
        assert (await read_head(fourth)).startswith(b"HTTP/1.1 100 Continue")


# -- accepts that outlive a full descriptor table ---------------------------------------------


@attrs.define(eq=False)
class Exhausted(trio.abc.Listener[trio.SocketStream]):
    """A listener whose accept fails with EMFILE ``failures`` times, then hands over ``then``."""

    failures: int
    then: list[Any]
    error: int = errno.EMFILE
    attempts: list[float] = attrs.Factory(list)

    async def accept(self) -> trio.SocketStream:
        await trio.lowlevel.checkpoint()
        self.attempts.append(trio.current_time())
        if len(self.attempts) <= self.failures:
            raise OSError(self.error, os.strerror(self.error))
        if not self.then:
            await trio.sleep_forever()
        stream: trio.SocketStream = self.then.pop(0)
        return stream

    async def aclose(self) -> None:
        pass


class Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def log_records(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records logged to ``name`` while the block runs."""
    handler = Collecting()
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.INFO)  # as the daemon runs: episodes end, and limits are told, at INFO
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = vars(record)["fields"]
    return found


async def test_accepts_back_off_through_emfile_log_once_and_recover(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Eight EMFILEs: retries at 0.1 s doubling to 1 s, one line as it starts, one once quiet."""
    admitted: list[Any] = []
    listener = Exhausted(failures=8, then=["first", "second"])
    logger = logging.getLogger("test.accept")
    with log_records("test.accept") as records:
        nursery.start_soon(accept_forever, listener, admitted.append, accept_failures(logger, "x"))
        await trio.sleep(5 + QUIET_SECONDS)
    gaps = [round(b - a, 3) for a, b in zip(listener.attempts, listener.attempts[1:], strict=False)]
    assert gaps[:8] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert admitted == ["first", "second"]  # recovered: the connections waiting are taken
    assert [r.levelno for r in records] == [logging.ERROR, logging.INFO]
    assert fields_of(records[0])["error"] == "EMFILE"
    assert fields_of(records[1])["count"] == 8


async def test_an_accept_error_other_than_running_out_still_ends_the_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only want of descriptors or memory is waited out; any other error is raised."""
    listener = Exhausted(failures=1, then=[], error=errno.EBADF)
    with pytest.raises(OSError, match="Bad file descriptor"):
        failing = accept_failures(logging.getLogger("test.accept"), "x")
        await accept_forever(listener, lambda stream: None, failing)


# -- the control socket ------------------------------------------------------------------------


@attrs.frozen
class OperatorPids(AccessPolicy):
    """Operators are the processes listed by pid (filled in as they start); the rest read."""

    pids: set[int] = attrs.field(factory=set, eq=False)

    def role(self, peer: Peer) -> Role | None:
        return Role.OPERATE if peer.pid in self.pids else Role.READ


async def answer(request: Request) -> Any:
    return {"answered": type(request).__name__}


async def start_control(
    nursery: trio.Nursery, path: Path, limits: ServerLimits, guard: Guard
) -> None:
    await nursery.start(functools.partial(serve_control, path, answer, limits=limits, guard=guard))


def line(cmd: str = "status") -> bytes:
    return json.dumps({"id": cmd, "cmd": cmd, "args": {}}).encode() + b"\n"


async def reply_of(stream: trio.SocketStream) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        assert chunk, f"closed after {data[:200]!r}"
        data += chunk
    found: dict[str, Any] = json.loads(data)
    return found


OPERATOR = """
import json, socket, sys
sys.stdin.readline()  # connect only once the test knows this pid
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"id": 1, "cmd": "status", "args": {}}).encode() + b"\\n")
print(s.makefile().readline(), end="", flush=True)
"""


async def operator_status(path: Path, policy: OperatorPids) -> dict[str, Any]:
    """``status`` from another process, which the policy makes an operator."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", OPERATOR, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        policy.pids.add(proc.pid)
        await proc.stdin.send_all(b"go\n")
        data = b""
        while chunk := await proc.stdout.receive_some():
            data += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await proc.stdin.aclose()
        await proc.stdout.aclose()
    found: dict[str, Any] = json.loads(data)
    return found


async def test_readers_holding_every_shared_slot_leave_the_operator_its_own(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """8 readers hold the shared slots, 100 more get busy; an operator's status still answers."""
    path, policy = tmp_path / "c.sock", OperatorPids()
    refusals: list[Refusal] = []
    limits = ServerLimits(max_connections=8, operator_slots=2)
    await start_control(nursery, path, limits, Guard(policy, refused=refusals.append))
    with trio.fail_after(30):
        held = [await trio.open_unix_socket(str(path)) for _ in range(8)]
        for stream in held:  # each answered: each has its slot
            await stream.send_all(line())
            assert (await reply_of(stream))["ok"] is True
        for _ in range(100):
            async with await trio.open_unix_socket(str(path)) as late:
                refused = await reply_of(late)
            assert refused["error"]["code"] == "busy"
            assert "2 more are kept for operators" in refused["error"]["message"]
        started = trio.current_time()
        reply = await operator_status(path, policy)
        took = trio.current_time() - started
    assert reply == {"id": 1, "ok": True, "result": {"answered": "Status"}}
    assert took < 5  # a fresh Python process, most of it
    assert [r.reason for r in refusals] == [RefusalReason.BUSY] * 100
    for stream in held:
        await stream.aclose()


async def test_the_operator_slots_are_bounded_too(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The daemon's own user fills shared and reserved slots; the next gets busy, all in use."""
    path = tmp_path / "c.sock"
    await start_control(nursery, path, ServerLimits(max_connections=2, operator_slots=1), Guard())
    held = [await trio.open_unix_socket(str(path)) for _ in range(3)]
    for stream in held:
        await stream.send_all(line())
        assert (await reply_of(stream))["ok"] is True
    async with await trio.open_unix_socket(str(path)) as late:
        refused = await reply_of(late)
    assert refused["error"] == {
        "code": "busy",
        "message": "too many control connections: all 3 in use",
    }
    for stream in held:
        await stream.aclose()


async def test_a_line_of_exactly_max_line_bytes_is_served_and_one_more_is_refused(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The 1 MiB cap is exact: MAX_LINE bytes before the newline served, MAX_LINE + 1 refused."""
    path = tmp_path / "c.sock"
    await start_control(nursery, path, ServerLimits(), Guard())
    request = line().rstrip(b"\n")
    for size, ok in ((MAX_LINE, True), (MAX_LINE + 1, False), (MAX_LINE - 1, True)):
        padded = request + b" " * (size - len(request)) + b"\n"
        async with await trio.open_unix_socket(str(path)) as stream:
            for start in range(0, len(padded), 50_000):  # in pieces: across many reads
                await stream.send_all(padded[start : start + 50_000])
            reply = await reply_of(stream)
        assert reply["ok"] is ok, (size, reply)
        if not ok:
            assert reply["error"]["code"] == "line_too_long"
    async with await trio.open_unix_socket(str(path)) as endless:  # no newline ever comes
        started = trio.current_time()
        await endless.send_all(b" " * (MAX_LINE + 1))
        reply = await reply_of(endless)
        assert reply["error"]["code"] == "line_too_long"
        assert trio.current_time() == started  # refused as soon as the length is known


# -- refusals counted per interval -------------------------------------------------------------


def refusal(reason: RefusalReason, uid: int = 1000) -> Refusal:
    return Refusal(reason, Peer.from_ids(4242, uid, uid), "held up", None)


async def test_a_burst_of_refusals_is_one_line_and_one_event_per_interval_with_its_count(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """939 busy: told at once, then the other 938 in one line and event; quiet, then at once."""
    store = MemoryStore(lambda: 0.0)
    journal = Journal(store, lambda: 0.0)
    nursery.start_soon(journal.report_refusals_forever)
    with log_records("ringbearer.daemon") as records:
        for n in range(939):
            journal.refused(refusal(RefusalReason.BUSY, uid=1000 + n % 3))
        journal.refused(refusal(RefusalReason.FORBIDDEN))  # its own reason: told at once too
        await trio.sleep(REFUSALS_EVERY_SECONDS * 3)
        journal.refused(refusal(RefusalReason.BUSY))  # after a quiet interval: at once
    events = [e.detail for e in store.event_log if e.kind == "control_refused"]
    assert [(e["reason"], e["count"]) for e in events if e] == [
        ("busy", 1),
        ("forbidden", 1),
        ("busy", 938),
        ("busy", 1),
    ]
    assert events[2] and events[2]["uids"] == [1000, 1001, 1002]
    logged = [fields_of(r) for r in records if r.getMessage() == "control refused"]
    assert [(f["reason"], f["count"]) for f in logged] == [
        (e["reason"], e["count"]) for e in events if e
    ]


async def test_counts_left_at_shutdown_are_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Refusals counted but not yet told when the reporter stops are told as it stops."""
    store = MemoryStore(lambda: 0.0)
    journal = Journal(store, lambda: 0.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.report_refusals_forever)
        for _ in range(5):
            journal.refused(refusal(RefusalReason.IDLE))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    counts = [e.detail["count"] for e in store.event_log if e.detail]
    assert counts == [1, 4]


# -- the open-file limit at start --------------------------------------------------------------

RAISE = """
import resource
from ringbearer._front import raise_open_file_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))
print(*raise_open_file_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    """systemd's default: soft 1,024 under a higher hard limit; the daemon lifts soft to hard."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048:
        pytest.skip("the hard limit here is below 2048")
    out = subprocess.run(
        [sys.executable, "-c", RAISE], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["2048", "2048", "2048", "2048"]


def test_a_refused_raise_is_logged_and_the_limit_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ~@resources setrlimit fails: a warning, then the limit the daemon runs with."""

    def refuse(*args: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 524288))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    with log_records("ringbearer.daemon") as records:
        _front.check_open_file_limit(ControlSettings(), MetricsSettings())
    said = {r.getMessage(): fields_of(r) for r in records}
    assert said.keys() == {"cannot raise the open-file limit", "open-file limit"}
    assert said["open-file limit"] == {"soft": 1024, "hard": 524288, "listeners": 132}


def test_a_limit_the_listeners_could_fill_is_warned_of(monkeypatch: pytest.MonkeyPatch) -> None:
    """256 open files cannot hold 132 listener connections beside the rest: a warning says so."""
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 256))
    with log_records("ringbearer.daemon") as records:
        _front.check_open_file_limit(ControlSettings(), MetricsSettings())
    warned = [r for r in records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == [
        "the open-file limit leaves little room beside the listeners' connections"
    ]
    assert fields_of(warned[0])["hint"] == "LimitNOFILE= in the unit"


# -- the settings ------------------------------------------------------------------------------

LIMITS = """
[metrics]
max_connections = 8
header_timeout_seconds = 2.5
body_timeout_seconds = 5
idle_seconds = 7
max_body_bytes = 65536
max_buffered_bytes = 1048576
[control]
max_connections = 16
operator_slots = 2
[integrations.slack]
kind = "slack_webhook"
url = { env = "SLACK_WEBHOOK_URL" }
"""


def test_the_limits_are_settings_each_checked_by_name(tmp_path: Path) -> None:
    """[metrics] and [control] take the limits; a bad one is an error naming its key."""
    config = parse(LIMITS, tmp_path / "config.toml")
    assert _front._metrics_limits(config.metrics) == HttpLimits(8, 2.5, 5.0, 7.0, 65536, MIB)
    assert _front._control_limits(config.control) == ServerLimits(
        max_connections=16, idle_seconds=300.0, operator_slots=2
    )
    bad = LIMITS.replace("= 8\n", "= 0\n").replace("operator_slots = 2", 'operator_slots = "x"')
    with pytest.raises(ConfigError) as caught:
        parse(bad, tmp_path / "config.toml")
    found = [str(p) for p in caught.value.problems]
    assert any(p.startswith("metrics.max_connections:") for p in found), found
    assert any(p.startswith("control.operator_slots:") for p in found), found
