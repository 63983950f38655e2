"""The control protocol: newline-delimited JSON over a Unix stream socket.

A request is ``{"id", "cmd", "args"}``; a reply is ``{"id", "ok": true,
"result"}`` or ``{"id", "ok": false, "error": {"code", "message"}}``. Each
command's ``args`` are structured into its own frozen class, so a handler
only ever sees a well-typed request; anything else gets an error reply.
"""

from __future__ import annotations

import enum
import json
from typing import Any, ClassVar, Generic, TypeVar

import attrs
import cattrs

from .. import _converter
from .._audit_kinds import EventKind
from .._errors import ErrorCode, RequestError
from . import _replies as r

# 2: typed replies; audit and dead-letters newest first with a ``before`` cursor;
# key_reused; breaker actions and override states checked as enums.
PROTOCOL_VERSION = 2
MAX_LINE = 1 << 20  # one request line, bytes
MAX_MESSAGES_PER_SUBMIT = 10_000
MAX_IDS_PER_REQUEST = 10_000  # dead-letter replay and purge: the CLI sends chunks of 1,000


R = TypeVar("R", covariant=True)


class Asks(Generic[R]):
    """A request whose result is an ``R`` (its class is ``reply``)."""

    reply: ClassVar[type[Any]]


class BreakerAction(enum.StrEnum):
    OPEN = "open"
    CLOSE = "close"
    RESET = "reset"


class OverrideState(enum.StrEnum):
    ON = "on"
    OFF = "off"
    AUTO = "auto"  # back to the calendar


@attrs.frozen
class MessageIn:
    target: str
    payload: dict[str, Any]
    priority: str = "normal"
    key: str | None = None
    deliver_by: float | None = None  # a deadline, Unix time


@attrs.frozen
class Submit(Asks[r.SubmitReply]):
    messages: list[MessageIn] = attrs.Factory(list)

    reply = r.SubmitReply


@attrs.frozen
class Status(Asks[r.StatusReply]):
    reply = r.StatusReply


# ``force``: a change during the wedding-day freeze (logged as forced).


@attrs.frozen
class Pause(Asks[r.PauseReply]):
    name: str
    force: bool = False

    reply = r.PauseReply


@attrs.frozen
class Resume(Asks[r.PauseReply]):
    name: str
    force: bool = False

    reply = r.PauseReply


@attrs.frozen
class Breaker(Asks[r.BreakerReply]):
    name: str
    action: BreakerAction
    force: bool = False

    reply = r.BreakerReply


@attrs.frozen
class Wait(Asks[r.WaitReply]):
    """Wait until nothing is queued or in flight, or until a breaker is in a state."""

    timeout: float = 60.0
    breaker: str | None = None  # "NAME=STATE", e.g. "resend=closed"

    reply = r.WaitReply


@attrs.frozen
class Audit(Asks[r.AuditReply]):
    """Audit events, newest first; ``before`` (an event id) pages back."""

    since: float | None = None
    message: int | None = None
    limit: int = 1000
    kinds: list[EventKind] = attrs.Factory(list)  # only events of these kinds; empty: every kind
    before: int | None = None

    reply = r.AuditReply


@attrs.frozen
class DeadLetters(Asks[r.DeadLettersReply]):
    """Dead letters, newest first; ``before`` (a message id) pages back."""

    limit: int = 1000
    target: str | None = None  # only those sent to this integration or group
    before: int | None = None

    reply = r.DeadLettersReply


@attrs.frozen
class DeadLetter(Asks[r.DeadLetterReply]):
    """One dead letter: the message, its payload, its reason and its history."""

    id: int

    reply = r.DeadLetterReply


@attrs.frozen
class ReplayDead(Asks[r.ReplayReply]):
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

    reply = r.ReplayReply

    def check(self) -> None:
        _check_selection(self.ids, self.all, self.limit, target=self.target)

    def skipped(self, done: list[int]) -> list[int]:
        return sorted(set(self.ids) - set(done))


@attrs.frozen
class PurgeDead(Asks[r.PurgeReply]):
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

    reply = r.PurgeReply

    def check(self) -> None:
        if self.older_than is not None and self.older_than < 0:
            raise RequestError(ErrorCode.BAD_ARGS, "older_than must not be negative")
        _check_selection(
            self.ids, self.all, self.limit, target=self.target, older_than=self.older_than
        )

    def skipped(self, done: list[int]) -> list[int]:
        return sorted(set(self.ids) - set(done))


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
class Message(Asks[r.MessageReply]):
    id: int

    reply = r.MessageReply


@attrs.frozen
class InjectCrash(Asks[r.CrashReply]):
    name: str

    reply = r.CrashReply


@attrs.frozen
class Reload(Asks[r.ReloadReply]):
    """Read the config file again and apply it."""

    force: bool = False

    reply = r.ReloadReply


@attrs.frozen
class WeddingDay(Asks[r.ModeReply]):
    """Show the mode (``state`` None), or set it: on / off (until a Unix time), or auto."""

    state: OverrideState | None = None
    until: float | None = None

    reply = r.ModeReply


@attrs.frozen
class Preflight(Asks[r.PreflightReply]):
    """Check every integration where the daemon sends (its sandbox, or its providers)."""

    timeout: float = 10.0  # each probe's bound, seconds

    reply = r.PreflightReply


@attrs.frozen
class Alerts(Asks[r.AlertsReply]):
    """The open alerts."""

    reply = r.AlertsReply


@attrs.frozen
class AlertsAck(Asks[r.AlertView]):
    id: int

    reply = r.AlertView


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
    | Preflight
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
    "preflight": Preflight,
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
        lines = cattrs.transform_error(exc, path="args", format_exception=_converter.describe_error)
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
    """The project's one converter: requests and replies cross the wire through it."""
    return _converter.make()
