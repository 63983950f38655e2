"""The control socket's limits on a real Unix socket: busy, long lines, idle and stalled peers.

Every refusal is an error reply where the connection can still carry one, and
reaches the guard, which in the daemon makes it a log line and an audit event.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from ringbearer.control import (
    AccessPolicy,
    Guard,
    Principals,
    Refusal,
    RefusalReason,
    Request,
    ServerLimits,
    Status,
    serve_control,
)

from .harness import running_core

BIG = "x" * (256 * 1024)  # a reply larger than a Unix socket's buffer holds


@attrs.define
class Refusals:
    """A guard's ``refused`` hook that keeps what it hears, and says when it heard one."""

    seen: list[Refusal] = attrs.Factory(list)
    heard: trio.Event = attrs.Factory(trio.Event)

    def __call__(self, refusal: Refusal) -> None:
        self.seen.append(refusal)
        self.heard.set()

    @property
    def reasons(self) -> list[RefusalReason]:
        return [r.reason for r in self.seen]


async def answer(request: Request) -> Any:
    """Status answers with a large reply; anything else with a small one."""
    return {"blob": BIG} if isinstance(request, Status) else {"answered": type(request).__name__}


async def serve(
    nursery: trio.Nursery, path: Path, guard: Guard, limits: ServerLimits, handle: Any = answer
) -> None:
    await nursery.start(
        lambda task_status: serve_control(
            path, handle, limits=limits, guard=guard, task_status=task_status
        )
    )


def line(cmd: str, **args: Any) -> bytes:
    return json.dumps({"id": cmd, "cmd": cmd, "args": args}).encode() + b"\n"


async def read_reply(stream: trio.SocketStream) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        assert chunk, f"closed after {data[:200]!r}"
        data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


async def assert_closed(stream: trio.SocketStream) -> None:
    assert await stream.receive_some() == b""


async def test_a_peer_that_never_reads_its_replies_loses_its_slot(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A client that never reads its replies is cut off at the idle limit; its slot frees."""
    path = tmp_path / "rb.sock"
    refusals = Refusals()
    limits = ServerLimits(max_connections=1, idle_seconds=30)
    await serve(nursery, path, Guard(refused=refusals), limits)
    hog = await trio.open_unix_socket(str(path))
    await hog.send_all(line("status") * 64)  # 16 MiB of replies, never read
    started = trio.current_time()
    with trio.fail_after(300):
        await refusals.heard.wait()
    assert trio.current_time() - started >= 30
    assert refusals.reasons == [RefusalReason.STALLED]
    assert "not read within 30 s" in refusals.seen[0].message
    async with await trio.open_unix_socket(str(path)) as client:
        await client.send_all(line("pause", name="alpha"))
        assert await read_reply(client) == {
            "id": "pause",
            "ok": True,
            "result": {"answered": "Pause"},
        }
    await hog.aclose()


async def test_an_idle_connection_is_told_and_closed_but_a_talking_one_stays(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Silence for idle_seconds gets an `idle` error and a close; a request now and then not."""
    path = tmp_path / "rb.sock"
    refusals = Refusals()
    await serve(nursery, path, Guard(refused=refusals), ServerLimits(idle_seconds=30))
    async with await trio.open_unix_socket(str(path)) as quiet:
        started = trio.current_time()
        reply = await read_reply(quiet)
        assert trio.current_time() - started == 30
        assert reply["ok"] is False and reply["error"]["code"] == "idle"
        assert "30 s" in reply["error"]["message"]
        await assert_closed(quiet)
    assert refusals.reasons == [RefusalReason.IDLE]
    async with await trio.open_unix_socket(str(path)) as talking:
        for _ in range(5):  # 100 s in all, never 30 s quiet
            await trio.sleep(20)
            await talking.send_all(line("pause", name="alpha"))
            assert (await read_reply(talking))["ok"] is True
    assert refusals.reasons == [RefusalReason.IDLE]


class Collecting(logging.Handler):
    """A handler that keeps every record it is handed."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def log_records(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records logged to ``name``, whatever the logging set-up around the test."""
    records: list[logging.LogRecord] = []
    handler = Collecting(records)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


async def test_every_refusal_is_an_error_reply_a_log_line_and_an_audit_event(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """forbidden (request and connection), busy, line_too_long, idle: a reply, a log, an event."""
    me = os.getuid()
    reader = AccessPolicy(readers=Principals(users=(str(me),)), owner_uid=me + 1)
    stranger = AccessPolicy(owner_uid=me + 1)
    limits = ServerLimits(max_connections=1, idle_seconds=30, max_line=1000)
    async with running_core(tmp_path) as core, trio.open_nursery() as nursery:
        daemon = core.daemon

        async def handle(request: Request) -> Any:
            return await daemon.handle(request)

        path, closed_path = tmp_path / "rb.sock", tmp_path / "closed.sock"
        refused = core.parts.journal.refused
        await serve(nursery, path, Guard(reader, refused=refused), limits, handle)
        await serve(nursery, closed_path, Guard(stranger, refused=refused), limits, handle)
        with log_records("ringbearer.daemon") as records:
            codes = await refuse_each_way(path, closed_path)
        nursery.cancel_scope.cancel()
    reasons = ["forbidden", "busy", "line_too_long", "idle", "forbidden"]
    assert codes == reasons
    events = [e for e in core.store.event_log if e.kind == "control_refused"]
    assert [e.detail["reason"] for e in events if e.detail] == reasons
    assert [e.detail["refused"] for e in events if e.detail] == ["pause", *["connection"] * 4]
    assert all(e.detail and e.detail["uid"] == me for e in events)
    logged = [r for r in records if r.getMessage() == "control refused"]
    # The structured fields are an ``extra`` of the record (ringbearer._logging.fields).
    assert [vars(r)["fields"]["reason"] for r in logged] == reasons
    assert all(r.levelno == logging.WARNING for r in logged)


async def refuse_each_way(path: Path, closed_path: Path) -> list[str]:
    """Draw each refusal from the servers; return the error codes the replies carried."""
    codes = []
    async with await trio.open_unix_socket(str(path)) as holder:
        await holder.send_all(line("pause", name="alpha"))
        codes.append((await read_reply(holder))["error"]["code"])
        await holder.send_all(line("status"))
        assert (await read_reply(holder))["ok"] is True  # a reader still reads
        async with await trio.open_unix_socket(str(path)) as second:
            codes.append((await read_reply(second))["error"]["code"])
            await assert_closed(second)
    await trio.testing.wait_all_tasks_blocked()  # the server has seen the holder go
    async with await trio.open_unix_socket(str(path)) as long:
        await long.send_all(b"{" + b" " * 2000)
        codes.append((await read_reply(long))["error"]["code"])
        await assert_closed(long)
    async with await trio.open_unix_socket(str(path)) as quiet:
        codes.append((await read_reply(quiet))["error"]["code"])
        await assert_closed(quiet)
    async with await trio.open_unix_socket(str(closed_path)) as outsider:
        await outsider.send_all(line("status"))
        codes.append((await read_reply(outsider))["error"]["code"])
    return codes
