"""The control protocol: newline-delimited JSON over a Unix stream socket.

A request is ``{"id", "cmd", "args"}``; a reply is ``{"id", "ok": true,
"result"}`` or ``{"id", "ok": false, "error": {"code", "message"}}``. Each
command's ``args`` are structured into its own frozen class, so a handler
only ever sees a well-typed request; anything else gets an error reply.
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Any

import attrs
import cattrs

from .. import _converter
from .._audit_kinds import EventKind
from .._converter import INT64_MAX, INT64_MIN, UnixTime
from .._errors import ErrorCode, RequestError
from . import _growth_protocol as g
from . import _replies as r
from ._asks import Asks as Asks

# 2: typed replies; audit and dead-letters newest first with a ``before`` cursor;
# key_reused; breaker actions and override states checked as enums.
PROTOCOL_VERSION = 2
MAX_LINE = 1 << 20  # one request line, bytes
MAX_MESSAGES_PER_SUBMIT = 10_000
MAX_IDS_PER_REQUEST = 10_000  # dead-letter replay and purge: the CLI sends chunks of 1,000
MAX_DEPTH = 64  # objects and lists nested in one request line (a payload's nesting is less by 5)


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
    deliver_by: UnixTime | None = None  # a deadline, Unix time
    # Email: the category it is sent under (suppression, unsubscribe, caps and the
    # reputation guard read it); None: [deliverability] default_category.
    category: str | None = None
    not_before: UnixTime | None = None  # scheduled: not sent before this, Unix time
    # The people it is about (addresses, phone numbers, user ids), besides
    # those its payload names by its target's family (privacy/_subjects.py).
    subjects: list[str] | None = None
    # A stored template (its latest version, or ``template_version``) rendered
    # with ``vars`` once, at submit: its fields join the payload's.
    template: str | None = None
    template_version: int | None = None
    vars: dict[str, Any] | None = None
    # The couple's wedding day (YYYY-MM-DD; else ``vars.wedding_date``): stage
    # rules read it (by default no marketing mail in the final week).
    wedding_date: str | None = None
    # An experiment (growth) the message takes part in: its unit (the recipient,
    # or ``unit`` where the experiment says "user") gets a sticky variant, whose
    # template or fields the message is rendered with; exposure on delivery.
    experiment: str | None = None
    unit: str | None = None
    # An email inviting someone: it counts as invite ``invite``'s invite_sent,
    # from user ``inviter`` to the recipient.
    invite: str | None = None
    inviter: str | None = None


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

    since: UnixTime | None = None
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
    """Read the config file again and apply it.

    ``force``: past the wedding-day freeze. ``drop_queued``: work left with no
    route (its integration or group removed) becomes dead letters; without it
    such a reload is refused.
    """

    force: bool = False
    drop_queued: bool = False

    reply = r.ReloadReply


@attrs.frozen
class WeddingDay(Asks[r.ModeReply]):
    """Show the mode (``state`` None), or set it: on / off (until a Unix time), or auto."""

    state: OverrideState | None = None
    until: UnixTime | None = None

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


# -- deliverability: the suppression list and the funnel ----------------------------------
# Addresses are normalised and checked by the handlers (an email address, or an E.164
# phone number); a scope is ``*`` (every category) or a configured category. ``by`` is
# who asked, for the audit log, as the client names them (as for ReplayDead).


@attrs.frozen
class SuppressionList(Asks[r.SuppressionsReply]):
    """Suppressions in force, by id ascending; ``after`` (an id) pages on."""

    address: str | None = None
    after: int = 0
    limit: int = 1000

    reply = r.SuppressionsReply


@attrs.frozen
class SuppressionCheck(Asks[r.SuppressionCheckReply]):
    """Which suppressions apply to an address, and whether a message of ``category`` (each
    configured one, if None) would be refused, at normal and at critical priority, and why."""

    address: str
    category: str | None = None

    reply = r.SuppressionCheckReply


@attrs.frozen
class SuppressionAdd(Asks[r.SuppressionView]):
    """Suppress an address by hand: for ``scope``, until ``until`` (None: until removed)."""

    address: str
    note: str  # why: kept with the suppression and in the audit log
    scope: str = "*"
    until: UnixTime | None = None
    by: str = "operator"

    reply = r.SuppressionView


@attrs.frozen
class SuppressionRemove(Asks[r.SuppressionRemoveReply]):
    """Remove an address's suppressions: of ``scope``, or every one."""

    address: str
    scope: str | None = None
    note: str = ""
    by: str = "operator"

    reply = r.SuppressionRemoveReply


@attrs.frozen
class DeliverabilityReport(Asks[r.DeliverabilityReply]):
    """The funnel per provider and sending domain since ``since`` (None: the last 24 hours),
    and each sending domain's standing with the reputation guard."""

    domain: str | None = None
    since: UnixTime | None = None

    reply = r.DeliverabilityReply


