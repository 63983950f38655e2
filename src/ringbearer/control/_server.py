"""The control server: a Unix stream socket speaking JSON lines.

No input can kill the daemon: a malformed line gets an error reply and the
connection stays up; a line over the size cap gets an error and the
connection is closed (there is no telling where the next request starts);
a handler's unexpected exception becomes an ``internal`` error reply.

Each connection is identified by its peer credentials and given a role
(see ``_access``): a peer with none is refused at once, a request beyond the
role gets a ``forbidden`` reply.

Connections are bounded, and the role is decided at accept: every role
shares ``max_connections`` slots, and ``operator_slots`` more are kept for
operators (and the daemon's own user), so peers that hold every shared slot
still leave the operator able to ``status``, pause or reload. A connection
that finds no slot gets ``busy`` and is closed at once, without a task of its
own. A connection that sends nothing for ``idle_seconds`` gets ``idle``; a
reply the peer does not take within ``idle_seconds`` closes the connection (a
peer that writes requests and never reads would otherwise hold its slot for
ever). A line longer than ``max_line`` bytes (its newline not counted) gets
``line_too_long``, as soon as its length is known. Every refusal is reported
to ``Guard.refused`` as a :class:`Refusal` (the daemon's journal counts them
per interval), and gets an error reply wherever the connection can still
carry one. Accepts that fail for want of descriptors back off and retry.
"""

from __future__ import annotations

import contextlib
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

from .._accept import accept_failures, accept_forever
from .._errors import ErrorCode, RequestError, RingbearerError
from . import _protocol
from ._access import AccessPolicy, Peer, Role, needed
from ._protocol import MAX_LINE, Request

log = logging.getLogger("ringbearer.control")
Handle = Callable[[Request], Awaitable[Any]]


@attrs.frozen
class ServerLimits:
    max_connections: int = 64  # shared by every role
    idle_seconds: float = 300.0
    max_line: int = MAX_LINE  # bytes of one request line, its newline not counted
    operator_slots: int = 0  # connections beyond max_connections, for operators only


class RefusalReason(enum.Enum):
    """Why a connection or request was turned away; also its error reply's code."""

    FORBIDDEN = "forbidden"  # the peer's credentials give no role, or not this one
    BUSY = "busy"  # every slot the peer's role may take is in use
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
    failing = accept_failures(log, f"control {path}")
    try:
        async with listener, trio.open_nursery() as nursery:
            admission = _Admission(handle, limits, guard, nursery, _Slots.of(limits))
            task_status.started()
            await accept_forever(listener, admission.admit, failing)
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


class _Pool(enum.Enum):
    SHARED = "shared"
    RESERVED = "reserved"


@attrs.define
class _Slots:
    """Connections open: ``shared`` ones for every role, ``reserved`` more for operators."""

    shared: int
    reserved: int
    used: dict[_Pool, int] = attrs.Factory(lambda: dict.fromkeys(_Pool, 0))

    @classmethod
    def of(cls, limits: ServerLimits) -> _Slots:
        return cls(limits.max_connections, limits.operator_slots)

    def take(self, role: Role | None) -> _Pool | None:
        """A slot for a peer of ``role`` (None: no role), or None when all it may take are used."""
        if self.used[_Pool.SHARED] < self.shared:
            pool = _Pool.SHARED
        elif role is Role.OPERATE and self.used[_Pool.RESERVED] < self.reserved:
            pool = _Pool.RESERVED
        else:
            return None
        self.used[pool] += 1
        return pool

    def give_back(self, pool: _Pool) -> None:
        self.used[pool] -= 1

    def describe_full(self, role: Role | None) -> str:
        if role is Role.OPERATE or not self.reserved:
            return f"too many control connections: all {self.shared + self.reserved} in use"
        return (
            f"too many control connections: {self.shared} in use "
            f"({self.reserved} more are kept for operators)"
        )


