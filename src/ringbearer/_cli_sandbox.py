"""``ringbearer sandbox fault|stats|clear`` and ``ringbearer simulate``: the simulator by hand.

The ``sandbox`` commands act on the running daemon's simulator: the daemon's
``status`` names its URL (:func:`sandbox_url`), then they use the
simulator's own ``/_sim`` API over HTTP. A provider is named by its kind as
the config spells it (``resend``, ``slack_webhook``, ``twilio_sms``,
``smtp``). ``simulate`` runs a simulator on its own, in the foreground,
until Ctrl-C or SIGTERM.

:func:`add_commands` adds them to the ``ringbearer`` parser; :func:`main`
runs them alone (``python -m ringbearer._cli_sandbox``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._cli_base import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_daemon,
    exits,
    socket_path,
    stderr,
)
from ._errors import ConfigError, ControlError, RequestError, RingbearerError

TIMEOUT = 10.0  # seconds, for the daemon's status and each simulator request


Args = argparse.Namespace
Common = Callable[..., None]  # _cli_base.add_daemon: (parser, *, json_output=True)


class NoSandbox(RingbearerError):
    """The daemon runs against the real providers: there is no simulator to act on."""


class SandboxFailed(RingbearerError):
    """The daemon's simulator did not answer, or answered with an error of its own."""


class _Usage(RingbearerError):
    """The command line asks for something that cannot be done (a usage line follows)."""


SANDBOX_EXITS = exits(
    "0  done",
    "1  no sandbox: the daemon runs against the real providers (or its simulator failed)",
    "2  bad usage: an unknown KIND, a bad or missing option",
    "3  the daemon could not be reached",
)
SIMULATE_EXITS = exits(
    "0  stopped by Ctrl-C (SIGINT) or SIGTERM",
    "2  bad usage, or an address is busy or cannot be listened on",
)


# --- finding the daemon's simulator ----------------------------------------------


def sandbox_url(socket_path: Path) -> str:
    """The running daemon's simulator URL, from its ``status``; NoSandbox if it has none."""
    from .control import Client

    with Client(socket_path, timeout=TIMEOUT) as client:
        status = client.raw("status")
    url = status.get("sandbox") if isinstance(status, dict) else None
    if not isinstance(url, str) or not url:
        raise NoSandbox(f"the daemon at {socket_path} runs against the real providers: no sandbox")
    return url


def _simulator(url: str, method: str, path: str, **request: Any) -> Any:
    """One request to the simulator's ``/_sim`` API; its JSON answer."""
    import httpx

    try:
        response = httpx.request(
            method, f"{url.rstrip('/')}/_sim{path}", timeout=TIMEOUT, trust_env=False, **request
        )
        answer = response.json()
    except httpx.HTTPError as exc:
        raise SandboxFailed(f"the sandbox at {url} did not answer: {exc}") from exc
    except ValueError as exc:
        raise SandboxFailed(f"the sandbox at {url} answered HTTP {response.status_code}") from exc
    if response.status_code == 400:  # it names the unknown provider or the bad field
        raise _Usage(str(answer.get("error") if isinstance(answer, dict) else answer))
    if not response.is_success:
        raise SandboxFailed(f"the sandbox at {url} answered HTTP {response.status_code}")
    return answer


# --- the sandbox commands ------------------------------------------------------------

# --OPTION: (the simulator's field, what a struck request gets)
_RATES = {
    "error": ("error_rate", "the provider's own transient 5xx"),
    "permanent": ("permanent_rate", "the provider's own 4xx (validation or credentials)"),
    "rate_limit": ("rate_limit_rate", "the provider's 429, with its own headers"),
    "reset": ("reset_rate", "a TCP reset (not processed)"),
    "hang": ("hang_rate", "no answer until the client gives up (not processed)"),
    "truncate": ("truncate_rate", "an answer cut off mid-body (processed)"),
    "malformed": ("malformed_rate", "a garbled answer (processed)"),
}


def _faults(args: Args) -> dict[str, Any]:
    """The simulator's fault fields the options ask for."""
    faults: dict[str, Any] = {
        field: getattr(args, option)
        for option, (field, _) in _RATES.items()
        if getattr(args, option) is not None
    }
    faults.update({flag: True for flag in ("outage", "storm") if getattr(args, flag)})
    if args.latency is not None:
        faults["latency_ms"] = args.latency * 1000
    if not faults:
        options = ", ".join(f"--{o.replace('_', '-')}" for o in ("outage", "storm", *_RATES))
        raise _Usage(f"name a fault: one or more of {options}, --latency")
    if args.retry_after is not None:
        faults["retry_after"] = args.retry_after
    if args.count is not None:
        faults["count"] = args.count
    return faults


