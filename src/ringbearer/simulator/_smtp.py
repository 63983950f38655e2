"""A small SMTP submission server on trio that answers like a relay, faults included.

It speaks EHLO/HELO, AUTH PLAIN and LOGIN, MAIL, RCPT, DATA, RSET, NOOP and
QUIT, without TLS. Authentication is optional, as on a trusted relay; the
password ``invalid`` gets 535. Faults strike once per message, at the end of
DATA, except an outage, which refuses the greeting with 421.

For stats, a "request" is one message's final reply (or a refused greeting or
login); its key is the message's ``Message-ID`` header. An accepted message is
counted per ``RCPT TO`` address, and its header fields are kept for
``/_sim/mail``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import logging
import re

import attrs
import trio

from .._httpserver import reset_connection, serve_tcp
from ._faults import FaultKind
from ._mail import SentMail
from ._slot import ProviderSlot
from ._smtp_wire import LineReader, LineTooLong

_HOSTNAME = "simulator.invalid"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_MAX_COMMAND_BYTES = 4096
_MAX_RECIPIENTS = 100
_MAIL_FROM = re.compile(r"FROM:\s*<([^<>]*)>\s*(.*)", re.IGNORECASE)
_RCPT_TO = re.compile(r"TO:\s*<([^<>]+)>\s*(.*)", re.IGNORECASE)
_SIZE_PARAM = re.compile(r"(?:^|\s)SIZE=(\d+)", re.IGNORECASE)
logger = logging.getLogger(__name__)
_EHLO_LINES = (
    f"250-SIZE {MAX_MESSAGE_BYTES}",
    "250-8BITMIME",
    "250-PIPELINING",
    "250-ENHANCEDSTATUSCODES",
    "250 AUTH PLAIN LOGIN",
)


class Phase(enum.Enum):
    """Where a session is in the mail transaction."""

    CONNECTED = "connected"  # greeted; EHLO/HELO expected
    READY = "ready"  # may AUTH or start a transaction with MAIL
    MAIL = "mail"  # sender given; RCPT expected
    RCPT = "rcpt"  # at least one recipient; more RCPT or DATA


class After(enum.Enum):
    """What the session does once a message's verdict is sent."""

    CONTINUE = "continue"
    CLOSE = "close"
    RESET = "reset"
    HANG = "hang"


@attrs.frozen
class Verdict:
    """The end of one message: what to count, what to send, what to do next."""

    label: str
    accepted: bool
    reply: bytes
    after: After = After.CONTINUE


class _Hangup(Exception):
    """The session is over: the client quit, left, or a reply closed it."""


