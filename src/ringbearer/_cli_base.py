"""What every CLI command shares: exit codes, options, the typed call to the daemon, output.

Kept light on purpose: a command that talks to the daemon imports only the
protocol and its views, never the daemon's own parts (measured with
``python -X importtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import RingbearerError

if TYPE_CHECKING:
    from .control._protocol import Asks

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C in the middle of a long change (what was done is printed)
DEFAULT_CONFIG = "config.toml"
SYSTEM_SOCKET = "/run/ringbearer/ringbearer.sock"

R = TypeVar("R")
Command = Callable[[argparse.Namespace], int]


class UsageError(RingbearerError):
    """The command line or an input file is wrong (exit 2)."""


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Epilogs as written (the exit codes), and each option's default after its help."""


def exits(*codes: str) -> str:
    """An epilog listing a command's exit codes, one ``N  meaning`` a line."""
    return "exit codes:\n" + "\n".join(f"  {code}" for code in codes)


READ_EXITS = exits("0  done", "2  bad usage", "3  the daemon could not be reached")
CHANGE_EXITS = exits(
    "0  done",
    "1  the daemon refused (the message says why: a role, the wedding-day freeze, ...)",
    "2  bad usage",
    "3  the daemon could not be reached",
)


def add_config(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS if nested else None,
        metavar="FILE",
        help=f"config file ($RINGBEARER_CONFIG, else {DEFAULT_CONFIG})",
    )


def add_daemon(
    parser: argparse.ArgumentParser, *, json_output: bool = True, nested: bool = False
) -> None:
    """The options of a command that talks to the running daemon."""
    add_config(parser, nested=nested)
    parser.add_argument(
        "--socket",
        default=argparse.SUPPRESS if nested else None,
        metavar="PATH",
        help="the daemon's control socket ($RINGBEARER_SOCKET, else the config's socket, "
        f"else {SYSTEM_SOCKET})",
    )
    if json_output:
        parser.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS if nested else False,
            help="print the reply as JSON instead of text",
        )


def config_path(args: argparse.Namespace) -> Path:
    given = getattr(args, "config", None)
    return Path(given or os.environ.get("RINGBEARER_CONFIG") or DEFAULT_CONFIG)


def socket_path(args: argparse.Namespace) -> Path:
    """--socket, then $RINGBEARER_SOCKET, then the config's socket, then the system one."""
    if getattr(args, "socket", None):
        return Path(args.socket)
    if os.environ.get("RINGBEARER_SOCKET"):
        return Path(os.environ["RINGBEARER_SOCKET"])
    config = config_path(args)
    if config.exists():
        from ._daemon_settings import socket_path_of

        return socket_path_of(config)
    return Path(SYSTEM_SOCKET)


def call(args: argparse.Namespace, request: Asks[R], timeout: float | None = 30.0) -> R:
    """Send one typed request to the daemon; its typed reply."""
    from .control._client import Client

    with Client(socket_path(args), timeout=timeout) as client:
        return client.call(request)


def to_json(value: Any) -> str:
    """A reply (or any attrs value) as indented JSON, through the project's one converter."""
    from .control._protocol import converter

    return json.dumps(converter().unstructure(value), indent=2, default=str)


def show(args: argparse.Namespace, reply: R, text: Callable[[R], str]) -> None:
    """Print a reply as text, or as JSON with ``--json``."""
    print(to_json(reply) if getattr(args, "json", False) else text(reply))


def requester() -> str:
    """Who asks, for the audit log: the daemon records what the client says."""
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        name = "unknown"
    return f"{name} (uid {os.getuid()})"


def positive_seconds(text: str) -> float:
    """An argparse type: a duration over zero."""
    from ._cli_times import duration

    try:
        seconds = duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero seconds")
    return seconds


def seconds(text: str) -> float:
    """An argparse type: a duration (zero allowed)."""
    from ._cli_times import duration

    try:
        return duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def time_ahead(text: str) -> float:
    """An argparse type: a time in the future (a duration from now, ISO, Unix)."""
    import time

    from ._cli_times import ahead

    try:
        return ahead(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def time_back(text: str) -> float:
    """An argparse type: a time back (a duration back from now, ISO, Unix)."""
    import time

    from ._cli_times import back

    try:
        return back(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def stderr(line: str) -> None:
    print(f"ringbearer: {line}", file=sys.stderr)


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above zero")
    return value