def _described(kind: str, faults: dict[str, Any]) -> str:
    """``resend: outage, error 0.5; for the next 3 requests``."""
    shown = [name for name in ("outage", "storm") if faults.get(name)]
    shown += [
        f"{option.replace('_', ' ')} {faults[field]:g}"
        for option, (field, _) in _RATES.items()
        if faults.get(field)
    ]
    if faults.get("latency_ms"):
        shown.append(f"latency {faults['latency_ms'] / 1000:g}s")
    count = faults.get("count")
    lasting = f"for the next {count} requests" if count else "until cleared"
    return f"{kind}: {', '.join(shown) or 'healthy'}; {lasting}"


def cmd_fault(args: Args, url: str) -> int:
    answer = _simulator(url, "POST", "/faults", json={"provider": args.kind, **_faults(args)})
    print(_described(args.kind, answer[args.kind]))
    return EXIT_OK


def cmd_stats(args: Args, url: str) -> int:
    from .simulator import kind_of

    params = {"provider": args.kind} if args.kind else None
    stats = _simulator(url, "GET", "/stats", params=params)
    by_kind = {kind_of(name): counts for name, counts in sorted(stats.items())}
    if getattr(args, "json", False):
        print(json.dumps(by_kind, indent=2))
    else:
        print(_stats_table(by_kind))
    return EXIT_OK


def _stats_table(stats: dict[str, dict[str, Any]]) -> str:
    rows = [["KIND", "REQUESTS", "ACCEPTED", "KEYS", "DUPLICATES", "STATUSES"]]
    for kind, s in stats.items():
        statuses = " ".join(f"{code}={n}" for code, n in s["status_counts"].items()) or "-"
        numbers = (s["requests"], s["accepted"], s["unique_keys"], s["duplicates"])
        rows.append([kind, *(str(n) for n in numbers), statuses])
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    lines = []
    for kind, *counts, statuses in rows:
        cells = [n.rjust(w) for n, w in zip(counts, widths[1:], strict=True)]
        lines.append("  ".join([kind.ljust(widths[0]), *cells, statuses]))
    return "\n".join(lines)


def cmd_clear(args: Args, url: str) -> int:
    params = {"provider": args.kind} if args.kind else None
    _simulator(url, "DELETE", "/faults", params=params)
    print(f"{args.kind}: healthy" if args.kind else "every provider: healthy")
    return EXIT_OK


def _on_sandbox(
    parser: argparse.ArgumentParser, command: Callable[[Args, str], int]
) -> Callable[[Args], int]:
    """Run ``command`` on the daemon's simulator; each failure is one line and its exit code."""

    def run(args: Args) -> int:
        try:
            return command(args, sandbox_url(socket_path(args)))
        except _Usage as exc:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        except ControlError as exc:
            stderr(str(exc))
            return EXIT_UNREACHABLE
        except RequestError as exc:
            stderr(f"{exc.code}: {exc.message}")
            return EXIT_REFUSED
        except RingbearerError as exc:
            stderr(str(exc))
            return EXIT_REFUSED

    return run


# --- argument types ------------------------------------------------------------------


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 600.0:
        raise ValueError(text)
    return value


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    parse.__name__ = f"whole number from {low} to {high}"
    return parse


def _host_port(text: str) -> tuple[str, int] | None:
    from ._converter import parse_host_port

    return parse_host_port(text) if text else None


_rate.__name__ = "share from 0 to 1"
_seconds.__name__ = "seconds from 0 to 600"
_host_port.__name__ = "HOST:PORT"


# --- the parser ----------------------------------------------------------------------


