"""CLI commands about messages: send, wait, the audit log and dead letters."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs

from ._audit_kinds import EventKind
from ._cli_base import (
    CHANGE_EXITS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    READ_EXITS,
    Command,
    Formatter,
    UsageError,
    add_daemon,
    call,
    exits,
    positive_int,
    requester,
    seconds,
    show,
    stderr,
    time_ahead,
    time_back,
)
from ._cli_times import AHEAD_FORMS, BACK_FORMS
from ._errors import ControlError, RequestError

SEND_CHUNK = 1000  # messages a request
ID_CHUNK = 1000  # dead letters replayed or purged a request
LINE_FIELDS = {
    "target",
    "payload",
    "priority",
    "key",
    "deliver_by",
    "not_before",
    "category",
    "subjects",
    "template",
    "template_version",
    "vars",
    "wedding_date",
    "experiment",
    "unit",
    "invite",
    "inviter",
}
TIME_FIELDS = ("deliver_by", "not_before")  # a line may give them as the CLI's times ahead
EVENT_KINDS = tuple(k.value for k in EventKind)


# -- send ------------------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    from .control import MessageIn
    from .control._protocol import converter

    lines = list(_messages_from_args(args))
    structure = converter().structure
    messages = [structure(line, MessageIn) for line in lines]
    submit, size = _submitter(args)
    accepted: list[Any] = []
    refused: list[Any] = []
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        try:
            reply = submit(chunk)
        except RequestError:
            if accepted or refused:
                also = f" ({len(refused)} refused on their own)" if refused else ""
                stderr(f"{len(accepted)} message(s) were accepted before this error{also}")
            raise
        accepted.extend(reply.accepted)
        refused.extend(attrs.evolve(x, index=x.index + start) for x in reply.refused)
    _show_submitted(args, accepted, refused)
    return EXIT_REFUSED if refused else EXIT_OK


def _submitter(args: argparse.Namespace) -> tuple[Callable[[list[Any]], Any], int]:
    """How a chunk is submitted, and its size: over the control socket, or with ``--url``
    over HTTP (smaller chunks: each is one body within the listener's limit)."""
    from .control import Submit
    from .control._protocol import converter
    from .control._replies import SubmitReply

    if not args.url:
        return lambda chunk: call(args, Submit(chunk), timeout=120.0), SEND_CHUNK
    from ._cli_http import HTTP_CHUNK, submit_over_http, token_from_env

    token = token_from_env(args.token_env)
    wire = converter()

    def over_http(chunk: list[Any]) -> SubmitReply:
        reply = submit_over_http(args.url, token, [wire.unstructure(m) for m in chunk])
        try:
            return wire.structure(reply, SubmitReply)
        except Exception as exc:
            raise ControlError(f"unreadable reply from {args.url}: {exc}") from exc

    return over_http, HTTP_CHUNK


def _add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        metavar="URL",
        help="submit over HTTP to a node's public listener (https://host:port) instead of"
        " the control socket; the producer's token is read from --token-env",
    )
    p.add_argument(
        "--token-env",
        default="RINGBEARER_TOKEN",
        metavar="NAME",
        help="with --url: the environment variable holding the producer's bearer token",
    )


def _show_submitted(args: argparse.Namespace, accepted: list[Any], refused: list[Any]) -> None:
    """What was accepted, then each message refused on its own (its index in the input)."""
    from ._views import plural
    from .control._replies import SubmitReply

    if args.json:
        from ._cli_base import to_json

        print(to_json(SubmitReply(accepted, refused)))
        return
    if len(accepted) == 1:
        a = accepted[0]
        print(f"accepted id={a.id} key={a.key}" + (" (duplicate)" if a.duplicate else ""))
    elif accepted or not refused:
        duplicates = sum(1 for a in accepted if a.duplicate)
        print(f"accepted {plural(len(accepted), 'message')} ({plural(duplicates, 'duplicate')})")
    for x in refused:
        print(f"refused messages[{x.index}]: {x.code}: {x.reason}")


