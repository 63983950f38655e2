"""The public listener's ASGI app: limits first, then a route, then its handler.

Routes: ``POST /webhooks/{name}`` for each configured source,
``GET|POST /unsubscribe/{token}``, and ``POST`` at PagerDuty's path when its
secret is configured, and ``POST /v1/messages`` (producers submitting over the
network, ``_intake``) when ``[intake]`` is enabled; anything else is 404, a
known path with the wrong method 405. Before any handler runs, a request must
pass its client's rate (429 with ``Retry-After``) and fit in ``max_body_bytes``
(413, read no further than the limit); a body that does not arrive within
``idle_seconds`` is 408.

The app holds no server of its own (see ``_serve``), and every dependency is
handed in, each a narrow protocol with a fake in the tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs
import trio

from .._logging import fields
from ..deliverability._settings import WebhookSettings
from ..deliverability._unsubscribe import UnsubscribeTokens
from ..resilience._ratelimit import RateLimitSettings
from ..store import AuditLog
from . import _pagerduty
from ._http import Disconnected, Receive, Request, Response, Scope, Send, read_body, send_response
from ._intake import PATH as INTAKE_PATH
from ._intake import IntakeParts, MessageIntake
from ._limits import ClientLimiter, Proxies
from ._pagerduty import PagerDutyHook
from ._refusals import Refusals
from ._unsubscribe_page import UnsubscribePages, Unsubscriber
from ._webhooks import Ingest, Webhooks, WebhookSource

log = logging.getLogger("ringbearer.webhooks")

Handler = Callable[[Request], Awaitable[Response]]
_WEBHOOK = re.compile(r"/webhooks/([^/]+)")
_UNSUBSCRIBE = re.compile(r"/unsubscribe/([A-Za-z0-9._-]{1,2048})")


@attrs.frozen
class Route:
    """The methods a path answers, and what answers them."""

    methods: frozenset[str]
    handle: Handler


@attrs.frozen
class ListenerParts:
    """What the listener is handed: where events, unsubscribes and refusals go."""

    ingest: Ingest
    unsubscriber: Unsubscriber
    audit: AuditLog
    tokens: UnsubscribeTokens
    wall: Callable[[], float]  # wall clock: Svix's tolerance, audit times, Twilio's events
    pagerduty: PagerDutyHook | None = None
    monotonic: Callable[[], float] = trio.current_time  # the rate limiter's clock
    intake: IntakeParts | None = None  # POST /v1/messages: producers, and the submit handler


@attrs.frozen
class ListenerApp:
    """The ASGI callable; build it with :func:`build_app`."""

    settings: WebhookSettings
    webhooks: Webhooks
    pages: UnsubscribePages
    refusals: Refusals
    limiter: ClientLimiter
    proxies: Proxies = Proxies()
    pagerduty: PagerDutyHook | None = None
    intake: MessageIntake | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                response = await self.respond(Request.of(scope), receive)
            except Disconnected:
                return
            await send_response(send, response)
        # Anything else (a WebSocket) is refused by the server when the app returns.

    async def respond(self, request: Request, receive: Receive) -> Response:
        """The response to one request whose body is still to be read."""
        client = self.proxies.client(request.peer, request.headers.get("x-forwarded-for"))
        wait = self.limiter.admit(client)
        if wait is not None:
            return Response.text(429, "too many requests", ("retry-after", f"{wait:.0f}"))
        response = await self._respond(request, receive)
        if 400 <= response.status < 500:
            self.limiter.refused(client)  # what verifies costs no token (see ``_limits``)
        return response

    async def _respond(self, request: Request, receive: Receive) -> Response:
        route = self.route(request.path)
        if route is None:
            return Response.text(404, "not found")
        if request.method not in route.methods:
            allowed = ", ".join(sorted(route.methods))
            return Response.text(405, "method not allowed", ("allow", allowed))
        limit = self.settings.max_body_bytes
        declared = request.declared_length()
        if declared is not None and declared > limit:
            return Response.text(413, "too large")
        # The deadline is the body's alone: a handler waiting on a commit is not cut short.
        with trio.move_on_after(self.settings.idle_seconds) as reading:
            body = await read_body(receive, limit)
        if reading.cancelled_caught:
            return Response.text(408, "the request took too long")
        if body is None:
            return Response.text(413, "too large")
        return await self._handle(route, attrs.evolve(request, body=body))

    def route(self, path: str) -> Route | None:
        """The route of ``path``, or None (404)."""
        if self.pagerduty is not None and path == self.pagerduty.path:
            hook = self.pagerduty
            return Route(frozenset({"POST"}), lambda r: _pagerduty.answer(hook, self.refusals, r))
        if self.intake is not None and path == INTAKE_PATH:
            return Route(frozenset({"POST"}), self.intake.answer)
        found = _WEBHOOK.fullmatch(path)
        if found is not None and found[1] in self.webhooks.sources:
            name = found[1]
            return Route(frozenset({"POST"}), lambda r: self.webhooks.answer(name, r))
        found = _UNSUBSCRIBE.fullmatch(path)
        if found is not None:
            token = found[1]
            return Route(frozenset({"GET", "POST"}), lambda r: self.pages.answer(token, r))
        return None

    async def _handle(self, route: Route, request: Request) -> Response:
        try:
            return await route.handle(request)
        except Exception as exc:  # one request's failure is its own 500, never the server's
            # Where and what, not the message or traceback, which could name a person.
            log.error(
                "listener request failed", extra=fields(error=type(exc).__name__, at=_where(exc))
            )
            return Response.text(500, "internal error")


def build_app(
    settings: WebhookSettings, sources: Sequence[WebhookSource], parts: ListenerParts
) -> ListenerApp:
    """The listener's app for ``settings``, its webhook ``sources`` and its ``parts``."""
    by_name: Mapping[str, WebhookSource] = {source.name: source for source in sources}
    if len(by_name) != len(sources):
        raise ValueError("two webhook sources share a name")
    refusals = Refusals(parts.audit, parts.wall)
    rate = RateLimitSettings(settings.per_client_per_second, settings.per_client_burst)
    return ListenerApp(
        settings=settings,
        webhooks=Webhooks(
            by_name,
            parts.ingest,
            refusals,
            parts.wall,
            settings.tolerance_seconds,
            settings.public_url,
        ),
        pages=UnsubscribePages(parts.tokens, parts.unsubscriber, refusals),
        refusals=refusals,
        limiter=ClientLimiter(rate, parts.monotonic),
        proxies=Proxies.of(settings.trusted_proxies),
        pagerduty=parts.pagerduty,
        intake=None if parts.intake is None else MessageIntake(parts.intake, refusals),
    )


def _where(exc: BaseException) -> str:
    """The file and line an exception was raised at."""
    trace = exc.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is None:
        return "?"
    return f"{trace.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{trace.tb_lineno}"


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: say so, for a server that asks."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
