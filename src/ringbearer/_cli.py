"""The ``ringbearer`` command: runs the daemon, and talks to a running one.

Exit codes scripts can rely on:

* 0 — done;
* 1 — the daemon refused the request (its error is printed);
* 2 — bad usage, or an invalid config file;
* 3 — the daemon could not be reached.

Each command's ``--help`` says which of these it uses, and for what.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from ._errors import ConfigError, ControlError, RequestError, RingbearerError
from ._views import (
    CLEAR,
    config_document,
    event_line,
    format_changed,
    format_dead_letter,
    format_dead_letters,
    format_status,
    progress_bar,
    render_top,
    starter_document,
    to_toml,
    top_rows,
)

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_CONFIG = "config.toml"
SYSTEM_SOCKET = "/run/ringbearer/ringbearer.sock"
SEND_CHUNK = 1000
ID_CHUNK = 1000  # dead letters replayed or purged a request
EXIT_INTERRUPTED = 130  # Ctrl-C in the middle of a replay or purge (what was done is printed)


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


STARTER_HEADER = """ringbearer configuration, written by `ringbearer config init`.

It runs against the built-in sandbox (a simulator of every provider), so it
works with no credentials. For production set [sandbox] enabled = false and
provide each secret named below through its environment variable or a
systemd credential ({ credential = "NAME" }); secrets are never written here.
Integrations inherit [defaults]; groups list their members in failover order.
`ringbearer config show` prints every setting in effect."""


def cmd_config_init(args: argparse.Namespace) -> int:
    path = _config_path(args)
    text = to_toml(starter_document(), header=STARTER_HEADER)
    try:
        with path.open("w" if args.force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        print(f"ringbearer: {path} exists; --force overwrites it", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        raise RingbearerError(f"cannot write {path}: {exc.strerror or exc}") from exc
    _print(args, {"path": str(path)}, lambda r: f"wrote {r['path']}")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    from ._config import load

    config = load(_config_path(args))
    document = config_document(config)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        header = f"The config in effect from {config.source}, every default filled in."
        sys.stdout.write(to_toml(document, header=header))
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
    if args.deliver_by is not None:
        message["deliver_by"] = args.deliver_by
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
        unknown = set(obj) - {"target", "payload", "priority", "key", "deliver_by"}
        if unknown:
            raise UsageError(f"{path}:{number}: unknown fields {', '.join(sorted(unknown))}")
        if isinstance(obj.get("deliver_by"), str):
            try:
                obj["deliver_by"] = parse_when(obj["deliver_by"], time.time())
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: deliver_by: {exc}") from None
        messages.append(obj)
    if not messages:
        raise UsageError(f"{path}: no messages")
    yield from messages


def cmd_pause(args: argparse.Namespace) -> int:
    result = _call(args, "pause", {"name": args.name, "force": args.force})
    _print(args, result, lambda r: f"{r['name']}: paused")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    result = _call(args, "resume", {"name": args.name, "force": args.force})
    _print(args, result, lambda r: f"{r['name']}: resumed")
    return EXIT_OK


def cmd_wedding_day(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {}
    if args.state is not None:
        request["state"] = args.state
    if args.until is not None:
        if args.state not in ("on", "off"):
            raise UsageError("--until goes with on or off")
        request["until"] = args.until
    result = _call(args, "wedding-day", request)
    _print(args, result, _mode_text)
    return EXIT_OK


def _mode_text(r: dict[str, Any]) -> str:
    line = "wedding-day mode " + ("on" if r["wedding_day"] else "off")
    if r["detail"]:
        line += f" ({r['detail']})"
    if r["override"] is None:
        line += "; following the calendar"
    return line


def cmd_alerts(args: argparse.Namespace) -> int:
    if args.action == "ack":
        if args.id is None:
            raise UsageError("alerts ack needs the alert's ID")
        result = _call(args, "alerts-ack", {"id": args.id})
        _print(args, result, lambda r: f"alert {r['id']} acknowledged: {r['summary']}")
        return EXIT_OK
    result = _call(args, "alerts")
    _print(args, result, _alerts_text)
    return EXIT_OK


def _alerts_text(r: dict[str, Any]) -> str:
    rows = [
        f"{a['id']:>4}  {a['severity']:<8}  {'acked' if a['acked'] else 'open':<5}  {a['summary']}"
        for a in r["alerts"]
    ]
    return "\n".join(rows) or "no open alerts"


def cmd_preflight(args: argparse.Namespace) -> int:
    import functools

    import trio

    from ._config import load
    from ._preflight import format_report, preflight_as_configured

    config = load(_config_path(args))
    check = functools.partial(preflight_as_configured, config, timeout=args.timeout)
    report = trio.run(check)  # starts the sandbox simulator in-process when it is on
    _print(args, report.to_json(), lambda _: format_report(report))
    return report.exit_code  # 0 ready (with or without warnings), 1 not ready


def cmd_breaker(args: argparse.Namespace) -> int:
    result = _call(args, "breaker", {"name": args.name, "action": args.action, "force": args.force})
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
    kinds = [k for given in args.kind or () for k in given.split(",") if k]
    if kinds:
        cmd_args["kinds"] = kinds
    result = _call(args, "audit", cmd_args)
    _print(args, result, lambda r: "\n".join(event_line(e) for e in r["events"]) or "no events")
    return EXIT_OK


DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SINCE_FORMS = (
    "a Unix time (1795874400), an ISO 8601 time (2026-11-28T14:00, local time without a zone;"
    " 2026-11-28T14:00Z) or a duration back from now (90s, 15m, 2h, 1d)"
)


def parse_duration(text: str) -> float | None:
    """``90s``, ``15m``, ``2h``, ``1d`` in seconds; None if ``text`` is not one."""
    found = DURATION.match(text.strip())
    return None if found is None else float(found.group(1)) * UNIT_SECONDS[found.group(2)]


def parse_since(text: str, now: float) -> float:
    """``--since``: a Unix time, an ISO 8601 time or a duration back from ``now``."""
    duration = parse_duration(text)
    if duration is not None:
        return now - duration
    with contextlib.suppress(ValueError):
        number = float(text)
        if math.isfinite(number):
            return number
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give {SINCE_FORMS}") from None
    return when.timestamp()  # naive: local time


def parse_when(text: str, now: float) -> float:
    """A moment ahead: a duration from ``now`` (``2h``), an ISO 8601 time or a Unix time."""
    duration = parse_duration(text)
    if duration is not None:
        return now + duration
    return parse_since(text, now)


def _when_arg(text: str) -> float:
    try:
        return parse_when(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _since_arg(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds_arg(text: str) -> float:
    """``--older-than``: seconds, or a duration such as ``7d``."""
    seconds = parse_duration(text)
    if seconds is None:
        with contextlib.suppress(ValueError):
            seconds = float(text)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds (3600) or 90s, 15m, 2h, 1d"
        )
    return seconds


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


# -- top ------------------------------------------------------------------------------------


def cmd_top(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        if args.once:
            _top_once(args)
        else:
            _top_live(args)
    return EXIT_OK


def _snapshot(args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    status: dict[str, Any] = _call(args, "status")
    return status, time.monotonic()


def _elapsed(
    previous: tuple[dict[str, Any], float] | None, current: tuple[dict[str, Any], float]
) -> float:
    """Seconds between two snapshots, by the daemon's own clock when it can tell."""
    if previous is None:
        return 0.0
    by_daemon = current[0]["uptime_seconds"] - previous[0]["uptime_seconds"]
    return by_daemon if by_daemon > 0 else current[1] - previous[1]