def _messages_from_args(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if args.file:
        if args.target or args.payload:
            raise UsageError("give either TARGET --payload or --file, not both")
        if args.template or args.template_version or args.vars:
            raise UsageError('with --file, each line names its own "template" and "vars"')
        yield from _read_jsonl(Path(args.file))
        return
    if not args.target or (args.payload is None and not args.template):
        raise UsageError("send needs TARGET and --payload JSON or --template (or --file FILE)")
    payload = {} if args.payload is None else _json_object(args.payload, "--payload")
    message: dict[str, Any] = {"target": args.target, "payload": payload, "priority": args.priority}
    message.update(_template_of(args))
    if args.key:
        message["key"] = args.key
    if args.deliver_by is not None:
        message["deliver_by"] = args.deliver_by
    if args.not_before is not None:
        message["not_before"] = args.not_before
    if args.category is not None:
        message["category"] = args.category
    if args.subject:
        message["subjects"] = list(args.subject)
    yield message


def _template_of(args: argparse.Namespace) -> dict[str, Any]:
    """``--template`` and its version and vars, as a message's fields (none without it)."""
    if not args.template:
        if args.template_version is not None or args.vars is not None:
            raise UsageError("--template-version and --vars go with --template NAME")
        return {}
    from ._cli_templates import read_vars

    fields: dict[str, Any] = {"template": args.template}
    fields["vars"] = {} if args.vars is None else read_vars(args.vars)
    if args.template_version is not None:
        fields["template_version"] = args.template_version
    return fields


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a JSON object ({{...}}), not {type(value).__name__}")
    return value


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every line is checked before anything is sent: a bad file sends nothing."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    messages = [_line(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not messages:
        raise UsageError(f"{path}: no messages")
    yield from messages


def _line(path: Path, number: int, line: str) -> dict[str, Any]:
    where = f"{path}:{number}"
    obj = _json_object(line, where)
    if "template" in obj:
        obj.setdefault("payload", {})
    if "target" not in obj or "payload" not in obj:
        raise UsageError(
            f"{where}: each line needs an object with 'target' and 'payload' (or 'template')"
        )
    if not isinstance(obj["payload"], dict):
        raise UsageError(f"{where}: 'payload' must be a JSON object")
    unknown = set(obj) - LINE_FIELDS
    if unknown:
        raise UsageError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    _check_subjects(where, obj.get("subjects"))
    _check_template(where, obj)
    for name in TIME_FIELDS:
        if isinstance(obj.get(name), str):
            from ._cli_times import ahead

            try:
                obj[name] = ahead(obj[name], time.time())
            except ValueError as exc:
                raise UsageError(f"{where}: {name}: {exc}") from None
    return obj


def _check_subjects(where: str, subjects: Any) -> None:
    """``subjects``, when a line gives it, is a list of identities (strings)."""
    if subjects is None:
        return
    if not isinstance(subjects, list) or not all(isinstance(x, str) for x in subjects):
        raise UsageError(f"{where}: 'subjects' must be a list of strings")


def _check_template(where: str, obj: dict[str, Any]) -> None:
    """A line's ``template`` is a name, its version a whole number, its ``vars`` an object."""
    if "template" not in obj:
        if "template_version" in obj or "vars" in obj:
            raise UsageError(f"{where}: 'template_version' and 'vars' go with 'template'")
        return
    if not isinstance(obj["template"], str) or not obj["template"]:
        raise UsageError(f"{where}: 'template' must be a template's name (a string)")
    version = obj.get("template_version")
    if version is not None and (type(version) is not int or version < 1):
        raise UsageError(f"{where}: 'template_version' must be a whole number above zero")
    if not isinstance(obj.get("vars", {}), dict):
        raise UsageError(f"{where}: 'vars' must be a JSON object")


# -- wait -------------------------------------------------------------------------------------


def cmd_wait(args: argparse.Namespace) -> int:
    from .control import Wait

    reply = call(args, Wait(args.timeout, args.breaker), timeout=args.timeout + 10)
    if args.breaker:
        show(args, reply, lambda r: f"{r.name}: breaker {r.breaker}")
    else:
        show(args, reply, lambda r: "idle" if r.idle else f"still busy: {r.queued} left")
    return EXIT_OK if reply.reached else EXIT_REFUSED


# -- the audit log ---------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from ._views import format_audit
    from .control import Audit

    kinds = [EventKind(k) for given in args.kind or () for k in given.split(",") if k]
    request = Audit(args.since, args.message, args.limit, kinds, args.before)
    show(args, call(args, request), lambda r: format_audit(r, "ringbearer audit"))
    return EXIT_OK


def _kinds(text: str) -> str:
    unknown = [k for k in text.split(",") if k and k not in EVENT_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown event kind {', '.join(unknown)}; known: {', '.join(EVENT_KINDS)}"
        )
    return text


# -- dead letters ---------------------------------------------------------------------------


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from ._views import format_dead_letters
    from .control import DeadLetters

    reply = call(args, DeadLetters(args.limit, args.target, args.before))
    show(args, reply, lambda r: format_dead_letters(r, "ringbearer dead-letters"))
    return EXIT_OK


def cmd_dead_letter_show(args: argparse.Namespace) -> int:
    from ._views import format_dead_letter
    from .control import DeadLetter

    show(args, call(args, DeadLetter(args.id)), format_dead_letter)
    return EXIT_OK


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    return _change_dead(args, "replayed", {"target": args.target})


def cmd_dead_letters_purge(args: argparse.Namespace) -> int:
    return _change_dead(args, "purged", {"target": args.target, "older_than": args.older_than})


def _change_dead(args: argparse.Namespace, verb: str, filters: dict[str, Any]) -> int:
    """Replay or purge in chunks of ID_CHUNK, with a progress bar on a terminal; summarise."""
    given = {k: v for k, v in filters.items() if v is not None}
    if bool(args.ids) == bool(args.all):
        raise UsageError(f"{'replay' if verb == 'replayed' else 'purge'} takes ID... or --all")
    if args.ids and given:
        raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in given)} go with --all")
    progress = _Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    done: list[int] = []
    skipped: list[int] = []
    try:
        chunks = _by_ids(args, verb, skipped) if args.ids else _by_all(args, verb, given)
        for ids, total in chunks:
            done.extend(ids)
            if progress:
                progress.show(len(done) + len(skipped), total)
    except (RequestError, ControlError, KeyboardInterrupt) as exc:
        if progress:
            progress.end()
        if done:
            stderr(f"{len(done)} dead letter(s) were {verb} before this stopped")
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        raise
    if progress:
        progress.end()
    _summarise(args, verb, done, skipped)
    return EXIT_REFUSED if skipped else EXIT_OK


