"""``POST /v1/messages``: producers on other hosts submit as they would over the control socket.

A request carries ``Authorization: Bearer <token>``; the token names one of
the ``[intake]`` producers (compared in constant time, never logged or echoed)
and its role, which must allow ``submit`` as the socket's roles do. The body
is JSON lines (``application/x-ndjson`` or ``application/jsonl``, one message
a line, blank lines skipped) or a JSON array (``application/json``), each
message exactly a ``send --file`` line: the socket's ``MessageIn``.

The body is read by the very parser the socket reads a request line with
(the messages become the ``args`` of a ``submit`` line), so strict JSON, the
unknown fields refused and the paths errors name (``messages[3].target``)
are the socket's; each line is first checked to be one whole JSON value, so
no line can reach beyond its own place. Then the socket's own submit handler
answers, so validation, idempotency by key and replies are the socket's too:

====  ==========================================================================
200   the reply: ``{"accepted": [...], "refused": [...]}`` (some may be refused
      on their own, as over the socket)
400   ``{"error": {"code", "message"}}``: bad_json, bad_args, unknown_target...
401   no bearer token, or none of a producer's (``WWW-Authenticate: Bearer``)
403   forbidden: the producer's role may not submit
409   key_reused: a key held by a message with another target or payload
413   too_many: more than ``MAX_MESSAGES_PER_SUBMIT`` messages (the listener
      itself answers 413 to a body past ``max_body_bytes``)
415   a body that is neither JSON lines nor JSON
503   store_unavailable, with ``Retry-After``: nothing of the request was kept
====  ==========================================================================

A 401 is a refusal like a forged webhook: audited (``webhook_refused``, source
``intake``) and counted against the client's rate. Who submitted is not kept
per message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import cattrs

from .._errors import ConfigError, ConfigProblem, ErrorCode, RequestError, RingbearerError
from .._intake_settings import IntakeSettings
from .._logging import fields
from .._secrets import Secret
from ..control import MAX_MESSAGES_PER_SUBMIT, Submit
from ..control import _protocol as proto
from ..control._access import Role, needed
from ..control._replies import SubmitReply
from ._http import Request, Response
from ._refusals import Refusals
from ._signatures import Refused, Why

log = logging.getLogger("ringbearer.intake")

PATH = "/v1/messages"
SOURCE = "intake"  # the refusals' source
JSON_TYPE = "application/json"
LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
MIN_TOKEN_LENGTH = 16
RETRY_AFTER_SECONDS = 30

SubmitFn = Callable[[Submit], Awaitable[SubmitReply]]

_SUBMIT_NEEDS = needed(Submit())
_STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.KEY_REUSED: 409,
    # More messages than one request may carry: split them. (Not 429, which would tell
    # the producer to send the very same request again later.)
    ErrorCode.TOO_MANY: 413,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.BUSY: 503,
    ErrorCode.INTERNAL: 500,
}
_ARGS_PREFIX = re.compile(r"(?:^|(?<=; ))args\.")


@attrs.frozen
class Credential:
    """A producer: its name and role, and its token's SHA-256 (never the token itself)."""

    name: str
    role: Role
    digest: bytes = attrs.field(repr=False)

    @classmethod
    def of(cls, name: str, role: str, token: Secret) -> Credential:
        return cls(name, Role[role.upper()], _digest(token.reveal().encode()))


@attrs.frozen
class Producers:
    """Who may submit: the credentials the bearer tokens are checked against."""

    credentials: tuple[Credential, ...]

    def identify(self, authorization: str | None) -> Credential | Refused:
        """The producer an ``Authorization`` header names, or why it names none."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Refused(Why.MALFORMED, "no bearer token")
        # Headers are read as latin-1: encoding back gives the bytes the client sent.
        offered = _digest(token.encode("latin-1", "replace"))
        found = None
        for credential in self.credentials:  # every one compared: the time names no producer
            if hmac.compare_digest(offered, credential.digest):
                found = credential
        return found if found is not None else Refused(Why.FORGED, "no producer has this token")


def producers(settings: IntakeSettings, environ: Mapping[str, str] | None = None) -> Producers:
    """``[intake]``'s producers with their tokens read; ConfigError naming each token that
    is missing, shorter than ``MIN_TOKEN_LENGTH`` or another producer's."""
    credentials: list[Credential] = []
    problems: list[ConfigProblem] = []
    for name, producer in sorted(settings.producers.items()):
        where = f"intake.producers.{name}.token"
        secret = producer.token.resolve(environ)
        if secret is None:
            problems.append(ConfigProblem(where, f"secret not found ({producer.token.describe()})"))
            continue
        credential = Credential.of(name, producer.role, secret)
        shared = [c.name for c in credentials if c.digest == credential.digest]
        if len(secret.reveal()) < MIN_TOKEN_LENGTH:
            why = f"shorter than {MIN_TOKEN_LENGTH} characters: use a long random token"
            problems.append(ConfigProblem(where, why))
        elif shared:
            problems.append(ConfigProblem(where, f"the same token as producer {shared[0]!r}"))
        credentials.append(credential)
    if problems:
        raise ConfigError("secrets", problems)
    return Producers(tuple(credentials))


@attrs.frozen
class IntakeParts:
    """What the listener is handed for ``POST /v1/messages``: who may submit, and where to."""

    producers: Producers
    submit: SubmitFn  # the control socket's own submit handler


