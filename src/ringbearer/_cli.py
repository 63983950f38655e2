"""The ``ringbearer`` command: runs the daemon, and talks to a running one.

Exit codes scripts can rely on:

* 0 — done;
* 1 — the daemon refused the request (its error is printed);
* 2 — bad usage, or an invalid config file;
* 3 — the daemon could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._errors import ConfigError, ControlError, RequestError, RingbearerError

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_CONFIG = "config.toml"
SYSTEM_SOCKET = "/run/ringbearer/ringbearer.sock"
SEND_CHUNK = 1000


class UsageError(RingbearerError):
    """The command line or an input file is wrong."""


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("RINGBEARER_CONFIG") or DEFAULT_CONFIG)


def _socket_path(args: argparse.Namespace) -> Path:
    """--socket, then $RINGBEARER_SOCKET, then the config's socket, then the system one."""
    if args.socket:
        return Path(args.socket)
    if os.environ.get("RINGBEARER_SOCKET"):
        return Path(os.environ["RINGBEARER_SOCKET"])
    config = _config_path(args)
    if config.exists():
        from ._config import socket_path_of

        return socket_path_of(config)
    return Path(SYSTEM_SOCKET)


def _call(
    args: argparse.Namespace,
    cmd: str,
    cmd_args: dict[str, Any] | None = None,
    timeout: float | None = 30.0,
) -> Any:
    from .control import Client

    with Client(_socket_path(args), timeout=timeout) as client:
        return client.call(cmd, cmd_args)


def _print(args: argparse.Namespace, result: Any, text: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text(result))


# -- commands -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from . import _daemon, _logging
    from ._config import load, unresolved_secrets

    config = load(_config_path(args))
    missing = [] if config.sandbox.enabled else unresolved_secrets(config)
    if missing:
        raise ConfigError(str(config.source), missing)
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


def cmd_simulate(args: argparse.Namespace) -> int:
    import trio

    from ._converter import parse_host_port
    from .simulator import run_simulator

    host, port = parse_host_port(args.listen)
    smtp_port = parse_host_port(args.smtp)[1] if args.smtp else None
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run_simulator, host, port, smtp_port, args.seed)
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    from ._config import load, unresolved_secrets

    path = _config_path(args)
    config = load(path)
    missing = [] if config.sandbox.enabled else unresolved_secrets(config)
    if missing:
        raise ConfigError(str(config.source), missing)
    print(
        f"{config.source}: ok ({len(config.integrations)} integrations, "
        f"{len(config.groups)} groups)"
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    _print(args, _call(args, "status"), format_status)
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    messages = list(_messages_from_args(args))
    accepted: list[dict[str, Any]] = []
    for start in range(0, len(messages), SEND_CHUNK):
        chunk = messages[start : start + SEND_CHUNK]
        try:
            result = _call(args, "submit", {"messages": chunk}, timeout=120.0)
        except RequestError:
            if accepted:
                print(
                    f"{len(accepted)} message(s) were accepted before this error", file=sys.stderr
                )
            raise
        accepted.extend(result["accepted"])
    if args.json:
        print(json.dumps({"accepted": accepted}, indent=2))
    elif len(accepted) == 1:
        a = accepted[0]
        print(f"accepted id={a['id']} key={a['key']}" + (" (duplicate)" if a["duplicate"] else ""))
    else:
        duplicates = sum(1 for a in accepted if a["duplicate"])
        print(f"accepted {len(accepted)} messages ({duplicates} duplicates)")
    return EXIT_OK


def _messages_from_args(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if args.file:
        if args.target or args.payload:
            raise UsageError("give either TARGET --payload or --file, not both")
        yield from _read_jsonl(Path(args.file))
        return
    if not args.target or args.payload is None:
        raise UsageError("send needs TARGET and --payload JSON (or --file FILE)")
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc}") from exc
    message: dict[str, Any] = {"target": args.target, "payload": payload, "priority": args.priority}
    if args.key:
        message["key"] = args.key
    yield message


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every line is checked before anything is sent: a bad file sends nothing."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    messages = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON: {exc}") from exc
        if not isinstance(obj, dict) or "target" not in obj or "payload" not in obj:
            raise UsageError(
                f"{path}:{number}: each line needs an object with 'target' and 'payload'"
            )
        unknown = set(obj) - {"target", "payload", "priority", "key"}
        if unknown:
            raise UsageError(f"{path}:{number}: unknown fields {', '.join(sorted(unknown))}")
        messages.append(obj)
    if not messages:
        raise UsageError(f"{path}: no messages")
    yield from messages