def _summarise(args: argparse.Namespace, verb: str, done: list[int], skipped: list[int]) -> None:
    from ._views import format_changed

    if args.json:
        print(json.dumps({verb: done, "skipped": skipped}, indent=2))
    else:
        print(format_changed(verb, done, skipped))


ChunkResults = Iterator[tuple[list[int], int]]  # (ids done by one request, how many in all)


def _request(verb: str, **fields: Any) -> Any:
    from .control import PurgeDead, ReplayDead

    return ReplayDead(**fields) if verb == "replayed" else PurgeDead(**fields)


def _by_ids(args: argparse.Namespace, verb: str, skipped: list[int]) -> ChunkResults:
    ids = list(dict.fromkeys(args.ids))
    who = requester()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        reply = call(args, _request(verb, ids=chunk, limit=len(chunk), by=who), timeout=120.0)
        skipped.extend(reply.skipped)
        yield getattr(reply, verb), len(ids)


def _by_all(args: argparse.Namespace, verb: str, filters: dict[str, Any]) -> ChunkResults:
    """Every matching dead letter, a chunk at a time, each chunk above the last one's ids.

    The cursor (``after``) also keeps a replayed message that fails again
    from being taken a second time in the same run.
    """
    who, after, count = requester(), 0, 0
    while True:
        request = _request(verb, **filters, all=True, limit=ID_CHUNK, by=who, after=after)
        reply = call(args, request, timeout=120.0)
        ids = getattr(reply, verb)
        count += len(ids)
        yield ids, count + reply.remaining
        if not ids or not reply.remaining:
            return
        after = ids[-1]


