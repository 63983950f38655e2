"""The ways in: the heartbeat, the control socket, the metrics listener, the signals."""

from __future__ import annotations

import functools
import logging
import signal

import trio

from . import _pagerduty_webhook
from ._config import ControlSettings, PrincipalSettings, resolve_secret
from ._converter import parse_host_port
from ._errors import ErrorCode, RequestError, cannot
from ._httpserver import Handler, HttpRequest, HttpResponse, serve_http
from ._logging import fields
from ._parts import Parts
from ._reload import Reloader
from .control import AccessPolicy, Guard, Principals, ServerLimits, serve_control
from .handlers import answer

log = logging.getLogger("ringbearer.daemon")


async def front_services(parts: Parts, nursery: trio.Nursery, stop: trio.Event) -> None:
    """The heartbeat, the control socket, the metrics listener, the signals."""
    config = parts.current.value
    await nursery.start(parts.heartbeat.run)
    with cannot(f"listen on the control socket {config.socket_path}"):
        await nursery.start(
            functools.partial(
                serve_control,
                config.socket_path,
                functools.partial(answer, parts.table),
                limits=ServerLimits(
                    max_connections=config.control.max_connections,
                    idle_seconds=config.control.idle_seconds,
                ),
                guard=Guard(
                    _access_policy(config.control), config.control.group, parts.journal.refused
                ),
            )
        )
    if config.metrics.enabled:
        await _serve_metrics(parts, nursery)
    nursery.start_soon(_watch_signals, parts, stop, nursery)


async def _serve_metrics(parts: Parts, nursery: trio.Nursery) -> None:
    config = parts.current.value
    host, port = parse_host_port(config.metrics.listen)
    with cannot(f"listen for metrics on {config.metrics.listen} ([metrics] listen)"):
        bound = await nursery.start(serve_http, _metrics_handler(parts), host, port)
    parts.addresses.metrics = f"http://{host}:{bound}{config.metrics.path}"


def _access_policy(control: ControlSettings) -> AccessPolicy:
    def principals(p: PrincipalSettings) -> Principals:
        return Principals(p.users, p.groups)

    return AccessPolicy(
        operators=principals(control.operators),
        senders=principals(control.senders),
        readers=principals(control.readers),
    )


def _metrics_handler(parts: Parts) -> Handler:
    """``/metrics``, and PagerDuty's acknowledgements where a webhook secret is configured."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    config = parts.current.value
    path, webhook_path = config.metrics.path, config.alerting.pagerduty_webhook_path
    webhook = _webhook_handler(parts)
    registry = parts.base.metrics.registry

    async def answer(request: HttpRequest) -> HttpResponse:
        if webhook is not None and request.path == webhook_path:
            return await webhook(request)
        if request.path != path:
            return HttpResponse.text(404, "not found\n")
        if request.method not in ("GET", "HEAD"):
            return HttpResponse.text(405, "method not allowed\n")
        return HttpResponse(
            200, generate_latest(registry), (("Content-Type", CONTENT_TYPE_LATEST),)
        )

    return answer


def _webhook_handler(parts: Parts) -> Handler | None:
    ref = parts.current.value.alerting.pagerduty_webhook_secret
    if ref is None:
        return None
    secret = resolve_secret(ref, sandbox=parts.base.sandbox is not None)
    return _pagerduty_webhook.handler(secret, parts.alerts.ack_key)


async def _watch_signals(parts: Parts, stop: trio.Event, nursery: trio.Nursery) -> None:
    """SIGTERM and SIGINT stop the daemon; SIGHUP reloads its config file."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                nursery.start_soon(_reload_on_signal, parts.reloader)
                continue
            log.info("stop requested", extra=fields(signal=signal.Signals(signum).name))
            stop.set()
            return


async def _reload_on_signal(reloader: Reloader) -> None:
    try:
        await reloader.reload_file()
    except RequestError as exc:
        if exc.code is ErrorCode.INVALID_CONFIG:
            return  # already logged; the running config stays
        # The wedding-day freeze: a signal cannot say --force.
        log.error(
            "reload refused", extra=fields(reason=exc.message, hint="ringbearer reload --force")
        )