async def serve_smtp(
    slot: ProviderSlot,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve SMTP on host:port forever; ``started`` gets the bound port (port 0 = any)."""
    serve = functools.partial(_serve_session, slot)
    await serve_tcp(serve, host, port, task_status=task_status)


async def _serve_session(slot: ProviderSlot, stream: trio.SocketStream) -> None:
    session = Session(stream, slot, LineReader(stream))
    try:
        await session.run()
    except (_Hangup, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        # One session's bug must not take the listener and the other sessions down.
        logger.exception("SMTP session failed")
    finally:
        await stream.aclose()


def verdict(fault: FaultKind | None, queue_id: str, retry_after: int) -> Verdict:
    """How the end of DATA is answered under ``fault``."""
    match fault:
        case None:
            return Verdict("250", True, b"250 2.0.0 Ok: queued as %s\r\n" % queue_id.encode())
        case FaultKind.MALFORMED:
            return Verdict("250", True, b"2x0 garbled reply\r\n")
        case FaultKind.TRUNCATE:
            # The first line of a multi-line reply, then nothing: the client
            # waits for the rest and finds the connection closed.
            return Verdict("250", True, b"250-2.0.0 Ok: queued\r\n", After.CLOSE)
        case FaultKind.ERROR:
            return Verdict("451", False, b"451 4.3.0 Error: local error in processing\r\n")
        case FaultKind.PERMANENT:
            return Verdict("550", False, b"550 5.7.1 Message rejected by policy\r\n")
        case FaultKind.RATE_LIMIT:
            text = b"421 4.7.0 Too many messages, try again in %d seconds\r\n" % retry_after
            return Verdict("421", False, text, After.CLOSE)
        case FaultKind.OUTAGE:
            text = b"421 4.3.2 Service not available, closing transmission channel\r\n"
            return Verdict("421", False, text, After.CLOSE)
        case FaultKind.RESET:
            return Verdict("reset", False, b"", After.RESET)
        case FaultKind.HANG:
            return Verdict("hang", False, b"", After.HANG)


@attrs.define
class Session:
    """One client's SMTP conversation."""

    stream: trio.SocketStream
    slot: ProviderSlot
    reader: LineReader
    phase: Phase = Phase.CONNECTED
    authenticated: bool = False
    recipients: list[str] = attrs.Factory(list)
    sender: str = ""

    async def run(self) -> None:
        if self.slot.faults.outage:
            self.slot.spend()
            self.slot.stats.record("421", False, None)
            await self.reply("421 4.3.2 Service not available, closing transmission channel")
            return
        await self.reply(f"220 {_HOSTNAME} ESMTP ringbearer simulator")
        try:
            while (line := await self.reader.line(_MAX_COMMAND_BYTES)) is not None:
                await self.command(line.decode("utf-8", errors="replace"))
        except LineTooLong:
            await self.reply("500 5.5.2 Error: line too long")

    async def reply(self, *lines: str) -> None:
        await self.stream.send_all("".join(f"{line}\r\n" for line in lines).encode())

    async def command(self, line: str) -> None:
        verb, _, argument = line.partition(" ")
        match verb.upper():
            case "EHLO" | "HELO":
                await self.greet(verb.upper(), argument.strip())
            case "AUTH":
                await self.auth(argument.split())
            case "MAIL":
                await self.mail(argument)
            case "RCPT":
                await self.rcpt(argument)
            case "DATA":
                await self.data(argument)
            case "RSET":
                self.phase = Phase.READY if self.phase is not Phase.CONNECTED else self.phase
                await self.reply("250 2.0.0 Ok")
            case "NOOP":
                await self.reply("250 2.0.0 Ok")
            case "QUIT":
                await self.reply("221 2.0.0 Bye")
                raise _Hangup
            case _:
                await self.reply("500 5.5.2 Error: command not recognized")

    async def greet(self, verb: str, domain: str) -> None:
        if not domain:
            await self.reply(f"501 5.5.4 Syntax: {verb} hostname")
            return
        self.phase = Phase.READY
        if verb == "HELO":
            await self.reply(f"250 {_HOSTNAME}")
        else:
            await self.reply(f"250-{_HOSTNAME} Hello {domain}", *_EHLO_LINES)

    async def auth(self, words: list[str]) -> None:
        refusal = self._auth_refusal(words)
        if refusal is not None:
            await self.reply(refusal)
            return
        try:
            password = await self._password(words[0].upper(), words[1:])
        except ValueError:
            await self.reply("501 5.5.2 Error: cannot decode the response")
            return
        if password is None:
            await self.reply("501 5.7.0 Error: authentication aborted")
        elif password == "invalid":
            self.slot.stats.record("535", False, None)
            await self.reply("535 5.7.8 Error: authentication failed")
        else:
            self.authenticated = True
            await self.reply("235 2.7.0 Authentication successful")

    def _auth_refusal(self, words: list[str]) -> str | None:
        if self.phase is Phase.CONNECTED:
            return "503 5.5.1 Error: send HELO/EHLO first"
        if self.phase is not Phase.READY:
            return "503 5.5.1 Error: MAIL transaction in progress"
        if self.authenticated:
            return "503 5.5.1 Error: already authenticated"
        if not words or words[0].upper() not in ("PLAIN", "LOGIN") or len(words) > 2:
            return "504 5.5.4 Error: unrecognized authentication type"
        return None

    async def _password(self, mechanism: str, initial: list[str]) -> str | None:
        """The password the client sent; None if it aborted; ValueError if unreadable."""
        if mechanism == "PLAIN":
            response = initial[0] if initial else await self._challenge("")
            if response is None:
                return None
            fields = _decode(response).split("\0")
            if len(fields) != 3:
                raise ValueError("AUTH PLAIN wants authzid NUL authcid NUL password")
            return fields[2]
        if not initial and await self._challenge("VXNlcm5hbWU6") is None:  # "Username:"
            return None
        response = await self._challenge("UGFzc3dvcmQ6")  # "Password:"
        return None if response is None else _decode(response)

    async def _challenge(self, prompt: str) -> str | None:
        """Send a 334 prompt; the client's answer, or None if it cancelled with ``*``."""
        await self.reply(f"334 {prompt}")
        line = await self.reader.line(_MAX_COMMAND_BYTES)
        if line is None:
            raise _Hangup
        answer = line.decode("ascii", errors="replace").strip()
        return None if answer == "*" else answer

    async def mail(self, argument: str) -> None:
        if self.phase is Phase.CONNECTED:
            await self.reply("503 5.5.1 Error: send HELO/EHLO first")
            return
        if self.phase is not Phase.READY:
            await self.reply("503 5.5.1 Error: nested MAIL command")
            return
        match = _MAIL_FROM.fullmatch(argument)
        if match is None:
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        size = _SIZE_PARAM.search(match[2])
        if size is not None and int(size[1]) > MAX_MESSAGE_BYTES:
            await self.reply("552 5.3.4 Error: message size exceeds fixed limit")
            return
        self.phase, self.recipients, self.sender = Phase.MAIL, [], match[1]
        await self.reply("250 2.1.0 Ok")

    async def rcpt(self, argument: str) -> None:
        if self.phase not in (Phase.MAIL, Phase.RCPT):
            await self.reply("503 5.5.1 Error: need MAIL command")
        elif (match := _RCPT_TO.fullmatch(argument)) is None:
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
        elif len(self.recipients) >= _MAX_RECIPIENTS:
            await self.reply("452 4.5.3 Error: too many recipients")
        else:
            self.phase = Phase.RCPT
            self.recipients.append(match[1].strip().lower())
            await self.reply("250 2.1.5 Ok")

    async def data(self, argument: str) -> None:
        if self.phase is not Phase.RCPT:
            need = "RCPT" if self.phase is Phase.MAIL else "MAIL"
            await self.reply(f"503 5.5.1 Error: need {need} command")
            return
        if argument.strip():
            await self.reply("501 5.5.4 Syntax: DATA")
            return
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        message = await self.reader.message(MAX_MESSAGE_BYTES)
        self.phase = Phase.READY
        if message is None:
            self.slot.stats.record("552", False, None)
            await self.reply("552 5.3.4 Error: message size exceeds fixed limit")
            return
        await self.deliver(message)

    async def deliver(self, message: bytes) -> None:
        slot = self.slot
        faults = slot.faults  # as they stand for this message: a count may end them
        queue_id = f"{slot.rng.getrandbits(40):010X}"
        result = verdict(slot.draw(), queue_id, faults.retry_after)
        sent: tuple[SentMail, ...] = ()
        key = None
        if result.accepted:
            mail = self._mail(queue_id, header_fields(message))
            sent, key = (mail,), mail.header("message-id") or None
        slot.stats.record(result.label, result.accepted, key, sent)
        if faults.latency_ms:
            await trio.sleep(faults.latency_ms / 1000)
        await self.finish(result)

    def _mail(self, queue_id: str, fields: dict[str, str]) -> SentMail:
        """The message as taken: its envelope's recipients, its header fields as written."""
        return SentMail(
            provider_id=queue_id,
            sender=self.sender,
            to=tuple(self.recipients),
            subject=next((v for k, v in fields.items() if k.lower() == "subject"), ""),
            headers=fields,
        )

    async def finish(self, result: Verdict) -> None:
        match result.after:
            case After.RESET:
                reset_connection(self.stream.socket)
                raise _Hangup
            case After.HANG:
                await self.reader.drain()
                raise _Hangup
        await self.stream.send_all(result.reply)
        if result.after is After.CLOSE:
            raise _Hangup


def header_fields(message: bytes) -> dict[str, str]:
    """A message's header fields, unfolded, by name as written; the first of a repeated name."""
    head = message.split(b"\r\n\r\n", 1)[0]
    head = re.sub(rb"\r\n[ \t]+", b" ", head)
    fields: dict[str, str] = {}
    for line in head.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip():
            text = name.strip().decode("utf-8", errors="replace")
            fields.setdefault(text, value.strip().decode("utf-8", errors="replace"))
    return fields


def _decode(text: str) -> str:
    if text == "=":
        return ""  # RFC 4954: "=" is an empty initial response
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