@attrs.frozen
class DeliverabilityResume(Asks[r.DomainResumeReply]):
    """End a sending domain's reputation pause: its held mail is due again."""

    domain: str
    by: str = "operator"

    reply = r.DomainResumeReply


@attrs.frozen
class SubjectErase(Asks[r.ErasureView]):
    """Start (or find) the erasure job of a subject, by its id (``s_…``) or identity."""

    subject: str
    by: str = "operator"

    reply = r.ErasureView


@attrs.frozen
class SubjectStatus(Asks[r.SubjectStatusReply]):
    """A subject's erasure jobs, step by step, consent and messages held."""

    subject: str

    reply = r.SubjectStatusReply


@attrs.frozen
class SubjectExport(Asks[r.SubjectExportReply]):
    """Every message, event, suppression and consent record about a subject, decrypted."""

    subject: str

    reply = r.SubjectExportReply


@attrs.frozen
class SubjectConsent(Asks[r.ConsentView]):
    """Record a subject's consent to ``purpose`` given (``granted``) or withdrawn."""

    subject: str
    purpose: str
    granted: bool
    source: str
    by: str = "operator"

    reply = r.ConsentView


@attrs.frozen
class KeysRotate(Asks[r.KeysRotateReply]):
    """Rewrap every data key under the current (or, in the sandbox, a new) KEK."""

    by: str = "operator"

    reply = r.KeysRotateReply


@attrs.frozen
class TemplatePut(Asks[r.TemplateView]):
    """Keep ``parts`` (a payload field -> Liquid source) as the next version of ``name``."""

    name: str
    parts: dict[str, str]
    by: str = "operator"

    reply = r.TemplateView


@attrs.frozen
class TemplateShow(Asks[r.TemplateView]):
    name: str
    version: int | None = None  # None: the latest

    reply = r.TemplateView


@attrs.frozen
class TemplateList(Asks[r.TemplatesReply]):
    reply = r.TemplatesReply


@attrs.frozen
class TemplateRender(Asks[r.RenderedReply]):
    """Render a template with ``vars`` as submit would, sending nothing."""

    name: str
    vars: dict[str, Any] = attrs.Factory(dict)
    version: int | None = None

    reply = r.RenderedReply


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
    | SuppressionList
    | SuppressionCheck
    | SuppressionAdd
    | SuppressionRemove
    | DeliverabilityReport
    | DeliverabilityResume
    | SubjectErase
    | SubjectStatus
    | SubjectExport
    | SubjectConsent
    | KeysRotate
    | TemplatePut
    | TemplateShow
    | TemplateList
    | TemplateRender
    | g.GrowthRequest
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
    "suppression-list": SuppressionList,
    "suppression-check": SuppressionCheck,
    "suppression-add": SuppressionAdd,
    "suppression-remove": SuppressionRemove,
    "deliverability": DeliverabilityReport,
    "deliverability-resume": DeliverabilityResume,
    "subject-erase": SubjectErase,
    "subject-status": SubjectStatus,
    "subject-export": SubjectExport,
    "subject-consent": SubjectConsent,
    "keys-rotate": KeysRotate,
    "template-put": TemplatePut,
    "template-show": TemplateShow,
    "template-list": TemplateList,
    "template-render": TemplateRender,
    **g.GROWTH_COMMANDS,
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
    """Parse one request line; raise RequestError (with the id when known).

    Only strict JSON is taken: no NaN or Infinity, no number that overflows a
    float, no integer beyond 64 bits, no lone surrogate (``"\\ud800"``), at
    most ``MAX_DEPTH`` levels; each refusal names the value's path.
    """
    decoder = _Decoder(strings=_SURROGATE_ESCAPE.search(line) is not None)
    raw = decoder.decode(line)
    request_id = raw.get("id") if isinstance(raw, dict) else None
    if decoder.refused or decoder.strings or _too_deep(raw, line):
        _refuse_unsound(raw, request_id, strings=decoder.strings)
    if not isinstance(raw, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "a request is a JSON object")
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
    return Envelope(request_id, _structure(raw.get("args"), kind, converter, request_id))


def _refuse_unsound(raw: object, request_id: Any, *, strings: bool) -> None:
    """Raise for a value strict JSON refuses, if there is one; echo the id only if sound."""
    if (problem := _first_problem(raw, strings=strings)) is not None:
        sound = _first_problem(request_id, strings=strings) is None
        raise _with_id(problem.error(), request_id if sound else None)


def _structure(args: object, kind: type[Any], converter: cattrs.Converter, request_id: Any) -> Any:
    try:
        return converter.structure({} if args is None else args, kind)
    except Exception as exc:
        lines = cattrs.transform_error(exc, path="args", format_exception=_converter.describe_error)
        said = [f"{where}: {what}" for what, _, where in (x.rpartition(" @ ") for x in lines)]
        raise _with_id(RequestError(ErrorCode.BAD_ARGS, "; ".join(said)), request_id) from exc


