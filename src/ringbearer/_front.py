"""The ways in: the heartbeat, the control socket, the metrics listener, the signals.

Each listener is bounded (connections, deadlines, bytes); their accepts
outlive a full descriptor table. Before they open, the soft limit on open
files is raised to the hard one where the kernel allows, and the limit the
daemon runs with is logged.
"""

from __future__ import annotations

import functools
import logging
import resource
import signal

import trio

from ._config import ControlSettings, MetricsSettings, PrincipalSettings
from ._converter import parse_host_port
from ._errors import ErrorCode, RequestError, cannot
from ._httpserver import Handler, HttpLimits, HttpRequest, HttpResponse, serve_http
from ._logging import fields
from ._parts import Parts
from ._public import serve_public
from ._reload import Reloader
from .control import AccessPolicy, Guard, Principals, ServerLimits, serve_control
from .handlers import answer

log = logging.getLogger("ringbearer.daemon")

# Where the hard limit is unlimited, the soft one is raised this far.
_NOFILE_WHEN_UNLIMITED = 1 << 20
# Descriptors the daemon needs besides its listeners' connections: the store,
# a connection per lane to the providers, the sandbox, the journal.
_NOFILE_HEADROOM = 512


async def front_services(parts: Parts, nursery: trio.Nursery, stop: trio.Event) -> None:
    """The heartbeat, the control socket, the metrics listener, the signals."""
    config = parts.current.value
    check_open_file_limit(config.control, config.metrics)
    await nursery.start(parts.heartbeat.run)
    nursery.start_soon(parts.journal.report_refusals_forever)
    # Before the control socket: an email's unsubscribe link needs the listener's address.
    await serve_public(parts, nursery)
    with cannot(f"listen on the control socket {config.socket_path}"):
        await nursery.start(
            functools.partial(
                serve_control,
                config.socket_path,
                functools.partial(answer, parts.table),
                limits=_control_limits(config.control),
                guard=Guard(
                    _access_policy(config.control), config.control.group, parts.journal.refused
                ),
            )
        )
    if config.metrics.enabled:
        await _serve_metrics(parts, nursery)
    nursery.start_soon(_watch_signals, parts, stop, nursery)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one where allowed; the limits after.

    systemd gives a unit without ``LimitNOFILE=`` a soft limit of 1,024 under a
    far higher hard one; a seccomp filter (``~@resources``) may refuse the call,
    and then the limit stays as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NOFILE_WHEN_UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open-file limit", extra=fields(soft=soft, error=exc))
        return soft, hard
    return target, hard


def check_open_file_limit(control: ControlSettings, metrics: MetricsSettings) -> None:
    """Raise the limit, log the one the daemon runs with, warn when the listeners could fill it."""
    soft, hard = raise_open_file_limit()
    listeners = control.max_connections + control.operator_slots
    if metrics.enabled:
        listeners += metrics.max_connections
    log.info("open-file limit", extra=fields(soft=soft, hard=hard, listeners=listeners))
    if soft != resource.RLIM_INFINITY and soft < listeners + _NOFILE_HEADROOM:
        log.warning(
            "the open-file limit leaves little room beside the listeners' connections",
            extra=fields(soft=soft, listeners=listeners, hint="LimitNOFILE= in the unit"),
        )


def _control_limits(control: ControlSettings) -> ServerLimits:
    return ServerLimits(
        max_connections=control.max_connections,
        idle_seconds=control.idle_seconds,
        operator_slots=control.operator_slots,
    )


def _metrics_limits(metrics: MetricsSettings) -> HttpLimits:
    return HttpLimits(
        max_connections=metrics.max_connections,
        header_seconds=metrics.header_timeout_seconds,
        body_seconds=metrics.body_timeout_seconds,
        idle_seconds=metrics.idle_seconds,
        max_body_bytes=metrics.max_body_bytes,
        max_buffered_bytes=metrics.max_buffered_bytes,
    )


async def _serve_metrics(parts: Parts, nursery: trio.Nursery) -> None:
    config = parts.current.value
    host, port = parse_host_port(config.metrics.listen)
    serve = functools.partial(
        serve_http,
        _metrics_handler(parts),
        host,
        port,
        limits=_metrics_limits(config.metrics),
        name="metrics",
    )
    with cannot(f"listen for metrics on {config.metrics.listen} ([metrics] listen)"):
        bound = await nursery.start(serve)
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
    """``/metrics`` (PagerDuty's acknowledgements moved to the public listener)."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    path = parts.current.value.metrics.path
    registry = parts.base.metrics.registry

    async def answer(request: HttpRequest) -> HttpResponse:
        if request.path != path:
            return HttpResponse.text(404, "not found\n")
        if request.method not in ("GET", "HEAD"):
            return HttpResponse.text(405, "method not allowed\n")
        return HttpResponse(
            200, generate_latest(registry), (("Content-Type", CONTENT_TYPE_LATEST),)
        )

    return answer


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


SIGNAL_HINTS = {
    ErrorCode.FROZEN: "ringbearer reload --force",
    ErrorCode.WOULD_STRAND: "ringbearer reload --drop-queued",
}


async def _reload_on_signal(reloader: Reloader) -> None:
    try:
        await reloader.reload_file()
    except RequestError as exc:
        if exc.code in (ErrorCode.INVALID_CONFIG, ErrorCode.RELOAD_FAILED):
            return  # already logged; the running config stays
        # A signal cannot say --force (the wedding-day freeze) or --drop-queued.
        hint = SIGNAL_HINTS.get(exc.code, "ringbearer reload")
        log.error("reload refused", extra=fields(reason=exc.message, hint=hint))