def _top_once(args: argparse.Namespace) -> None:
    """Two snapshots an interval apart (rates need two), one frame."""
    first = _snapshot(args)
    time.sleep(args.interval)
    second = _snapshot(args)
    _frame(args, first[0], second[0], _elapsed(first, second), clear=False)


def _top_live(args: argparse.Namespace) -> None:
    clear = sys.stdout.isatty() and not args.json
    previous: tuple[dict[str, Any], float] | None = None
    while True:
        current = _snapshot(args)
        before = previous[0] if previous else None
        _frame(args, before, current[0], _elapsed(previous, current), clear=clear)
        previous = current
        time.sleep(args.interval)


def _frame(
    args: argparse.Namespace,
    previous: dict[str, Any] | None,
    current: dict[str, Any],
    elapsed: float,
    *,
    clear: bool,
) -> None:
    if args.json:  # one object a frame: JSON lines when live
        model = top_rows(previous, current, elapsed)
        print(json.dumps(model, indent=2 if args.once else None), flush=True)
        return
    frame = render_top(previous, current, elapsed, refresh=None if args.once else args.interval)
    sys.stdout.write((CLEAR if clear else "") + frame + "\n")
    sys.stdout.flush()


# -- dead letters ----------------------------------------------------------------------------


def cmd_dead_letters(args: argparse.Namespace) -> int:
    cmd_args: dict[str, Any] = {"limit": args.limit}
    if args.target:
        cmd_args["target"] = args.target
    result = _call(args, "dead-letters", cmd_args)
    _print(args, result, lambda r: format_dead_letters(r["dead_letters"]))
    return EXIT_OK


