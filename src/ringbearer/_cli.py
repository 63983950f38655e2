"""The ringbearer command: runs the daemon, and talks to a running one.

Exit codes scripts can rely on:

* 0 — done;
* 1 — the daemon refused the request (its error is printed);
* 2 — bad usage, or an invalid config file;
* 3 — the daemon could not be reached.

Each command's ``--help`` says which of these it uses, and for what. The
commands live by area in ``_cli_*`` modules; each imports what it needs only
when it runs, so a call to the daemon starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from ._cli_base import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Command,
    Formatter,
    UsageError,
    add_daemon,
    stderr,
)
from ._errors import ConfigError, ControlError, ErrorCode, RequestError, RingbearerError

DESCRIPTION = (
    "ringbearer carries a wedding-vendor platform's outbound work (email, analytics, CRMs, "
    "social posts, alerts) to the services that do it, and keeps carrying it when they fail. "
    "`ringbearer run` runs the daemon; the other commands talk to a running one."
)
EPILOG = """exit codes:
  0  done
  1  the daemon refused the request (its error is printed)
  2  bad usage, or an invalid config file
  3  the daemon could not be reached

`ringbearer COMMAND --help` describes each command, its options and its exit codes."""

# Error codes that mean the request itself was wrong: usage errors, as argparse's.
USAGE_CODES = frozenset(
    {ErrorCode.BAD_ARGS, ErrorCode.BAD_REQUEST, ErrorCode.BAD_JSON, ErrorCode.TOO_MANY}
)


# The module that adds each command. A call builds only its own command's parser, so it
# imports nothing the other commands need (``python -X importtime``); help builds them all.
COMMAND_MODULES = {
    "run": "_cli_config",
    "config": "_cli_config",
    "status": "_cli_operate",
    "top": "_cli_operate",
    "pause": "_cli_operate",
    "resume": "_cli_operate",
    "breaker": "_cli_operate",
    "wedding-day": "_cli_operate",
    "alerts": "_cli_operate",
    "reload": "_cli_operate",
    "crash": "_cli_operate",
    "preflight": "_cli_operate",
    "send": "_cli_messages",
    "wait": "_cli_messages",
    "audit": "_cli_messages",
    "dead-letters": "_cli_messages",
    "suppression": "_cli_deliverability",
    "deliverability": "_cli_deliverability",
    "subject": "_cli_privacy",
    "keys": "_cli_privacy",
    "template": "_cli_templates",
    "growth": "_cli_growth",
    "experiment": "_cli_growth",
    "sandbox": "_cli_sandbox",
    "simulate": "_cli_sandbox",
}
MODULES = (
    "_cli_config",
    "_cli_operate",
    "_cli_messages",
    "_cli_deliverability",
    "_cli_privacy",
    "_cli_templates",
    "_cli_growth",
    "_cli_sandbox",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command's, or with ``only`` that module's commands alone."""
    parser = argparse.ArgumentParser(
        prog="ringbearer", description=DESCRIPTION, epilog=EPILOG, formatter_class=Formatter
    )
    parser.add_argument("--version", action="version", version=f"ringbearer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, fn: Command, help: str, epilog: str | None = None, *, daemon: bool = True
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help, description=help, epilog=epilog, formatter_class=Formatter
        )
        if daemon:
            add_daemon(p)
        else:
            from ._cli_base import add_config

            add_config(p)
        p.set_defaults(fn=fn)
        return p

    for name in MODULES if only is None else (only,):
        module = importlib.import_module(f".{name}", __package__)
        if name == "_cli_config":
            module.add_commands(command, sub)
        elif name == "_cli_sandbox":
            module.add_commands(sub, add_daemon)
        else:
            module.add_commands(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(COMMAND_MODULES.get(given[0]) if given else None)
    args = parser.parse_args(given)
    if getattr(args, "fn", None) is None:
        parser.print_help()
        return EXIT_OK
    try:
        code: int = args.fn(args)
        return code
    except BrokenPipeError:
        # The reader went away (`ringbearer status | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (ConfigError, UsageError, ControlError, RequestError, RingbearerError) as exc:
        code = _failed(exc)
        if code == EXIT_USAGE and not isinstance(exc, ConfigError):
            print(_command_parser(parser, given).format_usage().rstrip(), file=sys.stderr)
        return code


def _failed(exc: RingbearerError) -> int:
    """One line (or the config's problems) on stderr, and the exit code for it."""
    if isinstance(exc, ConfigError):
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, RequestError):
        stderr(f"{exc.code}: {exc.message}")
        return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_REFUSED
    stderr(str(exc))
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_UNREACHABLE if isinstance(exc, ControlError) else EXIT_REFUSED


def _command_parser(
    parser: argparse.ArgumentParser, given: Sequence[str]
) -> argparse.ArgumentParser:
    """The (sub-)parser of the command ``given`` names: its usage line goes with a usage error."""
    for token in given:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subparsers and token in subparsers[0].choices:
            parser = subparsers[0].choices[token]
    return parser


if __name__ == "__main__":
    sys.exit(main())
