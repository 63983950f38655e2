"""The control protocol: newline-delimited JSON over a Unix stream socket.

A request is ``{"id", "cmd", "args"}``; a reply is ``{"id", "ok": true,
"result"}`` or ``{"id", "ok": false, "error": {"code", "message"}}``. Each
command's ``args`` are structured into its own frozen class, so a handler
only ever sees a well-typed request; anything else gets an error reply.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import cattrs

from .._config import make_converter
from .._errors import ErrorCode, RequestError

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20  # one request line, bytes
MAX_MESSAGES_PER_SUBMIT = 10_000
MAX_IDS_PER_REQUEST = 10_000  # dead-letter replay and purge: the CLI sends chunks of 1,000


@attrs.frozen
class MessageIn:
    target: str
    payload: dict[str, Any]
    priority: str = "normal"
    key: str | None = None
    deliver_by: float | None = None  # a deadline, Unix time


@attrs.frozen
class Submit:
    messages: list[MessageIn] = attrs.Factory(list)


@attrs.frozen
class Status:
    pass


# ``force``: a change during the wedding-day freeze (logged as forced).


@attrs.frozen
class Pause:
    name: str
    force: bool = False


@attrs.frozen
class Resume:
    name: str
    force: bool = False


@attrs.frozen
class Breaker:
    name: str
    action: str  # open | close | reset
    force: bool = False


@attrs.frozen
class Wait:
    """Wait until nothing is queued or in flight, or until a breaker is in a state."""

    timeout: float = 60.0
    breaker: str | None = None  # "NAME=STATE", e.g. "resend=closed"


@attrs.frozen
class Audit:
    since: float | None = None
    message: int | None = None
    limit: int = 1000
    kinds: list[str] = attrs.Factory(list)  # only events of these kinds; empty: every kind


@attrs.frozen
class DeadLetters:
    limit: int = 1000
    target: str | None = None  # only those sent to this integration or group


@attrs.frozen
class DeadLetter:
    """One dead letter: the message, its payload, its reason and its history."""

    id: int


@attrs.frozen
class ReplayDead:
    """Put dead letters back in the queue as fresh work: ``ids``, or ``all`` (of ``target``).

    With ``all``, one request takes at most ``limit`` of them, those with an
    id above ``after``: a client goes through thousands in chunks, passing
    the last id it got back as the next ``after``. ``by`` is who asked, for
    the audit log, as the client names them.
    """

    ids: list[int] = attrs.Factory(list)
    all: bool = False
    target: str | None = None
    after: int = 0
    limit: int = 1000
    by: str = "operator"

    def check(self) -> None:
        _check_selection(self.ids, self.all, self.limit, target=self.target)

    def reply(self, done: list[int], remaining: int) -> dict[str, Any]:
        return _selection_reply("replayed", self.ids, done, remaining)


@attrs.frozen
class PurgeDead:
    """Remove dead letters from the messages table (their audit history stays).

    As :class:`ReplayDead`; ``older_than`` (seconds, with ``all``) takes only
    those dead-lettered at least that long ago.
    """

    ids: list[int] = attrs.Factory(list)
    all: bool = False
    target: str | None = None
    older_than: float | None = None
    after: int = 0
    limit: int = 1000
    by: str = "operator"

    def check(self) -> None:
        if self.older_than is not None and self.older_than < 0:
            raise RequestError(ErrorCode.BAD_ARGS, "older_than must not be negative")
        _check_selection(
            self.ids, self.all, self.limit, target=self.target, older_than=self.older_than
        )

    def reply(self, done: list[int], remaining: int) -> dict[str, Any]:
        return _selection_reply("purged", self.ids, done, remaining)


def _selection_reply(
    verb: str, asked: list[int], done: list[int], remaining: int
) -> dict[str, Any]:
    """The ids done; the ids asked for that were not dead letters; how many more match ``all``."""
    return {verb: done, "skipped": sorted(set(asked) - set(done)), "remaining": remaining}


def _check_selection(ids: list[int], every: bool, limit: int, **only_with_all: object) -> None:
    """Exactly one of ``ids`` or ``all``; filters only with ``all``; sizes within bounds."""
    if bool(ids) == every:
        raise RequestError(ErrorCode.BAD_ARGS, "give either ids or all, not both and not neither")
    given = [name for name, value in only_with_all.items() if value is not None]
    if ids and given:
        raise RequestError(ErrorCode.BAD_ARGS, f"{', '.join(given)} only go with all")
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise RequestError(ErrorCode.TOO_MANY, f"at most {MAX_IDS_PER_REQUEST} ids a request")
    if not 1 <= limit <= MAX_IDS_PER_REQUEST:
        raise RequestError(ErrorCode.BAD_ARGS, f"limit must be between 1 and {MAX_IDS_PER_REQUEST}")


@attrs.frozen
class Message:
    id: int


@attrs.frozen
class InjectCrash:
    name: str


@attrs.frozen
class Reload:
    """Read the config file again and apply it."""

    force: bool = False


@attrs.frozen
class WeddingDay:
    """Show the mode (``state`` None), or set it: on / off (until a Unix time), or auto."""

    state: str | None = None
    until: float | None = None


@attrs.frozen
class Alerts:
    """The open alerts."""


@attrs.frozen
class AlertsAck:
    id: int


Request = (
    Submit
    | Status
    | Pause
    | Resume
    | Breaker
    | Wait
    | Audit
    | DeadLetters
    | DeadLetter
    | ReplayDead
    | PurgeDead
    | Message
    | InjectCrash
    | Reload
    | WeddingDay
    | Alerts
    | AlertsAck
)

COMMANDS: dict[str, type[Any]] = {
    "submit": Submit,
    "status": Status,
    "pause": Pause,
    "resume": Resume,
    "breaker": Breaker,
    "wait": Wait,
    "audit": Audit,
    "dead-letters": DeadLetters,
    "dead-letter": DeadLetter,
    "dead-letters-replay": ReplayDead,
    "dead-letters-purge": PurgeDead,
    "message": Message,
    "inject-crash": InjectCrash,
    "reload": Reload,
    "wedding-day": WeddingDay,
    "alerts": Alerts,
    "alerts-ack": AlertsAck,
}


def command_name(request: Request) -> str:
    """The wire name of a request's command."""
    return next(name for name, kind in COMMANDS.items() if isinstance(request, kind))