# --- strict JSON -------------------------------------------------------------


@attrs.frozen
class _Refused:
    """A number the decoder will not take; the walk reports it at its path."""

    reason: str
    not_json: bool = False  # NaN, Infinity: not JSON at all, rather than a value out of range


@attrs.define
class _Decoder:
    """Strict JSON: numbers it will not take decode as ``_Refused`` (and are noted)."""

    strings: bool  # the line may hold a lone surrogate
    refused: bool = False

    def decode(self, line: bytes) -> Any:
        try:
            # Decoded here, strictly: json.loads would guess UTF-16 or 32 and pass surrogates.
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(ErrorCode.BAD_JSON, f"not UTF-8: {exc}") from exc
        try:
            return json.loads(
                text, parse_constant=self._constant, parse_float=self._float, parse_int=self._int
            )
        except (ValueError, RecursionError) as exc:
            # ValueError: JSONDecodeError; RecursionError: nesting past the interpreter's.
            raise RequestError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from exc

    def _refuse(self, reason: str, *, not_json: bool = False) -> _Refused:
        self.refused = True
        return _Refused(reason, not_json)

    def _constant(self, name: str) -> _Refused:
        return self._refuse(f"{name} is not a JSON number", not_json=True)

    def _float(self, text: str) -> float | _Refused:
        value = float(text)
        if math.isfinite(value):
            return value
        return self._refuse(f"{_clip(text)} overflows a 64-bit float", not_json=True)

    def _int(self, text: str) -> int | _Refused:
        # 20 characters hold every 64-bit integer; longer ones are not even converted.
        if len(text) <= 20 and INT64_MIN <= (value := int(text)) <= INT64_MAX:
            return value
        shown = text if len(text) <= 24 else f"an integer of {len(text.lstrip('-'))} digits"
        return self._refuse(f"{shown} is beyond 64 bits (from {INT64_MIN} to {INT64_MAX})")


def _clip(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"


# Strict UTF-8 carries no surrogate, so a lone one can only come from a ``\uD800``-``\uDFFF``
# escape: lines without one skip looking at every string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")


# A path: the parent's path and the key or index (``None`` at the top).
_Path = tuple["_Path", str | int] | None


@attrs.frozen
class _Problem:
    path: _Path
    reason: str
    not_json: bool = False

    def error(self) -> RequestError:
        where = _format_path(self.path)
        if self.not_json:
            code = ErrorCode.BAD_JSON
        else:
            code = ErrorCode.BAD_ARGS if where.startswith("args") else ErrorCode.BAD_REQUEST
        shown = where if len(where) <= 120 else f"{where[:100]}..."
        return RequestError(code, f"{shown or 'the request'}: {self.reason}")


def _too_deep(raw: object, line: bytes) -> bool:
    """Whether containers nest past MAX_DEPTH: level by level, the containers only (the
    common answer, no, is the cost of every large submit)."""
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return False
    level: list[dict[Any, Any] | list[Any]] = [raw] if isinstance(raw, dict | list) else []
    depth = 0
    while level:
        if depth >= MAX_DEPTH:
            return True
        below: list[dict[Any, Any] | list[Any]] = []
        keep = below.append
        for container in level:
            for value in container.values() if type(container) is dict else container:
                if type(value) is dict or type(value) is list:
                    keep(value)
        level, depth = below, depth + 1
    return False


def _first_problem(root: object, *, strings: bool) -> _Problem | None:
    """A value that strict JSON refuses, if any (the first of the container it is in)."""
    if not isinstance(root, dict | list):
        return _scalar_problem(root, None, strings=strings)
    stack: list[tuple[dict[Any, Any] | list[Any], _Path, int]] = [(root, None, 0)]
    while stack:
        container, path, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return _Problem(path, f"nested more than {MAX_DEPTH} levels deep")
        pairs = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in pairs:
            if strings and isinstance(key, str) and _SURROGATE.search(key):
                return _Problem((path, key), "lone surrogate in a key (not a character)")
            if isinstance(item, dict | list):
                stack.append((item, (path, key), depth + 1))
            elif problem := _scalar_problem(item, (path, key), strings=strings):
                return problem
    return None


def _scalar_problem(value: object, path: _Path, *, strings: bool) -> _Problem | None:
    if isinstance(value, _Refused):
        return _Problem(path, value.reason, value.not_json)
    if strings and isinstance(value, str) and (found := _SURROGATE.search(value)):
        return _Problem(path, f"lone surrogate U+{ord(found[0]):04X} (not a character)")
    return None


def _format_path(path: _Path) -> str:
    """``args.messages[0].payload.text``; odd keys quoted (``payload['a b']``)."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif _NAME.fullmatch(key):
            parts.append(f".{key}")
        else:  # repr: a lone surrogate shows as its escape
            parts.append(f"[{key!r}]" if len(key) <= 24 else f"[{key[:12]!r}...]")
    return "".join(reversed(parts)).removeprefix(".")


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