def cmd_dead_letter_show(args: argparse.Namespace) -> int:
    _print(args, _call(args, "dead-letter", {"id": args.id}), format_dead_letter)
    return EXIT_OK


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    return _change_dead(args, "dead-letters-replay", "replayed", {"target": args.target})


def cmd_dead_letters_purge(args: argparse.Namespace) -> int:
    filters = {"target": args.target, "older_than": args.older_than}
    return _change_dead(args, "dead-letters-purge", "purged", filters)


def _change_dead(args: argparse.Namespace, cmd: str, verb: str, filters: dict[str, Any]) -> int:
    """Replay or purge in chunks of ID_CHUNK, with a progress bar on a terminal; summarise."""
    given = {k: v for k, v in filters.items() if v is not None}
    if bool(args.ids) == bool(args.all):
        raise UsageError(f"{cmd.rpartition('-')[2]} takes either ID... or --all")
    if args.ids and given:
        options = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{options} only go with --all")
    progress = _Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    done: list[int] = []
    skipped: list[int] = []
    try:
        chunks = _by_ids(args, cmd, verb, skipped) if args.ids else _by_all(args, cmd, verb, given)
        for ids, total in chunks:
            done.extend(ids)
            if progress:
                progress.show(len(done) + len(skipped), total)
    except (RequestError, ControlError, KeyboardInterrupt) as exc:
        if progress:
            progress.end()
        if done:
            print(f"{len(done)} dead letter(s) were {verb} before this stopped", file=sys.stderr)
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        raise
    if progress:
        progress.end()
    _print(args, {verb: done, "skipped": skipped}, lambda r: format_changed(verb, done, skipped))
    return EXIT_REFUSED if skipped else EXIT_OK


ChunkResults = Iterator[tuple[list[int], int]]  # (ids done by one request, how many in all)


def _by_ids(args: argparse.Namespace, cmd: str, verb: str, skipped: list[int]) -> ChunkResults:
    ids = list(dict.fromkeys(args.ids))
    who = _requester()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        result = _call(args, cmd, {"ids": chunk, "limit": len(chunk), "by": who}, timeout=120.0)
        skipped.extend(result["skipped"])
        yield result[verb], len(ids)


def _by_all(args: argparse.Namespace, cmd: str, verb: str, filters: dict[str, Any]) -> ChunkResults:
    """Every matching dead letter, a chunk at a time, each chunk above the last one's ids.

    The cursor (``after``) also keeps a replayed message that fails again
    from being taken a second time in the same run.
    """
    request: dict[str, Any] = {**filters, "all": True, "limit": ID_CHUNK, "by": _requester()}
    after, count = 0, 0
    while True:
        result = _call(args, cmd, {**request, "after": after}, timeout=120.0)
        ids = result[verb]
        count += len(ids)
        yield ids, count + result["remaining"]
        if not ids or not result["remaining"]:
            return
        after = ids[-1]


def _requester() -> str:
    """Who asks, for the audit log: the daemon records what the client says."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        name = "unknown"
    return f"{name} (uid {os.getuid()})"


class _Progress:
    """A progress bar on a terminal, redrawn in place (see ``progress_bar``)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def show(self, done: int, total: int) -> None:
        self.stream.write(progress_bar(done, total))
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def cmd_reload(args: argparse.Namespace) -> int:
    result = _call(args, "reload", {"force": args.force}, timeout=120)
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


# -- the parser ---------------------------------------------------------------------------

Command = Callable[..., argparse.ArgumentParser]


