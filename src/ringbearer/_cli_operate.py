"""CLI commands for operators: status, top, pause, resume, breakers, the mode, alerts, reload."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from ._cli_base import (
    CHANGE_EXITS,
    EXIT_OK,
    READ_EXITS,
    UsageError,
    call,
    config_path,
    exits,
    positive_seconds,
    show,
    time_ahead,
    to_json,
)
from ._errors import ControlError

if TYPE_CHECKING:
    from .control._replies import PreflightReply, StatusReply

AddCommand = Any
FORCE_HELP = "needed while wedding-day mode freezes changes; logged as forced"


def cmd_status(args: argparse.Namespace) -> int:
    from ._views import format_status
    from .control import Status

    show(args, call(args, Status()), format_status)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    from .control import Pause

    show(args, call(args, Pause(args.name, args.force)), lambda r: f"{r.name}: paused")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from .control import Resume

    show(args, call(args, Resume(args.name, args.force)), lambda r: f"{r.name}: resumed")
    return EXIT_OK


def cmd_breaker(args: argparse.Namespace) -> int:
    from .control import Breaker, BreakerAction

    reply = call(args, Breaker(args.name, BreakerAction(args.action), args.force))
    forced = " (forced by an operator)" if reply.forced else ""
    show(args, reply, lambda r: f"{r.name}: breaker {r.breaker}{forced}")
    return EXIT_OK


def cmd_wedding_day(args: argparse.Namespace) -> int:
    from ._views import format_mode
    from .control import OverrideState, WeddingDay

    if args.until is not None and args.state not in ("on", "off"):
        raise UsageError("--until goes with on or off")
    state = None if args.state is None else OverrideState(args.state)
    show(args, call(args, WeddingDay(state, args.until)), format_mode)
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from ._views import format_alerts
    from .control import Alerts, AlertsAck

    if args.action == "ack":
        if args.id is None:
            raise UsageError("alerts ack needs the alert's ID")
        reply = call(args, AlertsAck(args.id))
        show(args, reply, lambda r: f"alert {r.id} acknowledged: {r.summary}")
        return EXIT_OK
    if args.id is not None:
        raise UsageError("an alert ID goes with ack")
    show(args, call(args, Alerts()), format_alerts)
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    from ._views import format_reload
    from .control import Reload

    show(args, call(args, Reload(args.force, args.drop_queued), timeout=120), format_reload)
    return EXIT_OK


def cmd_crash(args: argparse.Namespace) -> int:
    from .control import InjectCrash

    reply = call(args, InjectCrash(args.name))
    show(args, reply, lambda r: f"{r.name}: crash armed for its next attempt")
    return EXIT_OK


def cmd_preflight(args: argparse.Namespace) -> int:
    """The running daemon checks its own providers (its sandbox); with none, the config's."""
    from ._views import format_preflight
    from .control import Preflight

    reply: PreflightReply
    try:
        reply = call(args, Preflight(args.timeout), timeout=args.timeout + 15)
    except ControlError as exc:
        reply = _preflight_from_config(args, str(exc))
    show(args, reply, format_preflight)
    return reply.exit_code


def _preflight_from_config(args: argparse.Namespace, why: str) -> PreflightReply:
    import functools

    import trio

    from ._config import load
    from ._preflight import preflight_as_configured

    config = load(config_path(args))
    check = functools.partial(preflight_as_configured, config, timeout=args.timeout, reason=why)
    return trio.run(check).reply()  # starts its own simulator when the sandbox is on


# -- top -----------------------------------------------------------------------------------


Snapshot = tuple["StatusReply", float]


