"""The control server: a Unix stream socket speaking JSON lines.

No input can kill the daemon: a malformed line gets an error reply and the
connection stays up; a line over the size cap gets an error and the
connection is closed (there is no telling where the next request starts);
a handler's unexpected exception becomes an ``internal`` error reply.

Each connection is identified by its peer credentials and given a role
(see ``_access``): a peer with none is refused at once, a request beyond the
role gets a ``forbidden`` reply.

Connections are bounded: past ``max_connections`` a new one gets ``busy``; a
connection that sends nothing for ``idle_seconds`` gets ``idle``; a reply the
peer does not take within ``idle_seconds`` closes the connection (a peer that
writes requests and never reads would otherwise hold its slot for ever).
Every refusal is reported to ``Guard.refused`` as a :class:`Refusal`, and
gets an error reply wherever the connection can still carry one.
"""

from __future__ import annotations

import enum
import errno
import grp
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import ErrorCode, RequestError, RingbearerError
from . import _protocol
from ._access import AccessPolicy, Peer, Role, needed
from ._protocol import MAX_LINE, Request

log = logging.getLogger("ringbearer.control")
Handle = Callable[[Request], Awaitable[Any]]


@attrs.frozen
class ServerLimits:
    max_connections: int = 64
    idle_seconds: float = 300.0
    max_line: int = MAX_LINE


class RefusalReason(enum.Enum):
    """Why a connection or request was turned away; also its error reply's code."""

    FORBIDDEN = "forbidden"  # the peer's credentials give no role, or not this one
    BUSY = "busy"  # max_connections already open
    LINE_TOO_LONG = "line_too_long"
    IDLE = "idle"  # nothing sent for idle_seconds
    STALLED = "stalled"  # a reply not taken for idle_seconds: no reply can reach it


@attrs.frozen
class Refusal:
    """One refused connection or request, for the log and the audit trail."""

    reason: RefusalReason
    peer: Peer
    message: str
    command: str | None = None  # the request refused; None: the connection

    @property
    def what(self) -> str:
        return self.command or "connection"


@attrs.frozen
class Guard:
    """Who may connect and do what; ``refused`` hears of every refusal."""

    policy: AccessPolicy = attrs.Factory(AccessPolicy)
    group: str = ""  # the socket's group, by name or number; "" keeps the daemon's own
    refused: Callable[[Refusal], None] = lambda refusal: None


