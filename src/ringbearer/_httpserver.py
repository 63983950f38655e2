"""A small, fast HTTP/1.1 server on trio: the provider simulator's and /metrics' front door.

It parses requests by hand (request line, headers, a ``Content-Length`` body)
instead of going through h11, because h11's per-request cost is larger than
the simulator's whole provider logic and the simulator must outrun the daemon
several times over. What it supports, and nothing more:

* keep-alive by default on HTTP/1.1 (``Connection: close`` honoured; HTTP/1.0
  only with ``Connection: keep-alive``), pipelined requests served in order;
* ``Expect: 100-continue``;
* limits (:class:`HttpLimits`, one set a listener): past ``max_connections``
  a new connection gets 503 and is closed at once; a head over 64 KiB gets
  431, a body over ``max_body_bytes`` 413 before it is read, a chunked body
  411 (no chunked decoding), anything unparseable 400, a head or body that
  does not arrive in time 408 — each followed by closing the connection; an
  idle kept-alive connection is closed; the bodies being read share one
  budget of bytes, and a body that does not fit waits for room;
* accepts that fail for want of descriptors back off and retry (``_accept``);
* a handler's exception becomes a logged 500, never a crashed server;
* deliberate misbehaviour for fault injection (:class:`Action`): reset the
  connection, hang, or cut the body short.
"""

from __future__ import annotations

import base64
import contextlib
import email.message
import email.utils
import enum
import functools
import json
import logging
import re
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import trio

from ._accept import Episode, accept_failures, accept_forever, open_listeners

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024  # the largest body GENEROUS_LIMITS take
_MIB = 1024 * 1024

_RECEIVE_BYTES = 64 * 1024
# How often a listener looks for connections past their deadline. A cancel
# scope's deadline per phase would be exact, but setting one twice a request
# costs the simulator a tenth of its CPU; a sweep costs nothing per request.
_SWEEP_SECONDS = 0.5
# After refusing a request, keep reading for a moment before closing: closing
# a socket with unread input sends a RST, which can destroy the refusal before
# the client reads it.
_LINGER_SECONDS = 1.0
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) (\S+) HTTP/(\d)\.(\d)")
_HEADER_BLOCK = re.compile(rf"(?:\r\n{_TOKEN}:[^\r\n\x00]*)*")
_HEADER_FIELD = re.compile(rf"\r\n({_TOKEN}):([^\r\n]*)")
# One encoder for every response: json.dumps builds a new one per call when
# given separators.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}

logger = logging.getLogger(__name__)


@attrs.frozen
class HttpRequest:
    """One parsed request; header names are lower-cased, repeated ones joined with ", "."""

    method: str
    target: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON (UTF-8); ValueError when it is not."""
        return json.loads(self.body.decode())

    def form(self) -> dict[str, list[str]]:
        """The body as form fields (urlencoded or multipart); ValueError when it is neither."""
        content_type = self.headers.get("content-type", "application/x-www-form-urlencoded")
        media = content_type.partition(";")[0].strip().lower()
        if media == "application/x-www-form-urlencoded":
            return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        if media == "multipart/form-data":
            return _parse_multipart(self.body, content_type)
        raise ValueError(f"not a form body: {media}")

    def query_params(self) -> dict[str, list[str]]:
        """The query string's parameters."""
        return parse_qs(self.query, keep_blank_values=True)

    def basic_auth(self) -> tuple[str, str] | None:
        """The user and password of a Basic ``Authorization``; None for any other or none."""
        scheme, _, encoded = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError both are
            return None
        user, _, password = decoded.partition(":")
        return user, password


class Action(enum.Enum):
    """What the server does with a response: answer it, or misbehave on purpose."""

    RESPOND = "respond"
    RESET = "reset"  # abort with a TCP RST, nothing sent
    HANG = "hang"  # never answer; wait until the client gives up
    TRUNCATE = "truncate"  # announce the full body, send half of it, close