def cmd_top(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        if args.once:
            _top_once(args)
        else:
            _top_live(args)
    return EXIT_OK


def _snapshot(args: argparse.Namespace) -> Snapshot:
    from .control import Status

    return call(args, Status()), time.monotonic()


def _elapsed(previous: Snapshot | None, current: Snapshot) -> float:
    """Seconds between two snapshots, by the daemon's own clock when it can tell."""
    if previous is None:
        return 0.0
    by_daemon = current[0].uptime_seconds - previous[0].uptime_seconds
    return by_daemon if by_daemon > 0 else current[1] - previous[1]


def _top_once(args: argparse.Namespace) -> None:
    """Two snapshots an interval apart (rates need two), one frame."""
    first = _snapshot(args)
    time.sleep(args.interval)
    second = _snapshot(args)
    _frame(args, first[0], second[0], _elapsed(first, second), clear=False)


def _top_live(args: argparse.Namespace) -> None:
    clear = sys.stdout.isatty() and not args.json
    previous: Snapshot | None = None
    while True:
        current = _snapshot(args)
        before = previous[0] if previous else None
        _frame(args, before, current[0], _elapsed(previous, current), clear=clear)
        previous = current
        time.sleep(args.interval)


def _frame(
    args: argparse.Namespace,
    previous: StatusReply | None,
    current: StatusReply,
    elapsed: float,
    *,
    clear: bool,
) -> None:
    import json

    from ._views import CLEAR, render_top, top_rows

    if args.json:  # one object a frame: JSON lines when live
        model = top_rows(previous, current, elapsed)
        print(json.dumps(model, indent=2 if args.once else None), flush=True)
        return
    frame = render_top(previous, current, elapsed, refresh=None if args.once else args.interval)
    sys.stdout.write((CLEAR if clear else "") + frame + "\n")
    sys.stdout.flush()


# -- the parser ------------------------------------------------------------------------------


def add_commands(command: AddCommand) -> None:
    command("status", cmd_status, "show each integration's state, queues and the mode", READ_EXITS)
    _add_top(command)
    _add_switches(command)
    _add_wedding_day(command)
    _add_alerts(command)
    _add_checks(command)


def _add_switches(command: AddCommand) -> None:
    """Pause, resume, breakers: what the wedding-day freeze guards."""
    for name, fn in (("pause", cmd_pause), ("resume", cmd_resume)):
        p = command(
            name, fn, f"{name} an integration or a group (kept across restarts)", CHANGE_EXITS
        )
        p.add_argument("name", help="an integration or a group of the config")
        p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p = command("breaker", cmd_breaker, "force a breaker open or closed, or reset it", CHANGE_EXITS)
    p.add_argument("name", help="an integration")
    p.add_argument(
        "action",
        choices=("open", "close", "reset"),
        help="open or close it (it stays so until reset), or reset it",
    )
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def _add_alerts(command: AddCommand) -> None:
    p = command(
        "alerts",
        cmd_alerts,
        "list open alerts, or acknowledge one (stops escalation)",
        CHANGE_EXITS.replace("a role", "no such alert, a role"),
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("list", "ack"),
        default="list",
        help="list the open alerts, or ack one",
    )
    p.add_argument("id", nargs="?", type=int, help="the alert to acknowledge")


def _add_reload(command: AddCommand) -> None:
    p = command(
        "reload",
        cmd_reload,
        "read the config file again and apply it (as SIGHUP does)",
        CHANGE_EXITS.replace(
            "a role",
            "an invalid config or work it would strand (nothing changed), a failure (rolled"
            " back), a role",
        ),
    )
    p.add_argument(
        "--force",
        action="store_true",
        help=FORCE_HELP + " (only the freeze: it never drops queued work; see --drop-queued)",
    )
    p.add_argument(
        "--drop-queued",
        action="store_true",
        help="a reload that removes or disables an integration or group still holding work is"
        " refused; with this, that work (and any other left with no route) becomes dead letters"
        " with the reason, replayable with `dead-letters replay --all --target NAME`",
    )


def _add_checks(command: AddCommand) -> None:
    """Reload, preflight, and the sandbox's crash injection."""
    _add_reload(command)
    p = command(
        "preflight",
        cmd_preflight,
        "check every integration's settings, secrets and provider, sending nothing: the running"
        " daemon's own (its sandbox's), or the config's when no daemon answers",
        exits("0  ready (perhaps with warnings)", "1  not ready", "2  an invalid config"),
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="DURATION",
        help="the bound of each check",
    )
    p = command(
        "crash", cmd_crash, "sandbox only: crash an actor on its next attempt", CHANGE_EXITS
    )
    p.add_argument("name", help="an integration")


def _add_wedding_day(command: AddCommand) -> None:
    p = command(
        "wedding-day",
        cmd_wedding_day,
        "show wedding-day mode and why; or turn it on or off (until a time), or back to auto",
        CHANGE_EXITS,
    )
    p.add_argument(
        "state",
        nargs="?",
        choices=("on", "off", "auto"),
        help="on or off (overriding the calendar), or auto (follow the calendar); "
        "none: show the mode",
    )
    p.add_argument(
        "--until",
        type=time_ahead,
        metavar="WHEN",
        help="end the override then: a duration from now (2h), an ISO time or a "
        "Unix time; default: until set back to auto",
    )


def _add_top(command: AddCommand) -> None:
    p = command(
        "top",
        cmd_top,
        "a live view: actors, queues by priority, in flight, delivery rates, restarts, mode",
        exits(
            "0  Ctrl-C, or the frame printed with --once",
            "2  bad usage",
            "3  the daemon could not be reached (or went away)",
        ),
    )
    p.add_argument(
        "--interval",
        type=positive_seconds,
        default=1.0,
        metavar="DURATION",
        help="refresh every DURATION; rates are over this interval",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="print one frame (after one interval, for the rates) and exit",
    )


__all__ = ["add_commands", "to_json"]