class _Stalled(Exception):
    """The peer did not take a reply within the idle limit (never leaves this module)."""


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise RingbearerError(f"no group named {group!r} for the control socket") from None


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
    guard: Guard = Guard(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` (mode 0660, ``guard.group``) and answer requests until cancelled."""
    gid = _gid(guard.group) if guard.group else None  # an unknown group: stop before binding
    path.parent.mkdir(parents=True, exist_ok=True)
    _claim_path(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await _bind(sock, path, gid)
    except BaseException:
        sock.close()
        raise
    sock.listen(128)
    listener = trio.SocketListener(sock)
    slots = trio.Semaphore(limits.max_connections)
    try:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(_connection, stream, handle, limits, slots, guard)
    finally:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink at shutdown, never blocks long


async def _bind(sock: trio.socket.SocketType, path: Path, gid: int | None) -> None:
    old_umask = os.umask(0o117)  # no window in which the socket is wider than 0660
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    if gid is None:
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError as exc:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - start-up, before any client
        raise RingbearerError(
            f"cannot give the control socket to group {gid}: {exc.strerror} "
            "(the daemon's user must be a member of it)"
        ) from exc


@attrs.frozen
class _Conn:
    """One connection: its stream, who is at the other end, and the limits it lives under."""

    stream: trio.SocketStream
    peer: Peer
    limits: ServerLimits
    guard: Guard

    async def send(self, data: bytes) -> None:
        """Send within the idle limit; a peer that does not read loses the connection."""
        with trio.move_on_after(self.limits.idle_seconds) as late:
            await self.stream.send_all(data)
        if late.cancelled_caught:
            raise _Stalled

    def report(self, reason: RefusalReason, message: str, command: str | None = None) -> None:
        self.guard.refused(Refusal(reason, self.peer, message, command))

    async def refuse(self, reason: RefusalReason, message: str, *, drain: bool) -> None:
        """Report, answer with the error, then (``drain``) let the client's input in."""
        self.report(reason, message)
        await self.send(_protocol.error(None, reason.value, message))
        if drain:
            await _drain(self.stream)


async def _connection(
    stream: trio.SocketStream,
    handle: Handle,
    limits: ServerLimits,
    slots: trio.Semaphore,
    guard: Guard,
) -> None:
    async with stream:
        conn = _Conn(stream, Peer.of(stream.socket), limits, guard)  # type: ignore[arg-type]
        try:
            await _admit(conn, handle, slots)
        except _Stalled:
            seconds = f"{limits.idle_seconds:g}"
            conn.report(RefusalReason.STALLED, f"a reply was not read within {seconds} s")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away


async def _admit(conn: _Conn, handle: Handle, slots: trio.Semaphore) -> None:
    """Take a slot and serve, or refuse: too many connections, or no role."""
    try:
        slots.acquire_nowait()
    except trio.WouldBlock:
        await conn.refuse(RefusalReason.BUSY, "too many control connections", drain=False)
        return
    try:
        role = conn.guard.policy.role(conn.peer)
        if role is None:
            message = f"{conn.peer.describe()} may not use this socket"
            # Drained: let the client's request in, so it reads the refusal.
            await conn.refuse(RefusalReason.FORBIDDEN, message, drain=True)
            return
        await _serve_lines(conn, _Checked(handle, conn, role))
    finally:
        slots.release()


@attrs.frozen
class _Checked:
    """The handler, behind the connection's role."""

    handle: Handle
    conn: _Conn
    role: Role

    async def __call__(self, request: Request) -> Any:
        if needed(request) > self.role:
            command = _protocol.command_name(request)
            message = (
                f"{command!r} needs the {needed(request).name.lower()} role; "
                f"{self.conn.peer.describe()} has {self.role.name.lower()}"
            )
            self.conn.report(RefusalReason.FORBIDDEN, message, command)
            raise RequestError(ErrorCode.FORBIDDEN, message)
        return await self.handle(request)


async def _serve_lines(conn: _Conn, handle: Handle) -> None:
    converter = _protocol.converter()
    limits = conn.limits
    buffer = bytearray()
    while True:
        newline = buffer.find(b"\n")
        if newline < 0:
            if len(buffer) > limits.max_line:
                message = f"a request line is limited to {limits.max_line} bytes"
                await conn.refuse(RefusalReason.LINE_TOO_LONG, message, drain=True)
                return
            with trio.move_on_after(limits.idle_seconds) as idle:
                chunk = await conn.stream.receive_some(65536)
            if idle.cancelled_caught:
                message = f"closed after {limits.idle_seconds:g} s with no request"
                await conn.refuse(RefusalReason.IDLE, message, drain=False)
                return
            if not chunk:
                return
            buffer += chunk
            continue
        line = bytes(buffer[:newline])
        del buffer[: newline + 1]
        if line.strip():
            await conn.send(await _answer(line, handle, converter))


async def _answer(line: bytes, handle: Handle, converter: Any) -> bytes:
    request_id = None
    try:
        envelope = _protocol.parse(line, converter)
        request_id = envelope.id
        return _protocol.ok(request_id, converter.unstructure(await handle(envelope.request)))
    except _protocol.IdentifiedError as exc:
        return _protocol.error(exc.request_id, exc.code, exc.message)
    except RequestError as exc:
        return _protocol.error(request_id, exc.code, exc.message)
    except RingbearerError as exc:
        return _protocol.error(request_id, ErrorCode.STORE_UNAVAILABLE, str(exc))
    except Exception:
        log.exception("control request failed")
        return _protocol.error(
            request_id, ErrorCode.INTERNAL, "internal error; see the daemon's log"
        )


async def _drain(stream: trio.SocketStream) -> None:
    """Read and drop what the client is still sending, briefly, before closing.

    Closing with unread input makes the kernel reset the connection, which
    can destroy the error reply we just sent.
    """
    await stream.send_eof()
    with trio.move_on_after(1.0):
        while await stream.receive_some(65536):
            pass
