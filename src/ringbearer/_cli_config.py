"""CLI commands about the config and the daemon's own process: run, config check/init/show."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._cli_base import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Formatter,
    add_config,
    config_path,
    exits,
    stderr,
)
from ._errors import ConfigError, RingbearerError

AddCommand = Any

STARTER_HEADER = """ringbearer configuration, written by `ringbearer config init`.

It runs against the built-in sandbox (a simulator of every provider), so it
works with no credentials. For production set [sandbox] enabled = false and
provide each secret named below through its environment variable or a
systemd credential ({ credential = "NAME" }); secrets are never written here.
Integrations inherit [defaults]; groups list their members in failover order.
`ringbearer config show` prints every setting in effect."""


def _checked_config(args: argparse.Namespace) -> Any:
    from ._config import load, unresolved_secrets

    config = load(config_path(args))
    missing = [] if config.sandbox.enabled else unresolved_secrets(config)
    if missing:
        raise ConfigError(str(config.source), missing)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from . import _daemon, _logging

    config = _checked_config(args)
    _logging.setup(config.daemon.log_level)
    try:
        trio.run(lambda: _daemon.run(config))
    except BaseExceptionGroup as group:
        raise _sole_error(group) from None
    return EXIT_OK


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """A start-up failure reaches us wrapped in nurseries; show the error itself."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    return found


def cmd_config_check(args: argparse.Namespace) -> int:
    from ._views import plural

    config = _checked_config(args)
    integrations = plural(len(config.integrations), "integration")
    print(f"{config.source}: ok ({integrations}, {plural(len(config.groups), 'group')})")
    return EXIT_OK


def cmd_config_init(args: argparse.Namespace) -> int:
    from ._config_doc import starter_document, to_toml

    path = config_path(args)
    text = to_toml(starter_document(), header=STARTER_HEADER)
    try:
        with path.open("w" if args.force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        stderr(f"{path} exists; --force overwrites it")
        return EXIT_REFUSED
    except OSError as exc:
        raise RingbearerError(f"cannot write {path}: {exc.strerror or exc}") from exc
    print(f"wrote {path}")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    from ._config import load
    from ._config_doc import config_document, to_toml

    config = load(config_path(args))
    document = config_document(config)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        header = f"The config in effect from {config.source}, every default filled in."
        sys.stdout.write(to_toml(document, header=header))
    return EXIT_OK


def add_commands(command: AddCommand, sub: Any) -> None:
    command(
        "run",
        cmd_run,
        "run the daemon in the foreground (SIGTERM or Ctrl-C stops it cleanly)",
        exits("0  stopped cleanly", "1  it could not start or failed", "2  an invalid config"),
        daemon=False,
    )
    _add_config_actions(sub)


CONFIG_ACTIONS = (
    (
        "check",
        cmd_config_check,
        "print every problem; exit 2 if any",
        exits("0  the config is valid", f"{EXIT_USAGE}  it is not: every problem is printed"),
    ),
    (
        "init",
        cmd_config_init,
        "write a starter config (sandbox on, one email group, the defaults)",
        exits("0  written", "1  the file exists (give --force) or cannot be written"),
    ),
    (
        "show",
        cmd_config_show,
        "print the config in effect as TOML: every default, secrets as their references",
        exits("0  printed", "2  the config is invalid: every problem is printed"),
    ),
)


def _add_config_actions(sub: Any) -> None:
    p = sub.add_parser(
        "config",
        help="write, show or check a config file",
        description="write, show or check a config file",
        epilog=exits(
            "0  done",
            "1  init: the file exists or cannot be written",
            "2  bad usage, or an invalid config (every problem is printed)",
        ),
        formatter_class=Formatter,
    )
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    for name, fn, help, epilog in CONFIG_ACTIONS:
        action = actions.add_parser(
            name, help=help, description=help, epilog=epilog, formatter_class=Formatter
        )
        add_config(action)
        action.set_defaults(fn=fn)
        if name == "init":
            action.add_argument("--force", action="store_true", help="overwrite an existing file")
        if name == "show":
            action.add_argument("--json", action="store_true", help="print JSON instead of TOML")