@attrs.frozen
class MessageIntake:
    """Answers ``POST /v1/messages``."""

    parts: IntakeParts
    refusals: Refusals
    converter: cattrs.Converter = attrs.field(factory=proto.converter)

    async def answer(self, request: Request) -> Response:
        who = self.parts.producers.identify(request.headers.get("authorization"))
        if isinstance(who, Refused):
            return self._unauthorised(who)
        if who.role < _SUBMIT_NEEDS:
            return self._forbidden(who)
        read = _READERS.get(_media_type(request.headers.get("content-type", "")))
        if read is None:
            kinds = ", ".join(sorted({JSON_TYPE, *LINES_TYPES}))
            return _error(415, ErrorCode.BAD_REQUEST, f"the body is one of: {kinds}")
        try:
            reply = await self.parts.submit(self._submit(read(request.body)))
        except RequestError as exc:
            return _error(_STATUS.get(exc.code, 400), exc.code, exc.message)
        except RingbearerError as exc:  # the store's, as the socket answers it: nothing kept
            log.error(
                "intake not stored", extra=fields(producer=who.name, error=type(exc).__name__)
            )
            return _error(503, ErrorCode.STORE_UNAVAILABLE, "nothing was stored; try again later")
        log.debug(
            "intake submit",
            extra=fields(
                producer=who.name, accepted=len(reply.accepted), refused=len(reply.refused)
            ),
        )
        return _json(200, self.converter.unstructure(reply))

    def _submit(self, messages: _Messages) -> Submit:
        """The messages as the socket's ``submit``; RequestError naming the one at fault."""
        if messages.count > MAX_MESSAGES_PER_SUBMIT:
            raise RequestError(
                ErrorCode.TOO_MANY, f"at most {MAX_MESSAGES_PER_SUBMIT} messages a request"
            )
        line = b'{"cmd":"submit","args":{"messages":' + messages.array + b"}}"
        try:
            request = proto.parse(line, self.converter).request
        except RequestError as exc:
            raise RequestError(exc.code, _ARGS_PREFIX.sub("", exc.message)) from None
        if not isinstance(request, Submit):  # the line is built as a submit: never so
            raise RequestError(ErrorCode.INTERNAL, "not read as a submit")
        return request

    def _unauthorised(self, refused: Refused) -> Response:
        """Audit the refusal; 401, saying how to authenticate and never echoing a token."""
        self.refusals.record(SOURCE, refused)
        missing = refused.why is Why.MALFORMED
        # RFC 6750: a request with no credentials gets the bare challenge, no error code.
        challenge = "Bearer" if missing else 'Bearer error="invalid_token"'
        message = "a producer's bearer token is needed" if missing else "the token is not known"
        return _error(401, ErrorCode.FORBIDDEN, message, ("www-authenticate", challenge))

    def _forbidden(self, who: Credential) -> Response:
        role, needs = who.role.name.lower(), _SUBMIT_NEEDS.name.lower()
        log.warning("intake refused", extra=fields(producer=who.name, role=role, needs=needs))
        message = f"'submit' needs the {needs} role; producer {who.name!r} has {role}"
        return _error(403, ErrorCode.FORBIDDEN, message)


@attrs.frozen
class _Messages:
    """A body's messages: how many, and a JSON array of them (as sent, not yet checked)."""

    count: int
    array: bytes


def _lines(body: bytes) -> _Messages:
    """JSON lines: each a whole JSON value on its own (blank lines skipped)."""
    lines = [line.strip() for line in body.split(b"\n")]
    lines = [line for line in lines if line]
    for index, line in enumerate(lines):
        _whole_json(f"messages[{index}]: ", line)
    return _Messages(len(lines), b"[" + b",".join(lines) + b"]")


def _array(body: bytes) -> _Messages:
    """A JSON array of messages."""
    value = _whole_json("", body)
    if not isinstance(value, list):
        raise RequestError(ErrorCode.BAD_REQUEST, "the body is a JSON array of messages")
    return _Messages(len(value), body)


_READERS: Mapping[str, Callable[[bytes], _Messages]] = {
    JSON_TYPE: _array,
    **dict.fromkeys(LINES_TYPES, _lines),
}


def _whole_json(where: str, text: bytes) -> Any:
    """``text`` as one JSON value, its numbers not even read (the strict parse judges them)."""
    try:
        return json.loads(
            text.decode("utf-8"),
            parse_int=_unread,
            parse_float=_unread,
            parse_constant=_unread,
        )
    except UnicodeDecodeError as exc:
        raise RequestError(ErrorCode.BAD_JSON, f"{where}not UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise RequestError(ErrorCode.BAD_JSON, f"{where}not valid JSON: {exc}") from None


def _unread(text: str) -> None:
    return None


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _digest(token: bytes) -> bytes:
    # Digests of equal length: comparing them says nothing of a token's length.
    return hashlib.sha256(token).digest()


def _json(status: int, value: object, *headers: tuple[str, str]) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode() + b"\n"
    return Response(status, body, JSON_TYPE, (("cache-control", "no-store"), *headers))


def _error(status: int, code: ErrorCode, message: str, *headers: tuple[str, str]) -> Response:
    if status == 503:
        headers = (*headers, ("retry-after", str(RETRY_AFTER_SECONDS)))
    return _json(status, {"error": {"code": code.value, "message": message}}, *headers)