def cmd_pause(args: argparse.Namespace) -> int:
    result = _call(args, "pause", {"name": args.name})
    _print(args, result, lambda r: f"{r['name']}: paused")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    result = _call(args, "resume", {"name": args.name})
    _print(args, result, lambda r: f"{r['name']}: resumed")
    return EXIT_OK


def cmd_breaker(args: argparse.Namespace) -> int:
    result = _call(args, "breaker", {"name": args.name, "action": args.action})
    _print(
        args,
        result,
        lambda r: f"{r['name']}: breaker {r['breaker']}" + (" (forced)" if r["forced"] else ""),
    )
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"timeout": args.timeout}
    if args.breaker:
        request["breaker"] = args.breaker
    result = _call(args, "wait", request, timeout=args.timeout + 10)
    if args.breaker:
        _print(args, result, lambda r: f"{r['name']}: breaker {r['breaker']}")
        return EXIT_OK if result["reached"] else EXIT_REFUSED
    _print(args, result, lambda r: "idle" if r["idle"] else f"still busy: {r['queued']} left")
    return EXIT_OK if result["idle"] else EXIT_REFUSED


def cmd_audit(args: argparse.Namespace) -> int:
    cmd_args: dict[str, Any] = {"limit": args.limit}
    if args.since is not None:
        cmd_args["since"] = args.since
    if args.message is not None:
        cmd_args["message"] = args.message
    result = _call(args, "audit", cmd_args)
    _print(args, result, lambda r: "\n".join(_event_line(e) for e in r["events"]))
    return EXIT_OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    result = _call(args, "dead-letters", {"limit": args.limit})
    _print(
        args,
        result,
        lambda r: "\n".join(_dead_letter_line(d) for d in r["dead_letters"]) or "no dead letters",
    )
    return EXIT_OK


def _dead_letter_line(d: dict[str, Any]) -> str:
    return f"{d['message_id']:>8} {d['target']:<12} {d['integration'] or '-':<12} {d['reason']}"


def cmd_reload(args: argparse.Namespace) -> int:
    result = _call(args, "reload", {}, timeout=120)
    _print(args, result, _reload_text)
    return EXIT_OK


def _reload_text(r: dict[str, Any]) -> str:
    lines = [
        f"{label}: {', '.join(r[key])}"
        for key, label in (("added", "added"), ("removed", "removed"), ("changed", "re-tuned"))
        if r[key]
    ]
    if r["groups_changed"]:
        lines.append("groups: changed")
    if r["needs_restart"]:
        lines.append(f"kept until a restart: [{'], ['.join(r['needs_restart'])}]")
    return "\n".join(lines) or "reloaded: nothing changed"


def cmd_crash(args: argparse.Namespace) -> int:
    result = _call(args, "inject-crash", {"name": args.name})
    _print(args, result, lambda r: f"{r['name']}: crash armed for its next attempt")
    return EXIT_OK