def _common(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    # A nested action's options must not reset what its parent parsed: argparse
    # copies every default of the sub-parser over the parent's values.
    unset: Any = argparse.SUPPRESS if nested else None
    flag: Any = argparse.SUPPRESS if nested else False
    parser.add_argument(
        "-c", "--config", default=unset, help=f"config file (default: {DEFAULT_CONFIG})"
    )
    parser.add_argument("--socket", default=unset, help="control socket of the running daemon")
    parser.add_argument(
        "--json", action="store_true", default=flag, help="print JSON instead of text"
    )


def _exits(*codes: str) -> str:
    return "exit codes:\n" + "\n".join(f"  {code}" for code in codes)


READ_EXITS = _exits("0  done", "2  bad usage", "3  the daemon could not be reached")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringbearer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ringbearer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, fn: Callable[[argparse.Namespace], int], help: str, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)
        p.set_defaults(fn=fn)
        return p

    command("run", cmd_run, "run the daemon in the foreground")
    p = command("simulate", cmd_simulate, "run the provider simulator on its own")
    p.add_argument("--listen", default="127.0.0.1:8700", help="HTTP host:port")
    p.add_argument("--smtp", default="127.0.0.1:2525", help="SMTP host:port ('' for none)")
    p.add_argument("--seed", type=int, default=0)
    _add_config(sub)
    command("status", cmd_status, "show each integration's state", READ_EXITS)
    _add_top(command)
    p = command("send", cmd_send, "submit one message, or a JSON-lines file of them")
    p.add_argument("target", nargs="?", help="integration or group")
    p.add_argument("--payload", help="the message payload, as JSON")
    p.add_argument("--priority", default="normal", choices=("critical", "normal", "bulk"))
    p.add_argument("--key", help="idempotency key (default: generated)")
    p.add_argument(
        "--file",
        help='JSON lines: {"target", "payload", "priority"?, "key"?, "deliver_by"?}',
    )
    p.add_argument(
        "--deliver-by",
        type=_when_arg,
        metavar="WHEN",
        help="a deadline: a duration from now (2h), an ISO time or a Unix time",
    )
    force = "needed while wedding-day mode freezes changes; logged as forced"
    for name, fn in (("pause", cmd_pause), ("resume", cmd_resume)):
        p = command(name, fn, f"{name} an integration or a group")
        p.add_argument("name")
        p.add_argument("--force", action="store_true", help=force)
    p = command("breaker", cmd_breaker, "force a breaker open or closed, or reset it")
    p.add_argument("name")
    p.add_argument("action", choices=("open", "close", "reset"))
    p.add_argument("--force", action="store_true", help=force)
    p = command(
        "wedding-day",
        cmd_wedding_day,
        "show wedding-day mode and why; or turn it on or off (until a time), or back to auto",
    )
    p.add_argument("state", nargs="?", choices=("on", "off", "auto"))
    p.add_argument("--until", type=_when_arg, metavar="WHEN", help="2h, an ISO time or Unix time")
    p = command("alerts", cmd_alerts, "list open alerts, or acknowledge one (stops escalation)")
    p.add_argument("action", nargs="?", choices=("list", "ack"), default="list")
    p.add_argument("id", nargs="?", type=int)
    p = command(
        "preflight",
        cmd_preflight,
        "check every integration's settings, secrets and provider, sending nothing",
        _exits("0  ready (perhaps with warnings)", "1  not ready", "2  an invalid config"),
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each check")
    p = command("wait", cmd_wait, "wait until nothing is queued or in flight (exit 1 on timeout)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument(
        "--breaker",
        metavar="NAME=STATE",
        help="instead, wait until a breaker is closed, half_open or open",
    )
    _add_audit(command)
    _add_dead_letters(command)
    p = command("reload", cmd_reload, "read the config file again and apply it (as SIGHUP does)")
    p.add_argument("--force", action="store_true", help=force)
    p = command("crash", cmd_crash, "sandbox only: crash an actor on its next attempt")
    p.add_argument("name")
    return parser


def _add_config(sub: Any) -> None:
    p = sub.add_parser("config", help="write, show or check a config file")
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    for name, fn, help, epilog in (
        (
            "check",
            cmd_config_check,
            "print every problem; exit 2 if any",
            _exits("0  the config is valid", "2  it is not: every problem is printed"),
        ),
        (
            "init",
            cmd_config_init,
            "write a starter config (sandbox on, one email group, the defaults)",
            _exits("0  written", "1  the file exists (give --force) or cannot be written"),
        ),
        (
            "show",
            cmd_config_show,
            "print the config in effect as TOML: every default, secrets as their references",
            _exits("0  printed", "2  the config is invalid: every problem is printed"),
        ),
    ):
        action = actions.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(action)
        action.set_defaults(fn=fn)
        if name == "init":
            action.add_argument("--force", action="store_true", help="overwrite an existing file")


def _add_top(command: Command) -> None:
    p = command(
        "top",
        cmd_top,
        "a live view: actors, queues by priority, in flight, delivery rates, restarts, mode",
        _exits(
            "0  Ctrl-C, or the frame printed with --once",
            "2  bad usage",
            "3  the daemon could not be reached (or went away)",
        ),
    )
    p.add_argument(
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 1); rates are over this interval",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="print one frame (after one interval, for the rates) and exit",
    )


