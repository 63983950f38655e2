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
from .._errors import RequestError

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20  # one request line, bytes
MAX_MESSAGES_PER_SUBMIT = 10_000


@attrs.frozen
class MessageIn:
    target: str
    payload: dict[str, Any]
    priority: str = "normal"
    key: str | None = None


@attrs.frozen
class Submit:
    messages: list[MessageIn] = attrs.Factory(list)


@attrs.frozen
class Status:
    pass


@attrs.frozen
class Pause:
    name: str


@attrs.frozen
class Resume:
    name: str


@attrs.frozen
class Breaker:
    name: str
    action: str  # open | close | reset


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


@attrs.frozen
class DeadLetters:
    limit: int = 1000


@attrs.frozen
class Message:
    id: int


@attrs.frozen
class InjectCrash:
    name: str


@attrs.frozen
class Reload:
    """Read the config file again and apply it."""


Request = (
    Submit
    | Status
    | Pause
    | Resume
    | Breaker
    | Wait
    | Audit
    | DeadLetters
    | Message
    | InjectCrash
    | Reload
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
    "message": Message,
    "inject-crash": InjectCrash,
    "reload": Reload,
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
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError("bad_json", f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise RequestError("bad_request", "a request is a JSON object")
    request_id = raw.get("id")
    unknown = set(raw) - {"id", "cmd", "args"}
    if unknown:
        raise _with_id(
            RequestError("bad_request", f"unknown fields: {', '.join(sorted(unknown))}"), request_id
        )
    cmd = raw.get("cmd")
    kind = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if kind is None:
        known = ", ".join(sorted(COMMANDS))
        raise _with_id(
            RequestError("unknown_command", f"unknown command {cmd!r}; known: {known}"), request_id
        )
    args = raw.get("args", {})
    if args is None:
        args = {}
    try:
        request = converter.structure(args, kind)
    except Exception as exc:
        lines = cattrs.transform_error(exc, path="args")
        raise _with_id(RequestError("bad_args", "; ".join(lines)), request_id) from exc
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
