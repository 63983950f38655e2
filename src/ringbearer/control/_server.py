"""The control server: a Unix stream socket speaking JSON lines.

No input can kill the daemon: a malformed line gets an error reply and the
connection stays up; a line over the size cap gets an error and the
connection is closed (there is no telling where the next request starts);
a handler's unexpected exception becomes an ``internal`` error reply.

Each connection is identified by its peer credentials and given a role
(see ``_access``): a peer with none is refused at once, a request beyond the
role gets a ``forbidden`` reply; both are reported to ``Guard.refused``.
"""

from __future__ import annotations

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

from .._errors import RequestError, RingbearerError
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


@attrs.frozen
class Guard:
    """Who may connect and do what; ``refused(peer, command)`` hears of every refusal."""

    policy: AccessPolicy = attrs.Factory(AccessPolicy)
    group: str = ""  # the socket's group, by name or number; "" keeps the daemon's own
    refused: Callable[[Peer, str | None], None] = lambda peer, command: None


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


async def _connection(
    stream: trio.SocketStream,
    handle: Handle,
    limits: ServerLimits,
    slots: trio.Semaphore,
    guard: Guard,
) -> None:
    async with stream:
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            await _send(stream, _protocol.error(None, "busy", "too many control connections"))
            return
        try:
            peer = Peer.of(stream.socket)  # type: ignore[arg-type]
            role = guard.policy.role(peer)
            if role is None:
                guard.refused(peer, None)
                message = f"{peer.describe()} may not use this socket"
                await _send(stream, _protocol.error(None, "forbidden", message))
                await _drain(stream)  # let the client's request in, so it reads the refusal
                return
            await _serve_lines(stream, _Checked(handle, peer, role, guard), limits)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            slots.release()


@attrs.frozen
class _Checked:
    """The handler, behind the connection's role."""

    handle: Handle
    peer: Peer
    role: Role
    guard: Guard

    async def __call__(self, request: Request) -> Any:
        if needed(request) > self.role:
            command = _protocol.command_name(request)
            self.guard.refused(self.peer, command)
            raise RequestError(
                "forbidden",
                f"{command!r} needs the {needed(request).name.lower()} role; "
                f"{self.peer.describe()} has {self.role.name.lower()}",
            )
        return await self.handle(request)


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