def _add_audit(command: Command) -> None:
    p = command(
        "audit",
        cmd_audit,
        "print the audit log, oldest first",
        READ_EXITS.replace("bad usage", "bad usage (a --since that is not a time)"),
    )
    p.add_argument("--since", type=_since_arg, metavar="WHEN", help=f"from WHEN: {SINCE_FORMS}")
    p.add_argument("--message", type=int, metavar="ID", help="only this message's events")
    p.add_argument(
        "--kind",
        action="append",
        metavar="K",
        help="only events of kind K (repeat it, or K1,K2): submitted, attempted, delivered, "
        "retried, failed_over, dead_lettered, replayed, purged, breaker_changed, ...",
    )
    p.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N events")


CHANGE_EXITS = _exits(
    "0  done",
    "1  the daemon refused (this needs the operate role), or an ID was not a dead letter"
    " (the others were done)",
    "2  bad usage",
    "3  the daemon could not be reached",
    "130  interrupted (what was done so far is printed)",
)


def _add_dead_letters(command: Command) -> None:
    p = command(
        "dead-letters",
        cmd_dead_letters,
        "list dead letters (the default), show one, replay or purge them",
        READ_EXITS,
    )
    _list_options(p)
    actions = p.add_subparsers(dest="dead_letters_command", metavar="ACTION")

    def action(name: str, fn: Callable[[argparse.Namespace], int], help: str, epilog: str) -> Any:
        a = actions.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(a, nested=True)
        a.set_defaults(fn=fn)
        return a

    _list_options(
        action("list", cmd_dead_letters, "list dead letters, oldest first", READ_EXITS), nested=True
    )
    a = action(
        "show",
        cmd_dead_letter_show,
        "one dead letter: the message, its payload, its reason and its history",
        _exits("0  done", "1  no such dead letter", "3  the daemon could not be reached"),
    )
    a.add_argument("id", type=int, metavar="ID")
    a = action(
        "replay",
        cmd_dead_letters_replay,
        "queue dead letters again as fresh work (same idempotency key, attempts from 0)",
        CHANGE_EXITS,
    )
    _selection_options(a)
    a = action(
        "purge",
        cmd_dead_letters_purge,
        "delete dead letters from the queue's table; the audit log keeps their history",
        CHANGE_EXITS,
    )
    _selection_options(a)
    a.add_argument(
        "--older-than",
        type=_seconds_arg,
        metavar="SECONDS",
        help="with --all: only those dead for longer (seconds, or 90s, 15m, 2h, 1d)",
    )


def _list_options(p: argparse.ArgumentParser, nested: bool = False) -> None:
    limit: Any = argparse.SUPPRESS if nested else 1000
    target: Any = argparse.SUPPRESS if nested else None
    p.add_argument("--limit", type=int, default=limit, metavar="N", help="at most N (1000)")
    p.add_argument("--target", default=target, help="only those sent to this integration or group")


def _selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="these dead letters")
    p.add_argument("--all", action="store_true", help="every dead letter (of --target)")
    p.add_argument("--target", help="with --all: only those sent to this integration or group")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except BrokenPipeError:
        # The reader went away (`ringbearer status | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
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