@attrs.frozen
class Envelope:
    """A parsed request line: its id (echoed in the reply) and the typed request."""

    id: Any
    request: Request


def parse(line: bytes, converter: cattrs.Converter) -> Envelope:
    """Parse one request line; raise RequestError (with the id when known)."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError, and also
        # numbers too long to convert (over 4300 digits); RecursionError: nesting.
        raise RequestError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "a request is a JSON object")
    request_id = raw.get("id")
    unknown = set(raw) - {"id", "cmd", "args"}
    if unknown:
        raise _with_id(
            RequestError(ErrorCode.BAD_REQUEST, f"unknown fields: {', '.join(sorted(unknown))}"),
            request_id,
        )
    cmd = raw.get("cmd")
    kind = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if kind is None:
        known = ", ".join(sorted(COMMANDS))
        raise _with_id(
            RequestError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}; known: {known}"),
            request_id,
        )
    args = raw.get("args", {})
    if args is None:
        args = {}
    try:
        request = converter.structure(args, kind)
    except Exception as exc:
        lines = cattrs.transform_error(exc, path="args")
        raise _with_id(RequestError(ErrorCode.BAD_ARGS, "; ".join(lines)), request_id) from exc
    return Envelope(request_id, request)


class IdentifiedError(RequestError):
    def __init__(self, error: RequestError, request_id: Any) -> None:
        super().__init__(error.code, error.message)
        self.request_id = request_id


def _with_id(error: RequestError, request_id: Any) -> IdentifiedError:
    return IdentifiedError(error, request_id)


def ok(request_id: Any, result: Any) -> bytes:
    return _line({"id": request_id, "ok": True, "result": result})


def error(request_id: Any, code: str, message: str) -> bytes:
    return _line({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def request_line(request_id: Any, cmd: str, args: dict[str, Any]) -> bytes:
    return _line({"id": request_id, "cmd": cmd, "args": args})


def converter() -> cattrs.Converter:
    return make_converter()
