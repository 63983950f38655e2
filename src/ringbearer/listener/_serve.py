"""Serve the listener's app with hypercorn's trio worker, at most ``max_connections`` at once.

hypercorn does the HTTP (h11 and h2, keep-alive, its idle and read timeouts);
what it cannot do is bound its connections: it has no setting for that
(pgjones/hypercorn#81, open), and ``hypercorn.trio.serve`` builds its listener
from a plain socket inside, with no seam to wrap it. So this module keeps
hypercorn's own per-connection server (``TCPServer``, what ``serve`` runs for
each connection) and feeds it from an accept loop of ours, which takes a
connection slot *before* it accepts: past the bound, new connections wait in
the kernel's backlog (and are refused by the kernel past that) until a
connection closes, and none costs a task or a descriptor meanwhile. The loop
is the daemon's own (``_accept``): when descriptors run out it backs off
instead of spinning. Cancelling :func:`serve` closes the listener and every
connection: a delivery cut off before its answer is sent again by its
provider, and kept once.

hypercorn's access log stays off: unsubscribe paths carry tokens that name
addresses. Its error log goes to ``ringbearer.webhooks.server``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, LifespanState
from hypercorn.utils import wrap_app

from .._accept import accept_failures, accept_forever, open_listeners
from .._converter import parse_host_port
from .._logging import fields
from ..deliverability._settings import WebhookSettings
from ._http import ASGIApp

log = logging.getLogger("ringbearer.webhooks")
_H2_STREAMS = 16  # concurrent requests on one HTTP/2 connection


@attrs.define(eq=False)
class BoundedListener(trio.abc.Listener[trio.SocketStream]):
    """Accepts only while a slot is free; the connection's handler gives the slot back."""

    inner: trio.SocketListener
    slots: trio.Semaphore

    async def accept(self) -> trio.SocketStream:
        await self.slots.acquire()
        try:
            return await self.inner.accept()
        except BaseException:
            self.slots.release()
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


def hypercorn_config(settings: WebhookSettings) -> Config:
    """hypercorn's settings for the listener: quiet, with the listener's idle time."""
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("ringbearer.webhooks.server")
    # A head must arrive within this of the connection opening (or of the last
    # answer): hypercorn's idle timer runs until a request's head is whole. The
    # body has the app's own deadline. No read timeout: hypercorn would give up a
    # connection whose answer waits on a slow commit, and the answer with it.
    config.keep_alive_timeout = settings.idle_seconds
    config.include_server_header = False
    config.h2_max_concurrent_streams = _H2_STREAMS
    return config


async def serve(
    app: ASGIApp,
    settings: WebhookSettings,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``settings.listen`` until cancelled; ``started`` gets the bound port."""
    host, port = parse_host_port(settings.listen)
    inner, bound = await open_listeners(host, port)
    slots = trio.Semaphore(settings.max_connections)  # shared by every address listened on
    config = hypercorn_config(settings)
    wrapped = wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")
    where = f"webhooks {host}:{bound}"
    async with trio.open_nursery() as nursery:

        def admit(stream: trio.SocketStream) -> None:
            nursery.start_soon(_connection, wrapped, config, stream, slots)

        for listener in inner:
            bounded = BoundedListener(listener, slots)
            nursery.start_soon(_accepting, bounded, admit, where)
        log.info(
            "webhooks listening",
            extra=fields(listener=where, max_connections=settings.max_connections),
        )
        task_status.started(bound)


async def _accepting(
    listener: BoundedListener, admit: Callable[[trio.SocketStream], None], where: str
) -> None:
    async with listener:
        await accept_forever(listener, admit, accept_failures(log, where))


async def _connection(
    app: AppWrapper, config: Config, stream: trio.SocketStream, slots: trio.Semaphore
) -> None:
    """One connection, served by hypercorn; its slot is free again when it closes."""
    try:
        watched = _WatchedStream(stream, WorkerContext(None))
        state: LifespanState = {}
        # hypercorn types its stream as TLS; without TLS it serves a plain one.
        await TCPServer(app, config, watched.context, state, cast(Any, watched)).run()
    finally:
        slots.release()
        await trio.aclose_forcefully(stream)


class _WatchedStream(trio.abc.HalfCloseableStream):
    """A connection's stream, as hypercorn reads it; the end of its input ends the connection.

    hypercorn keeps a connection whose client has gone until its keep-alive
    timer runs out, and here that would hold a slot for ``idle_seconds`` after
    every client that closes. Its idle timer also ends when its worker context
    is ``terminated``, so each connection gets a context of its own, which is
    marked terminated once the client's input ends: hypercorn then closes the
    connection at once, after any answer still being written.
    """

    def __init__(self, inner: trio.SocketStream, context: WorkerContext) -> None:
        self.inner = inner
        self.context = context

    @property
    def socket(self) -> trio.socket.SocketType:
        return self.inner.socket  # hypercorn reads the peer's address from it

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.context.terminated.set()
            raise
        if not data:
            await self.context.terminated.set()
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()