@attrs.frozen
class _Admission:
    """Decides at accept, from the peer's credentials, whether a connection gets a slot."""

    handle: Handle
    limits: ServerLimits
    guard: Guard
    nursery: trio.Nursery
    slots: _Slots

    def admit(self, stream: trio.SocketStream) -> None:
        try:
            peer = Peer.of(stream.socket)  # type: ignore[arg-type]
        except OSError:
            _close_at_once(stream, b"")  # gone before it could be asked who it is
            return
        role = self.guard.policy.role(peer)
        pool = self.slots.take(role)
        if pool is None:
            message = self.slots.describe_full(role)
            self.guard.refused(Refusal(RefusalReason.BUSY, peer, message))
            _close_at_once(stream, _protocol.error(None, RefusalReason.BUSY.value, message))
            return
        conn = _Conn(stream, peer, self.limits, self.guard)
        self.nursery.start_soon(self._serve, conn, role, pool)

    async def _serve(self, conn: _Conn, role: Role | None, pool: _Pool) -> None:
        try:
            await _connection(conn, self.handle, role)
        finally:
            # The slot is free before the peer sees the close: a client that connects
            # again at once must find it free.
            self.slots.give_back(pool)
            await trio.aclose_forcefully(conn.stream)


def _close_at_once(stream: trio.SocketStream, reply: bytes) -> None:
    """Send ``reply`` if the socket takes it now, then close: no task, no wait."""
    sock = socket.socket(fileno=stream.socket.detach())
    sock.setblocking(False)
    if reply:
        with contextlib.suppress(OSError):
            sock.send(reply)
    sock.close()


async def _connection(conn: _Conn, handle: Handle, role: Role | None) -> None:
    try:
        if role is None:
            message = f"{conn.peer.describe()} may not use this socket"
            # Drained: let the client's request in, so it reads the refusal.
            await conn.refuse(RefusalReason.FORBIDDEN, message, drain=True)
            return
        await _serve_lines(conn, _Checked(handle, conn, role))
    except _Stalled:
        seconds = f"{conn.limits.idle_seconds:g}"
        conn.report(RefusalReason.STALLED, f"a reply was not read within {seconds} s")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away


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
    lines = _Lines(conn)
    while (line := await lines.next()) is not None:
        if line.strip():
            await conn.send(await _answer(line, handle, converter))


@attrs.define
class _Lines:
    """Request lines off a connection, each at most ``max_line`` bytes before its newline."""

    conn: _Conn
    buffer: bytearray = attrs.Factory(bytearray)
    scanned: int = 0  # bytes of the buffer known to hold no newline

    async def next(self) -> bytes | None:
        """The next line; None once the peer has gone or has been refused."""
        limit = self.conn.limits.max_line
        while True:
            newline = self.buffer.find(b"\n", self.scanned)
            if newline < 0:
                self.scanned = len(self.buffer)
            # Checked on what has arrived, not before each read: exactly
            # max_line bytes are served, one more is refused.
            if newline > limit or (newline < 0 and self.scanned > limit):
                message = f"a request line is limited to {limit} bytes"
                await self.conn.refuse(RefusalReason.LINE_TOO_LONG, message, drain=True)
                return None
            if newline >= 0:
                line = bytes(self.buffer[:newline])
                del self.buffer[: newline + 1]
                self.scanned = 0
                return line
            if not await self._fill():
                return None

    async def _fill(self) -> bool:
        """Read more; False when the peer closed or stayed silent for ``idle_seconds``."""
        seconds = self.conn.limits.idle_seconds
        with trio.move_on_after(seconds) as idle:
            chunk = await self.conn.stream.receive_some(65536)
        if idle.cancelled_caught:
            message = f"closed after {seconds:g} s with no request"
            await self.conn.refuse(RefusalReason.IDLE, message, drain=False)
            return False
        self.buffer += chunk
        return bool(chunk)


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
