"""The control server: a Unix stream socket speaking JSON lines.

No input can kill the daemon: a malformed line gets an error reply and the
connection stays up; a line over the size cap gets an error and the
connection is closed (there is no telling where the next request starts);
a handler's unexpected exception becomes an ``internal`` error reply.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import RequestError, RingbearerError
from . import _protocol
from ._protocol import MAX_LINE, Request

log = logging.getLogger("ringbearer.control")
Handle = Callable[[Request], Awaitable[Any]]


@attrs.frozen
class ServerLimits:
    max_connections: int = 64
    idle_seconds: float = 300.0
    max_line: int = MAX_LINE


def _claim_path(path: Path) -> None:
    """Remove a stale socket left by a crash; refuse to steal a live one."""
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise RingbearerError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)
            return
        raise
    finally:
        probe.close()
    raise RingbearerError(f"another daemon is listening on {path}")


async def serve_control(
    path: Path,
    handle: Handle,
    *,
    limits: ServerLimits = ServerLimits(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` (mode 0660) and answer requests until cancelled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _claim_path(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # no window in which the socket is wider than 0660
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    sock.listen(128)
    listener = trio.SocketListener(sock)
    slots = trio.Semaphore(limits.max_connections)
    try:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(_connection, stream, handle, limits, slots)
    finally:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink at shutdown, never blocks long


async def _connection(
    stream: trio.SocketStream, handle: Handle, limits: ServerLimits, slots: trio.Semaphore
) -> None:
    async with stream:
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            await _send(stream, _protocol.error(None, "busy", "too many control connections"))
            return
        try:
            await _serve_lines(stream, handle, limits)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            slots.release()


async def _serve_lines(stream: trio.SocketStream, handle: Handle, limits: ServerLimits) -> None:
    converter = _protocol.converter()
    buffer = bytearray()
    while True:
        newline = buffer.find(b"\n")
        if newline < 0:
            if len(buffer) > limits.max_line:
                await _send(
                    stream,
                    _protocol.error(
                        None,
                        "line_too_long",
                        f"a request line is limited to {limits.max_line} bytes",
                    ),
                )
                await _drain(stream)
                return
            with trio.move_on_after(limits.idle_seconds) as idle:
                chunk = await stream.receive_some(65536)
            if idle.cancelled_caught:
                await _send(stream, _protocol.error(None, "idle", "closed after idle time"))
                return
            if not chunk:
                return
            buffer += chunk
            continue
        line = bytes(buffer[:newline])
        del buffer[: newline + 1]
        if line.strip():
            await _send(stream, await _answer(line, handle, converter))


async def _answer(line: bytes, handle: Handle, converter: Any) -> bytes:
    request_id = None
    try:
        envelope = _protocol.parse(line, converter)
        request_id = envelope.id
        return _protocol.ok(request_id, await handle(envelope.request))
    except _protocol.IdentifiedError as exc:
        return _protocol.error(exc.request_id, exc.code, exc.message)
    except RequestError as exc:
        return _protocol.error(request_id, exc.code, exc.message)
    except RingbearerError as exc:
        return _protocol.error(request_id, "failed", str(exc))
    except Exception:
        log.exception("control request failed")
        return _protocol.error(request_id, "internal", "internal error; see the daemon's log")


async def _send(stream: trio.SocketStream, data: bytes) -> None:
    await stream.send_all(data)


async def _drain(stream: trio.SocketStream) -> None:
    """Read and drop what the client is still sending, briefly, before closing.

    Closing with unread input makes the kernel reset the connection, which
    can destroy the error reply we just sent.
    """
    await stream.send_eof()
    with trio.move_on_after(1.0):
        while await stream.receive_some(65536):
            pass