@attrs.frozen
class HttpResponse:
    """A response; ``status`` is ignored by the actions that send no status line."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    action: Action = Action.RESPOND

    @classmethod
    def json(
        cls, status: int, obj: object, headers: tuple[tuple[str, str], ...] = ()
    ) -> HttpResponse:
        """A JSON response."""
        body = _JSON_ENCODER.encode(obj).encode()
        return cls(status, body, (("content-type", "application/json"), *headers))

    @classmethod
    def text(
        cls, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> HttpResponse:
        """A plain-text response."""
        content_type = ("content-type", "text/plain; charset=utf-8")
        return cls(status, text.encode(), (content_type, *headers))


Handler: TypeAlias = Callable[[HttpRequest], Awaitable[HttpResponse]]

_positive = attrs.validators.gt(0)
_positive_seconds = attrs.validators.gt(0.0)


@attrs.frozen
class HttpLimits:
    """What one listener allows; the defaults suit a small listener: /metrics, a webhook.

    A request's head must arrive within ``header_seconds`` (counted from its
    first byte, or from the connection's start for the first request), its
    body within ``body_seconds``, and a response be taken within
    ``body_seconds``; a kept-alive connection quiet for ``idle_seconds`` is
    closed. The bodies being read hold at most ``max_buffered_bytes`` (never
    less than ``max_body_bytes``) between them; a body that finds no room
    waits for it, and gets 503 after ``body_seconds``.
    """

    max_connections: int = attrs.field(default=64, validator=_positive)
    header_seconds: float = attrs.field(default=10.0, validator=_positive_seconds)
    body_seconds: float = attrs.field(default=30.0, validator=_positive_seconds)
    idle_seconds: float = attrs.field(default=30.0, validator=_positive_seconds)
    max_body_bytes: int = attrs.field(default=_MIB, validator=_positive)
    max_buffered_bytes: int = attrs.field(default=16 * _MIB, validator=_positive)

    @property
    def budget_bytes(self) -> int:
        """The bytes of bodies held at once: room for at least one of the largest."""
        return max(self.max_buffered_bytes, self.max_body_bytes)


# For a server whose clients are trusted and many (the provider simulator,
# tests): a daemon runs dozens of lanes against it, and batch APIs send
# bodies of several MiB. Bounded all the same.
GENEROUS_LIMITS = HttpLimits(
    max_connections=4096,
    header_seconds=60.0,
    body_seconds=60.0,
    idle_seconds=300.0,
    max_body_bytes=MAX_BODY_BYTES,
    max_buffered_bytes=256 * _MIB,
)


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    limits: HttpLimits = GENEROUS_LIMITS,
    name: str = "http",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on host:port forever; ``started`` gets the bound port (port 0 = any).

    ``name`` says which listener a log line is about.
    """
    listeners, bound = await open_listeners(host, port)
    where = f"{name} {host}:{bound}"
    async with trio.open_nursery() as nursery:
        served = _Listener(handler, limits, nursery, _refusals(where), _Budget(limits.budget_bytes))
        nursery.start_soon(served.sweep)
        for listener in listeners:
            nursery.start_soon(_accepting, listener, served.admit, where, (served.refusing,))
        task_status.started(bound)