class _Progress:
    """A progress bar on a terminal, redrawn in place (see ``progress_bar``)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def show(self, done: int, total: int) -> None:
        from ._views import progress_bar

        self.stream.write(progress_bar(done, total))
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


# -- the parser ------------------------------------------------------------------------------

AddCommand = Any  # the parser's ``command(name, fn, help, epilog)``


def add_commands(command: AddCommand) -> None:
    _add_send(command)
    p = command(
        "wait",
        cmd_wait,
        "wait until nothing is queued or in flight, or until a breaker is in a state",
        exits("0  reached", "1  the timeout came first", "2  bad usage", "3  no daemon"),
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        metavar="DURATION",
        help="give up after DURATION (seconds, or 90s, 15m, 2h)",
    )
    p.add_argument(
        "--breaker",
        metavar="NAME=STATE",
        help="wait for a breaker instead: STATE is closed, half_open or open",
    )
    _add_audit(command)
    _add_dead_letters(command)


def _add_send(command: AddCommand) -> None:
    p = command(
        "send",
        cmd_send,
        "submit one message, or a JSON-lines file of them",
        exits(
            "0  every message accepted (durably stored)",
            "1  the daemon refused the request (nothing of it was stored), or refused some"
            " messages on their own (a suppressed recipient: each is printed; the others"
            " were stored)",
            "2  bad usage, or a bad --payload, --vars or file",
            "3  the daemon could not be reached",
        ),
    )
    p.add_argument("target", nargs="?", help="an integration or a group of the config")
    p.add_argument("--payload", metavar="JSON", help="the message payload, a JSON object")
    p.add_argument(
        "--priority",
        default="normal",
        choices=("critical", "normal", "bulk"),
        help="critical goes first and keeps reserved capacity on a wedding day",
    )
    p.add_argument(
        "--key",
        help="idempotency key: the same key and payload is one message (default: generated)",
    )
    p.add_argument(
        "--file",
        metavar="FILE",
        help='JSON lines: {"target", "payload", "priority"?, "key"?, "deliver_by"?,'
        ' "not_before"?, "category"?, "subjects"?, "template"?, "template_version"?, "vars"?,'
        ' "wedding_date"?, "experiment"?, "unit"?, "invite"?, "inviter"?} ("payload" may be'
        ' left out of a line that names a "template")',
    )
    _add_network(p)
    _add_when(p)
    _add_template(p)


def _add_template(p: argparse.ArgumentParser) -> None:
    """Who it is about; a stored template to render the message from, once, at submit."""
    p.add_argument(
        "--subject",
        action="append",
        metavar="IDENTITY",
        help="someone it is about besides those its payload names (the recipient, an event's"
        " user): an address, phone number or user id; repeatable. Sealed under their keys",
    )
    p.add_argument(
        "--template",
        metavar="NAME",
        help="render this stored template with --vars once, at submit (every retry and"
        " failover sends the same bytes): its fields join --payload's, if any",
    )
    p.add_argument(
        "--template-version",
        type=positive_int,
        metavar="N",
        help="with --template: this version; none: the latest",
    )
    p.add_argument(
        "--vars",
        metavar="FILE",
        help='with --template: its variables, a JSON object in FILE or "-" for stdin; none: {}',
    )


def _add_when(p: argparse.ArgumentParser) -> None:
    """When a message may go, and under which category: its deadline, its schedule."""
    p.add_argument(
        "--deliver-by",
        type=time_ahead,
        metavar="WHEN",
        help="a deadline: a duration from now (2h), an ISO time or a Unix time",
    )
    p.add_argument(
        "--not-before",
        type=time_ahead,
        metavar="WHEN",
        help="scheduled: not sent before WHEN (it waits in the store, across restarts): "
        + AHEAD_FORMS,
    )
    p.add_argument(
        "--category",
        metavar="C",
        help="email: the category it is sent under (transactional, marketing, or one config"
        " adds), which suppressions, unsubscribe links, caps and the reputation guard read;"
        " none: [deliverability] default_category",
    )


def _add_audit(command: AddCommand) -> None:
    p = command(
        "audit",
        cmd_audit,
        "print the audit log, newest first",
        READ_EXITS.replace(
            "bad usage", "bad usage (a --since that is not a time, a --kind that is not a kind)"
        ),
    )
    p.add_argument("--since", type=time_back, metavar="WHEN", help=f"from WHEN: {BACK_FORMS}")
    p.add_argument("--message", type=int, metavar="ID", help="only this message's events")
    p.add_argument(
        "--kind",
        action="append",
        type=_kinds,
        metavar="K",
        help="only events of kind K (repeat it, or K1,K2): " + ", ".join(EVENT_KINDS),
    )
    p.add_argument("--limit", type=positive_int, default=1000, metavar="N", help="at most N events")
    p.add_argument(
        "--before", type=int, metavar="ID", help="only events older than event ID (the next page)"
    )


def _add_dead_letters(command: AddCommand) -> None:
    p = command(
        "dead-letters",
        cmd_dead_letters,
        "list dead letters (the default), show one, replay or purge them",
        READ_EXITS,
    )
    _list_options(p)
    actions = p.add_subparsers(dest="dead_letters_command", metavar="ACTION")

    def action(name: str, fn: Command, help: str, epilog: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=help, epilog=epilog, formatter_class=Formatter
        )
        add_daemon(a, nested=True)
        a.set_defaults(fn=fn)
        return a

    _add_dead_letter_actions(action)


def _add_dead_letter_actions(action: Callable[..., argparse.ArgumentParser]) -> None:
    _list_options(
        action("list", cmd_dead_letters, "list dead letters, newest first", READ_EXITS), nested=True
    )
    a = action(
        "show",
        cmd_dead_letter_show,
        "one dead letter: the message, its payload, its reason and its history",
        exits("0  done", "1  no such dead letter", "2  bad usage", "3  no daemon"),
    )
    a.add_argument("id", type=int, metavar="ID", help="the dead letter's message id")
    replace = CHANGE_EXITS.replace(
        "the wedding-day freeze, ...)",
        "...), or an ID was not a dead letter (the others were done)",
    )
    replace += f"\n  {EXIT_INTERRUPTED}  interrupted (what was done so far is printed)"
    a = action(
        "replay",
        cmd_dead_letters_replay,
        "queue dead letters again as fresh work (same idempotency key, attempts from 0)",
        replace,
    )
    _selection_options(a)
    a = action(
        "purge",
        cmd_dead_letters_purge,
        "delete dead letters from the queue's table; the audit log keeps their history",
        replace,
    )
    _selection_options(a)
    a.add_argument(
        "--older-than",
        type=seconds,
        metavar="DURATION",
        help="with --all: only those dead for longer (90s, 15m, 2h, 7d)",
    )


def _list_options(p: argparse.ArgumentParser, nested: bool = False) -> None:
    unset: Any = argparse.SUPPRESS if nested else None
    p.add_argument(
        "--limit",
        type=positive_int,
        default=argparse.SUPPRESS if nested else 1000,
        metavar="N",
        help="at most N, newest first",
    )
    p.add_argument("--target", default=unset, help="only those sent to this integration or group")
    p.add_argument(
        "--before",
        type=int,
        default=unset,
        metavar="ID",
        help="only those older than message ID (the next page)",
    )


def _selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="these dead letters")
    p.add_argument("--all", action="store_true", help="every dead letter (of --target)")
    p.add_argument("--target", help="with --all: only those sent to this integration or group")