def _parser(sub: Any, name: str, help: str, epilog: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _kind_argument(parser: argparse.ArgumentParser, *, every: bool) -> None:
    what = "the provider, by the kind the config names (resend, slack_webhook, twilio_sms, smtp...)"
    if every:
        parser.add_argument("kind", nargs="?", metavar="KIND", help=f"{what} (default: every one)")
    else:
        parser.add_argument("kind", metavar="KIND", help=what)


_FLAGS = {
    "outage": "every request gets the provider's outage answer"
    " (its 5xx; SMTP: 421 at the greeting) (default: off)",
    "storm": "every request gets the provider's 429 (default: off)",
}


def _add_fault(sub: Any, common: Common) -> None:
    p = _parser(
        sub,
        "fault",
        "make the daemon's simulated provider fail: replaces its faults",
        "Rates are shares of requests, drawn from the provider's seeded stream;\n"
        "together they may add up to at most 1.\n\n" + SANDBOX_EXITS,
    )
    common(p, json_output=False)
    _kind_argument(p, every=False)
    for flag, help in _FLAGS.items():
        p.add_argument(f"--{flag}", action="store_true", help=help)
    for option, (_, what) in _RATES.items():
        flag = "--" + option.replace("_", "-")
        help = f"this share of requests gets {what} (default: 0)"
        p.add_argument(flag, dest=option, type=_rate, metavar="RATE", help=help)
    for flag, parse, metavar, help in (
        ("--latency", _seconds, "SECONDS", "each answer comes this late (default: 0)"),
        ("--retry-after", _whole(0, 86_400), "SECONDS", "the wait a 429 asks for (default: 1)"),
        ("--count", _whole(1, 10**6), "N", "the faults last N requests (default: until cleared)"),
    ):
        p.add_argument(flag, type=parse, metavar=metavar, help=help)
    p.set_defaults(fn=_on_sandbox(p, cmd_fault))


def _add_stats(sub: Any, common: Common) -> None:
    p = _parser(
        sub,
        "stats",
        "show what the daemon's simulated providers received: requests, accepted, statuses",
        SANDBOX_EXITS,
    )
    common(p)  # with --json: print JSON instead of a table
    _kind_argument(p, every=True)
    p.set_defaults(fn=_on_sandbox(p, cmd_stats))


def _add_clear(sub: Any, common: Common) -> None:
    p = _parser(sub, "clear", "clear the faults of the daemon's simulated providers", SANDBOX_EXITS)
    common(p, json_output=False)
    _kind_argument(p, every=True)
    p.set_defaults(fn=_on_sandbox(p, cmd_clear))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    """Add ``sandbox fault|stats|clear`` and ``simulate`` to ``ringbearer``'s sub-commands.

    ``common`` adds the options every command takes (``-c/--config``,
    ``--socket``), from which :func:`._cli_base.socket_path` finds the daemon.
    """
    sandbox = sub.add_parser(
        "sandbox",
        help="act on the running daemon's simulator: faults and stats",
        description="act on the running daemon's simulator: faults and stats",
        epilog=SANDBOX_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = sandbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_fault(actions, common)
    _add_stats(actions, common)
    _add_clear(actions, common)
    _add_simulate(sub, common)


# --- simulate ------------------------------------------------------------------------


def _add_simulate(sub: Any, common: Common) -> None:
    p = _parser(
        sub, "simulate", "run the provider simulator on its own, in the foreground", SIMULATE_EXITS
    )
    p.add_argument(
        "--listen",
        type=_host_port,
        default="127.0.0.1:8700",
        metavar="HOST:PORT",
        help="HTTP address; port 0: any free one (default: 127.0.0.1:8700)",
    )
    p.add_argument(
        "--smtp",
        type=_host_port,
        default="127.0.0.1:2525",
        metavar="HOST:PORT",
        help="SMTP address (the HTTP host is used); '' for none (default: 127.0.0.1:2525)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seeds faults and ids, so a run repeats (default: 0)",
    )
    p.set_defaults(fn=cmd_simulate)


def cmd_simulate(args: Args) -> int:
    """Serve until SIGINT or SIGTERM (exit 0); a busy address is one line and exit 2."""
    import trio

    from . import _logging

    _logging.setup("info")
    (host, port), smtp = args.listen, args.smtp
    outcome = trio.run(_simulate, host, port, smtp[1] if smtp else None, args.seed)
    if isinstance(outcome, OSError):
        stderr(f"cannot start the simulator: {outcome.strerror}")
        return EXIT_USAGE
    _log("simulator stopped", signal=outcome)
    return EXIT_OK


async def _simulate(host: str, port: int, smtp_port: int | None, seed: int) -> str | OSError:
    """The name of the signal that stopped the simulator, or why it could not start."""
    import trio

    from .simulator import SimulatorAddress, run_simulator

    # Open before listening: a signal as soon as the address is announced is handled.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                address: SimulatorAddress = await nursery.start(
                    run_simulator, host, port, smtp_port, seed
                )
            except OSError as exc:  # before it served anything: nothing to stop
                return exc
            smtp = f"{host}:{address.smtp_port}" if address.smtp_port is not None else "none"
            _log("simulator started", url=address.url, smtp=smtp)
            signum = await anext(signals)
            nursery.cancel_scope.cancel()
    return signal.Signals(signum).name


# --- standalone ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """These commands alone, as ``ringbearer`` runs them (for tests and scripts)."""
    parser = argparse.ArgumentParser(prog="ringbearer")
    add_commands(
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), add_daemon
    )
    args = parser.parse_args(argv)
    code: int = args.fn(args)
    return code


def _log(message: str, **detail: object) -> None:
    """One line in the daemon's log format (logging is loaded only when it is used)."""
    import logging

    from ._logging import fields

    logging.getLogger("ringbearer.simulator").info(message, extra=fields(**detail))


if __name__ == "__main__":
    sys.exit(main())
