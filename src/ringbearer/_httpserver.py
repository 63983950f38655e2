"""A small, fast HTTP/1.1 server on trio: the provider simulator's and /metrics' front door.

It parses requests by hand (request line, headers, a ``Content-Length`` body)
instead of going through h11, because h11's per-request cost is larger than
the simulator's whole provider logic and the simulator must outrun the daemon
several times over. What it supports, and nothing more:

* keep-alive by default on HTTP/1.1 (``Connection: close`` honoured; HTTP/1.0
  only with ``Connection: keep-alive``), pipelined requests served in order;
* ``Expect: 100-continue``;
* limits: a head over 64 KiB gets 431, a body over 8 MiB gets 413, a chunked
  body gets 411 (no chunked decoding), anything unparseable gets 400 — each
  followed by closing the connection;
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

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024

_RECEIVE_BYTES = 64 * 1024
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


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on host:port forever; ``started`` gets the bound port (port 0 = any)."""
    serve = functools.partial(_serve_connection, handler)
    await serve_tcp(serve, host, port, task_status=task_status)


async def serve_tcp(
    serve: Callable[[trio.SocketStream], Awaitable[None]],
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``serve`` for each connection to host:port forever; ``started`` gets the bound port."""
    listeners, bound = await _open_listeners(host, port)
    task_status.started(bound)
    await trio.serve_listeners(serve, listeners)


async def _open_listeners(host: str, port: int) -> tuple[list[trio.SocketListener], int]:
    """TCP listeners on host:port, and the port they are bound to."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0:
        # Each address family would get its own ephemeral port; a caller can
        # only be told one, so serve on the first address alone.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound: int = listeners[0].socket.getsockname()[1]
    return listeners, bound


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


async def _serve_connection(handler: Handler, stream: trio.SocketStream) -> None:
    # The connection runs on the bare socket: trio's stream adds a scheduler
    # round trip to every receive and send, measured at a sixth of the
    # server's CPU per request.
    sock = socket.socket(fileno=stream.socket.detach())
    sock.setblocking(False)  # the fd already is; make the socket object agree
    wire = _Wire(sock)
    try:
        await _Connection(wire, handler).serve()
    except OSError:
        pass  # the client went away; there is no one left to answer
    except Exception:
        # One connection's bug must not take the listener and its siblings down.
        logger.exception("HTTP connection failed")
    finally:
        wire.close()


@attrs.define
class _Wire:
    """A non-blocking socket driven straight by trio's I/O waits."""

    sock: socket.socket

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


@attrs.define
class _Connection:
    wire: _Wire
    handler: Handler
    buffer: bytearray = attrs.Factory(bytearray)

    async def serve(self) -> None:
        try:
            while await self._serve_one():
                if self.buffer:
                    # Pipelined requests never make the socket wait; yield
                    # anyway so one busy client cannot starve the others.
                    await trio.lowlevel.checkpoint()
        except _Refusal as refusal:
            await self._refuse(refusal)

    async def _serve_one(self) -> bool:
        """Serve the next request; False when the connection should end."""
        head = await self._read_head()
        if head is None:
            return False
        method, target, http10, headers = _parse_head(head)
        length = _body_length(headers)
        expect = headers.get("expect", "").lower() == "100-continue"
        body = await self._read_body(length, expect)
        request = _make_request(method, target, headers, body)
        keep_alive = _keep_alive(http10, headers)
        response = await _call(self.handler, request)
        return await self._send(response, keep_alive, method == "HEAD")

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
            if not await self._receive():
                if self.buffer.strip():
                    raise _Refusal(400, "incomplete request head")
                return None

    async def _read_body(self, length: int, expect_continue: bool) -> bytes:
        if expect_continue and len(self.buffer) < length:
            await self.wire.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(self.buffer) < length:
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
        with trio.move_on_after(_LINGER_SECONDS):
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


def _body_length(headers: dict[str, str]) -> int:
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
    if int(value) > MAX_BODY_BYTES:
        raise _Refusal(413, "request body too large")
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