def _event_line(e: dict[str, Any]) -> str:
    import datetime

    at = datetime.datetime.fromtimestamp(e["at"], datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    who = f" msg={e['message_id']}" if e["message_id"] is not None else ""
    where = f" {e['integration']}" if e["integration"] else ""
    detail = f" {json.dumps(e['detail'], separators=(',', ':'))}" if e["detail"] else ""
    return f"{at} {e['kind']}{where}{who}{detail}"


def format_status(status: dict[str, Any]) -> str:
    head = (
        f"ringbearer {status['version']} · protocol {status['protocol']} · "
        f"mode {status['mode']} · up {status['uptime_seconds']:.0f} s"
    )
    if status.get("sandbox"):
        head += f" · sandbox {status['sandbox']}"
    columns = (
        "INTEGRATION",
        "STATE",
        "BREAKER",
        "HEALTH",
        "CRIT",
        "NORM",
        "BULK",
        "FLIGHT",
        "RESTARTS",
        "DELIVERED",
        "LAST ERROR",
    )
    rows = [columns]
    for i in status["integrations"]:
        q = i["queued"]
        state = i["state"] + (" (paused)" if i["paused"] else "")
        breaker = i["breaker"] + ("*" if i["breaker_forced"] else "")
        rows.append(
            (
                i["name"],
                state,
                breaker,
                i["health"],
                str(q["critical"]),
                str(q["normal"]),
                str(q["bulk"]),
                str(i["in_flight"]),
                str(i["restarts"]),
                str(i["delivered"]),
                (i["last_error"] or "-")[:60],
            )
        )
    for name, g in status["groups"].items():
        q = g["queued"]
        rows.append(
            (
                f"{name} (group)",
                "paused" if g["paused"] else "-",
                "-",
                "-",
                str(q["critical"]),
                str(q["normal"]),
                str(q["bulk"]),
                str(g["in_flight"]),
                "-",
                "-",
                " → ".join(g["members"]),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(columns) - 1)]
    lines = [head, ""]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(lines)


# -- the parser ---------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help=f"config file (default: {DEFAULT_CONFIG})")
    parser.add_argument("--socket", help="control socket of the running daemon")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringbearer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ringbearer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        _common(p)
        p.set_defaults(fn=fn)
        return p

    command("run", cmd_run, "run the daemon in the foreground")
    p = command("simulate", cmd_simulate, "run the provider simulator on its own")
    p.add_argument("--listen", default="127.0.0.1:8700", help="HTTP host:port")
    p.add_argument("--smtp", default="127.0.0.1:2525", help="SMTP host:port ('' for none)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("config", help="check the config file")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="print every problem; exit 2 if any")
    _common(check)
    check.set_defaults(fn=cmd_config_check)
    command("status", cmd_status, "show each integration's state")
    p = command("send", cmd_send, "submit one message, or a JSON-lines file of them")
    p.add_argument("target", nargs="?", help="integration or group")
    p.add_argument("--payload", help="the message payload, as JSON")
    p.add_argument("--priority", default="normal", choices=("critical", "normal", "bulk"))
    p.add_argument("--key", help="idempotency key (default: generated)")
    p.add_argument("--file", help='JSON lines: {"target", "payload", "priority"?, "key"?}')
    for name, fn in (("pause", cmd_pause), ("resume", cmd_resume)):
        p = command(name, fn, f"{name} an integration or a group")
        p.add_argument("name")
    p = command("breaker", cmd_breaker, "force a breaker open or closed, or reset it")
    p.add_argument("name")
    p.add_argument("action", choices=("open", "close", "reset"))
    p = command("wait", cmd_wait, "wait until nothing is queued or in flight (exit 1 on timeout)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument(
        "--breaker",
        metavar="NAME=STATE",
        help="instead, wait until a breaker is closed, half_open or open",
    )
    p = command("audit", cmd_audit, "print the audit log")
    p.add_argument("--since", type=float, help="from this Unix time")
    p.add_argument("--message", type=int, help="only this message's events")
    p.add_argument("--limit", type=int, default=1000)
    p = command("dead-letters", cmd_dead_letters, "list dead letters")
    p.add_argument("--limit", type=int, default=1000)
    command("reload", cmd_reload, "read the config file again and apply it (as SIGHUP does)")
    p = command("crash", cmd_crash, "sandbox only: crash an actor on its next attempt")
    p.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"ringbearer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ControlError as exc:
        print(f"ringbearer: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RequestError as exc:
        print(f"ringbearer: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except RingbearerError as exc:
        print(f"ringbearer: {exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