async def serve_tcp(
    serve: Callable[[trio.SocketStream], Awaitable[None]],
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``serve`` for each connection to host:port forever; ``started`` gets the bound port."""
    listeners, bound = await open_listeners(host, port)
    async with trio.open_nursery() as nursery:

        def admit(stream: trio.SocketStream) -> None:
            nursery.start_soon(_run_closing, serve, stream)

        for listener in listeners:
            nursery.start_soon(_accepting, listener, admit, f"tcp {host}:{bound}", ())
        task_status.started(bound)


async def _run_closing(
    serve: Callable[[trio.SocketStream], Awaitable[None]], stream: trio.SocketStream
) -> None:
    try:
        await serve(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def _accepting(
    listener: trio.SocketListener,
    admit: Callable[[trio.SocketStream], None],
    where: str,
    watched: tuple[Episode, ...],
) -> None:
    async with listener:
        await accept_forever(listener, admit, accept_failures(logger, where), watched=watched)


def _refusals(where: str) -> Episode:
    return Episode(
        logger,
        "connection limit reached: refusing new connections with 503",
        "connection limit: refused connections",
        where,
    )


@attrs.define(eq=False)
class _Budget:
    """Bytes of request bodies held at once across a listener's connections."""

    limit: int
    held: int = 0
    _lot: trio.lowlevel.ParkingLot = attrs.field(init=False, factory=trio.lowlevel.ParkingLot)

    async def take(self, size: int) -> None:
        """Wait for room for ``size`` bytes (never more than ``limit``), then hold them."""
        while self.held + size > self.limit:
            await self._lot.park()
        self.held += size

    def give_back(self, size: int) -> None:
        if size:
            self.held -= size
            self._lot.unpark_all()


@attrs.define(eq=False)
class _Listener:
    """One listener's connections: counted against its limit, sharing one body budget."""

    handler: Handler
    limits: HttpLimits
    nursery: trio.Nursery
    refusing: Episode
    budget: _Budget
    active: int = 0
    connections: set[_Connection] = attrs.Factory(set)

    def admit(self, stream: trio.SocketStream) -> None:
        """Serve the connection, or (at the limit) answer 503 and close it at once."""
        if self.active >= self.limits.max_connections:
            self.refusing.happened(trio.current_time(), limit=self.limits.max_connections)
            _refuse_at_once(stream)
            return
        self.active += 1
        self.nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        try:
            await _serve_connection(self, stream)
        finally:
            self.active -= 1

    async def sweep(self) -> None:
        """Every _SWEEP_SECONDS, cancel the connections whose phase has outlived its time."""
        while True:
            await trio.sleep(_SWEEP_SECONDS)
            now = trio.current_time()
            for connection in self.connections:  # cancelling leaves the set as it is
                connection.expire(now)


def _refuse_at_once(stream: trio.SocketStream) -> None:
    """A 503 if the socket takes it now, then close: never a task or a wait per refusal."""
    sock = socket.socket(fileno=stream.socket.detach())
    sock.setblocking(False)
    busy = HttpResponse.text(503, "too many connections; try again\n", (("retry-after", "1"),))
    with contextlib.suppress(OSError):
        sock.send(_render(busy, keep_alive=False, head_only=False))
    sock.close()


def reset_connection(sock: socket.socket | trio.socket.SocketType) -> None:
    """Abort a connection with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        # SO_LINGER on with a zero timeout makes close() discard the connection.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Refusal(Exception):
    """The request cannot be served: answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _serve_connection(listener: _Listener, stream: trio.SocketStream) -> None:
    # The connection runs on the bare socket: trio's stream adds a scheduler
    # round trip to every receive and send, measured at a sixth of the
    # server's CPU per request.
    sock = socket.socket(fileno=stream.socket.detach())
    sock.setblocking(False)  # the fd already is; make the socket object agree
    wire = _Wire(sock)
    connection = _Connection(wire, listener.handler, listener.limits, listener.budget)
    listener.connections.add(connection)
    try:
        with connection.scope:
            await connection.serve()
        if connection.scope.cancelled_caught:
            await connection.timed_out()
    except OSError:
        pass  # the client went away; there is no one left to answer
    except Exception:
        # One connection's bug must not take the listener and its siblings down.
        logger.exception("HTTP connection failed")
    finally:
        listener.connections.discard(connection)
        wire.close()


@attrs.define
class _Wire:
    """A non-blocking socket driven straight by trio's I/O waits."""

    sock: socket.socket
    # Called when a send must wait for the client: the connection arms its deadline.
    blocked: Callable[[], None] = lambda: None

    async def receive(self) -> bytes:
        # Wait first: between requests the socket is almost always empty, and
        # a failed recv costs a syscall and an exception.
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            try:
                return self.sock.recv(_RECEIVE_BYTES)
            except BlockingIOError:
                pass

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                self.blocked()
                await trio.lowlevel.wait_writable(self.sock)

    async def drain(self) -> None:
        """Read and discard until the client closes."""
        while await self.receive():
            pass

    def reset(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        reset_connection(self.sock)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


class _Phase(enum.Enum):
    """What a connection waits for, which decides its deadline and what its expiry means."""

    HANDLING = "handling"  # the handler has the request: no deadline of ours
    HEAD = "head"  # a request's head: 408 at header_seconds
    IDLE = "idle"  # a kept-alive connection between requests: closed at idle_seconds
    ROOM = "room"  # room in the body budget: 503 at body_seconds
    BODY = "body"  # a request's body: 408 at body_seconds
    SEND = "send"  # the client to take a response: closed at body_seconds
    CLOSING = "closing"  # the client to read a refusal: closed after _LINGER_SECONDS


@attrs.define(eq=False)
class _Connection:
    wire: _Wire
    handler: Handler
    limits: HttpLimits
    budget: _Budget
    buffer: bytearray = attrs.Factory(bytearray)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    # The phase changes only before a wait, and its clock starts then; the
    # listener's sweep cancels the scope once the phase's time is up.
    phase: _Phase = _Phase.HANDLING
    since: float = 0.0
    served: bool = False  # a request was answered: the next wait is idle, not a head's

    def __attrs_post_init__(self) -> None:
        self.wire.blocked = functools.partial(self._arm, _Phase.SEND)

    async def serve(self) -> None:
        try:
            while await self._serve_one():
                self.served = True
                if self.buffer:
                    # Pipelined requests never make the socket wait; yield
                    # anyway so one busy client cannot starve the others.
                    await trio.lowlevel.checkpoint()
        except _Refusal as refusal:
            await self._refuse(refusal)

    async def timed_out(self) -> None:
        """The deadline of the phase passed: say so where HTTP has a status for it."""
        refusal = self._lateness()
        if refusal is not None:
            with trio.move_on_after(_LINGER_SECONDS):  # the connection's own scope is spent
                await self._refuse(refusal)

    def _lateness(self) -> _Refusal | None:
        limits = self.limits
        match self.phase:
            case _Phase.HEAD:
                return _Refusal(
                    408, f"request head not received within {limits.header_seconds:g} s"
                )
            case _Phase.BODY:
                return _Refusal(408, f"request body not received within {limits.body_seconds:g} s")
            case _Phase.ROOM:
                return _Refusal(503, "too many request bodies in flight; try again")
        return None  # idle, or a client that does not read: nothing to tell it

    def _arm(self, phase: _Phase) -> None:
        if phase is not self.phase:
            self.phase = phase
            self.since = trio.current_time()

    def expire(self, now: float) -> None:
        """Cancel the connection if its phase has lasted longer than the phase may."""
        match self.phase:
            case _Phase.HANDLING:
                return
            case _Phase.HEAD:
                seconds = self.limits.header_seconds
            case _Phase.IDLE:
                seconds = self.limits.idle_seconds
            case _Phase.CLOSING:
                seconds = _LINGER_SECONDS
            case _:
                seconds = self.limits.body_seconds
        if now - self.since >= seconds:
            self.scope.cancel()

    async def _serve_one(self) -> bool:
        """Serve the next request; False when the connection should end."""
        head = await self._read_head()
        if head is None:
            return False
        method, target, http10, headers = _parse_head(head)
        length = _body_length(headers, self.limits.max_body_bytes)
        expect = headers.get("expect", "").lower() == "100-continue"
        held = await self._reserve(length)
        try:
            body = await self._read_body(length, expect)
            self._arm(_Phase.HANDLING)
            request = _make_request(method, target, headers, body)
            response = await _call(self.handler, request)
            return await self._send(response, _keep_alive(http10, headers), method == "HEAD")
        finally:
            self.budget.give_back(held)

    async def _read_head(self) -> bytes | None:
        """The next request's head, or None when the client closed between requests."""
        start = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n", start)
            if end >= 0:
                # Stray CRLFs after a previous body are allowed (RFC 9112 §2.2).
                head = bytes(self.buffer[:end]).lstrip(b"\r\n")
                del self.buffer[: end + 4]
                _check_size(head)
                if head:
                    return head
                start = 0
                continue
            _check_size(self.buffer)
            start = max(0, len(self.buffer) - 3)
            begun = not self.served or bool(self.buffer.strip(b"\r\n"))
            self._arm(_Phase.HEAD if begun else _Phase.IDLE)
            if not await self._receive():
                if self.buffer.strip():
                    raise _Refusal(400, "incomplete request head")
                return None

    async def _reserve(self, length: int) -> int:
        """Hold room in the body budget for what is still to be read; a small rest needs none."""
        if length - len(self.buffer) <= _RECEIVE_BYTES:
            return 0
        self._arm(_Phase.ROOM)
        await self.budget.take(length)
        return length

    async def _read_body(self, length: int, expect_continue: bool) -> bytes:
        if expect_continue and len(self.buffer) < length:
            await self.wire.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(self.buffer) < length:
            self._arm(_Phase.BODY)
            if not await self._receive():
                raise _Refusal(400, "incomplete request body")
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    async def _receive(self) -> bool:
        data = await self.wire.receive()
        self.buffer += data
        return bool(data)

    async def _send(self, response: HttpResponse, keep_alive: bool, head_only: bool) -> bool:
        match response.action:
            case Action.RESPOND:
                await self.wire.send_all(_render(response, keep_alive, head_only))
                return keep_alive
            case Action.TRUNCATE:
                data = _render(response, keep_alive=False, head_only=False)
                missing = len(response.body) - len(response.body) // 2
                await self.wire.send_all(data[: len(data) - missing])
            case Action.RESET:
                self.wire.reset()
            case Action.HANG:
                await self.wire.drain()
        return False

    async def _refuse(self, refusal: _Refusal) -> None:
        response = HttpResponse.text(refusal.status, refusal.reason + "\n")
        await self.wire.send_all(_render(response, keep_alive=False, head_only=False))
        self.wire.sock.shutdown(socket.SHUT_WR)
        self._arm(_Phase.CLOSING)
        await self.wire.drain()


def _check_size(head: bytes | bytearray) -> None:
    if len(head) > MAX_HEAD_BYTES:
        raise _Refusal(431, "request header fields too large")


def _parse_head(head: bytes) -> tuple[str, str, bool, dict[str, str]]:
    """Method, target, whether it is HTTP/1.0, and the headers."""
    text = head.decode("latin-1")
    end = text.find("\r\n")
    if end < 0:
        end = len(text)
    match = _REQUEST_LINE.fullmatch(text, 0, end)
    if match is None:
        raise _Refusal(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != "1":
        raise _Refusal(505, "only HTTP/1.x is supported")
    return method, target, minor == "0", _parse_headers(text[end:])


def _parse_headers(block: str) -> dict[str, str]:
    """Header fields from the lines after the request line, each line led by its CRLF."""
    # Validating the whole block with one regex and then splitting it with
    # another costs half of checking each line in Python.
    if _HEADER_BLOCK.fullmatch(block) is None:
        # Also refuses obsolete line folding and bare CRs or LFs: smuggling vectors.
        raise _Refusal(400, "malformed header line")
    headers: dict[str, str] = {}
    for name, value in _HEADER_FIELD.findall(block):
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _body_length(headers: dict[str, str], max_body: int) -> int:
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if "chunked" in coding.lower():
            raise _Refusal(411, "chunked bodies are not supported; send Content-Length")
        raise _Refusal(400, "unsupported transfer-encoding")
    declared = headers.get("content-length")
    if declared is None:
        return 0
    values = {value.strip() for value in declared.split(",")}
    value = values.pop()
    if values or not (value.isascii() and value.isdigit()):
        raise _Refusal(400, "malformed content-length")
    if int(value) > max_body:
        raise _Refusal(413, f"request body too large: at most {max_body} bytes")
    return int(value)


def _keep_alive(http10: bool, headers: dict[str, str]) -> bool:
    connection = headers.get("connection")
    if connection is None:
        return not http10
    tokens = {token.strip().lower() for token in connection.split(",")}
    if "close" in tokens:
        return False
    return not http10 or "keep-alive" in tokens


def _make_request(method: str, target: str, headers: dict[str, str], body: bytes) -> HttpRequest:
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)  # absolute-form, as sent to proxies
        raw_path, query = parts.path or "/", parts.query
    else:
        raw_path, _, query = target.partition("?")
    return HttpRequest(method, target, unquote(raw_path), query, headers, body)


async def _call(handler: Handler, request: HttpRequest) -> HttpResponse:
    try:
        return await handler(request)
    except Exception:
        logger.exception("HTTP handler failed on %s %s", request.method, request.target)
        return HttpResponse.text(500, "internal server error\n")


def _render(response: HttpResponse, keep_alive: bool, head_only: bool) -> bytes:
    try:
        return _render_unchecked(response, keep_alive, head_only)
    except ValueError:
        logger.exception("HTTP handler returned an unrenderable response")
        fallback = HttpResponse.text(500, "internal server error\n")
        return _render_unchecked(fallback, keep_alive, head_only)


def _render_unchecked(response: HttpResponse, keep_alive: bool, head_only: bool) -> bytes:
    status = response.status
    if not 200 <= status <= 599:
        raise ValueError(f"cannot send status {status}")
    lines = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
    has_body = status not in (204, 304)
    if has_body:
        lines.append(f"content-length: {len(response.body)}\r\n")
    if not keep_alive:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    if head.count("\n") != len(lines):
        raise ValueError("a response header contains a line break")
    body = response.body if has_body and not head_only else b""
    return head.encode("latin-1") + body


def _parse_multipart(body: bytes, content_type: str) -> dict[str, list[str]]:
    boundary = _header_param("content-type", content_type, "boundary")
    if not boundary:
        raise ValueError("multipart body without a boundary")
    fields: dict[str, list[str]] = {}
    parts = body.split(b"--" + boundary.encode("latin-1"))
    for part in parts[1:]:
        if part.startswith(b"--"):
            return fields
        name, value = _parse_part(part)
        fields.setdefault(name, []).append(value)
    raise ValueError("multipart body has no closing boundary")


def _parse_part(part: bytes) -> tuple[str, str]:
    """One multipart part's field name and text value."""
    if not part.startswith(b"\r\n") or not part.endswith(b"\r\n"):
        raise ValueError("malformed multipart part")
    head, sep, content = part[2:-2].partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("multipart part without a blank line after its headers")
    try:
        headers = _parse_headers("\r\n" + head.decode("latin-1"))
    except _Refusal as exc:
        raise ValueError(f"multipart part: {exc.reason}") from exc
    name = _header_param("content-disposition", headers.get("content-disposition", ""), "name")
    if not name:
        raise ValueError("multipart part without a field name")
    charset = _header_param("content-type", headers.get("content-type", ""), "charset")
    try:
        return name, content.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return name, content.decode("utf-8", errors="replace")


def _header_param(header: str, value: str, param: str) -> str | None:
    # email.message handles quoting and RFC 2231 parameters correctly.
    message = email.message.Message()
    message[header] = value
    found = message.get_param(param, header=header)
    if found is None:
        return None
    return email.utils.collapse_rfc2231_value(found)
