"""Plain ASGI, as much as the listener needs: a request read whole, a response sent whole.

No framework: the listener has a handful of routes, each reading one small
body, so a request is a frozen record with its body in bytes, and a response
is one ``http.response.start`` and one ``http.response.body``. Reading a body
stops at the listener's limit, so an oversized one is never held in memory.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeAlias

import attrs

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
# Pages are static: no script, no outside resources, not cached, not indexed.
_PAGE_HEADERS = (
    ("cache-control", "no-store"),
    ("content-security-policy", "default-src 'none'; form-action 'self'"),
    ("referrer-policy", "no-referrer"),
    ("x-robots-tag", "noindex"),
)


class Disconnected(Exception):
    """The client went away before its request was whole: nothing to answer."""


@attrs.frozen
class Request:
    """One request, with its body read (or empty until it is)."""

    method: str
    path: str  # decoded, for routing
    raw_path: str  # as sent (percent-encoded), for rebuilding the URL a provider signed
    query: str
    headers: Mapping[str, str]  # lower-case names; repeated ones joined with ", "
    peer: str  # the connection's remote address
    body: bytes = b""

    @classmethod
    def of(cls, scope: Scope) -> Request:
        """The head of a request from its ASGI ``http`` scope."""
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        client = scope.get("client")
        raw = scope.get("raw_path") or scope["path"].encode()
        return cls(
            method=scope["method"],
            path=scope["path"],
            raw_path=raw.decode("latin-1"),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            peer=str(client[0]) if client else "unknown",
        )

    def declared_length(self) -> int | None:
        """The ``Content-Length`` the client declared, if it is a number."""
        text = self.headers.get("content-length", "")
        return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


@attrs.frozen
class Response:
    """A whole response: status, body and its type, and any more headers."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str, *headers: tuple[str, str]) -> Response:
        return cls(status, f"{text}\n".encode(), TEXT, headers)

    @classmethod
    def page(cls, status: int, title: str, body_html: str) -> Response:
        """A small HTML page; ``body_html`` is already escaped by the caller."""
        document = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width">'
            f"<title>{html.escape(title)}</title></head>\n<body>{body_html}</body></html>\n"
        )
        return cls(status, document.encode(), HTML, _PAGE_HEADERS)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, response: Response) -> None:
    """Send ``response`` whole, with its length."""
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
    ]
    headers += [(name.encode(), value.encode("latin-1")) for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
