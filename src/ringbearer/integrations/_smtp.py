"""SMTP submission, the email family's last resort, over the standard library's smtplib.

smtplib blocks, so each lane runs it in a worker thread of its own (a capacity
limiter of one) and keeps one connection open between messages, reconnecting
when the server has dropped it. Replies are classified by their RFC 5321
class, and by how far the transaction got::

    where                         2yz         4yz               5yz          connection lost
    connect, TLS, AUTH            -           Retry(NO)         Permanent    Retry(NO)
    MAIL FROM, RCPT TO, DATA      -           Retry(NO)         Permanent    Retry(NO) *
    end of data (after the dot)   Delivered   Retry(NO)         Permanent    Retry(MAYBE)

    * on a reused connection, a drop or a 421 at MAIL FROM means the server
      closed it while idle: the lane reconnects and tries once more.

A 4yz reply is an explicit refusal, so even after the data it means "not
taken". The Message-ID is derived from the idempotency key, so a receiving
side can de-duplicate a message sent twice after an ambiguous failure.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
import smtplib
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any, Literal

import attrs
import trio
from attrs import validators as v

from .._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from ._base import (
    AdapterContext,
    BatchLimits,
    Finding,
    InThread,
    Lane,
    ProviderKind,
    Redactor,
    SecretLedger,
    Verdict,
    conforming_id,
    shorten,
)
from .email import EmailPayload

_MESSAGE_ID_LEFT = re.compile(r"[A-Za-z0-9_+=-]+(\.[A-Za-z0-9_+=-]+)*")


@attrs.frozen
class SmtpSettings:
    host: str
    port: int = attrs.field(default=587, validator=[v.ge(1), v.le(65535)])
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: SecretRef | None = None
    password: SecretRef | None = None
    helo: str | None = None  # the EHLO name; smtplib's default is this host's FQDN

    def __attrs_post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password', or neither")


# --- the message -------------------------------------------------------------


@attrs.frozen
class Composed:
    """A message ready for the wire, with its SMTP envelope."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    content: bytes = attrs.field(repr=False)
    smtputf8: bool = False


def _fits_id_left(key: str) -> bool:
    return _MESSAGE_ID_LEFT.fullmatch(key) is not None and len(key) <= 200


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Header lines up to RFC 5322's 998: the default 78 turns a long URL (a
# List-Unsubscribe link) into encoded words, which no mail client reads as a
# URL, and folding it has broken DKIM on some receivers.
_ONE_LINE = email.policy.SMTP.clone(max_line_length=998)
_ONE_LINE_UTF8 = email.policy.SMTPUTF8.clone(max_line_length=998)


def message_id(idempotency_key: str) -> str:
    """``<key@ringbearer>``, or a digest of the key when it is not a valid id-left."""
    return f"<{conforming_id(idempotency_key, _fits_id_left, _sha256)}@ringbearer>"


def compose(mail: EmailPayload, envelope: Envelope) -> Composed:
    """Build the MIME message; Bcc stays in the envelope, never in the headers."""
    msg = EmailMessage(policy=_ONE_LINE)
    msg["From"] = mail.sender
    msg["To"] = ", ".join(mail.to)
    if mail.cc:
        msg["Cc"] = ", ".join(mail.cc)
    if mail.reply_to:
        msg["Reply-To"] = ", ".join(mail.reply_to)
    msg["Subject"] = mail.subject
    # The creation time, so every attempt sends the very same message.
    msg["Date"] = email.utils.formatdate(envelope.created_at, usegmt=True)
    msg["Message-ID"] = message_id(envelope.idempotency_key)
    msg["X-Idempotency-Key"] = envelope.idempotency_key
    for name, value in mail.headers.items():
        msg[name] = value
    _set_body(msg, mail)
    sender = email.utils.parseaddr(mail.sender)[1]
    recipients = tuple(email.utils.parseaddr(r)[1] for r in mail.recipients)
    utf8 = not all(address.isascii() for address in (sender, *recipients))
    policy = _ONE_LINE_UTF8 if utf8 else _ONE_LINE
    content = msg.as_bytes(policy=policy)
    return Composed(sender, recipients, msg["Message-ID"], content, utf8)


def _set_body(msg: EmailMessage, mail: EmailPayload) -> None:
    if mail.text is not None:
        msg.set_content(mail.text)
        if mail.html is not None:
            msg.add_alternative(mail.html, subtype="html")
    elif mail.html is not None:
        msg.set_content(mail.html, subtype="html")


# --- replies -----------------------------------------------------------------


def _words(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return shorten(text)


def reply_outcome(code: int, reply: bytes | str, step: str, unexpected: Taken) -> Outcome:
    """Classify a negative or unexpected reply by its class."""
    reason = f"SMTP {code} at {step}: {_words(reply)}"
    if 400 <= code < 500:
        return Retry(reason, taken=Taken.NO, status=code)
    if 500 <= code < 600:
        return Permanent(reason, status=code)
    return Retry(reason, taken=unexpected, status=code if code > 0 else None)


def connect_failure(exc: Exception, endpoint: str) -> Outcome:
    """Nothing was sent yet: any failure to set up the session is 'not taken' or 5yz."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return reply_outcome(exc.smtp_code, exc.smtp_error, "connect", Taken.NO)
    return Retry(f"cannot open an SMTP session with {endpoint}: {exc}", taken=Taken.NO)


# --- the connection ----------------------------------------------------------


@attrs.frozen
class SmtpEndpoint:
    """Where and how a lane connects; ``connect`` blocks."""

    host: str
    port: int
    security: str
    helo: str | None
    timeout: float
    ssl_context: ssl.SSLContext = attrs.field(repr=False)
    credentials: tuple[Secret, Secret] | None = None
    sandbox: bool = False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.helo,
                timeout=self.timeout,
                context=self.ssl_context,
            )
        else:
            conn = smtplib.SMTP(
                self.host, self.port, local_hostname=self.helo, timeout=self.timeout
            )
        try:
            self._start(conn)
        except Exception:
            conn.close()
            raise
        return conn

    def _start(self, conn: smtplib.SMTP) -> None:
        conn.ehlo_or_helo_if_needed()
        if self.security == "starttls":
            conn.starttls(context=self.ssl_context)
            conn.ehlo()
        # The simulator's SMTP server may not offer AUTH; a real one must.
        if self.credentials is not None and (conn.has_extn("auth") or not self.sandbox):
            user, password = self.credentials
            conn.login(user.reveal(), password.reveal())


class _Stale(Exception):
    """A reused connection turned out to be closed before the transaction began."""


@attrs.define
class SmtpLane:
    """One persistent SMTP connection; everything blocking runs in the lane's own thread."""

    endpoint: SmtpEndpoint
    redactor: Redactor
    _conn: smtplib.SMTP | None = None
    _limiter: trio.CapacityLimiter = attrs.Factory(lambda: trio.CapacityLimiter(1))

    async def deliver(self, envelope: Envelope) -> Outcome:
        try:
            composed = compose(EmailPayload.parse(envelope.payload), envelope)
        except InvalidPayload as exc:
            return Permanent(f"invalid payload: {exc.message}")
        outcome = await trio.to_thread.run_sync(self._send, composed, limiter=self._limiter)
        return self.redactor.outcome(outcome)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._quit, limiter=self._limiter)

    def _send(self, composed: Composed) -> Outcome:
        if self._conn is not None:
            try:
                return self._transaction(self._conn, composed, reused=True)
            except _Stale:
                self._drop()
        try:
            self._conn = self.endpoint.connect()
        except (smtplib.SMTPException, OSError) as exc:
            return connect_failure(exc, str(self.endpoint))
        try:
            return self._transaction(self._conn, composed, reused=False)
        except _Stale:
            self._drop()
            return Retry("SMTP connection closed before MAIL FROM", taken=Taken.NO)

    def _transaction(self, conn: smtplib.SMTP, composed: Composed, *, reused: bool) -> Outcome:
        try:
            code, reply = conn.mail(composed.sender, ["SMTPUTF8"] if composed.smtputf8 else [])
        except smtplib.SMTPNotSupportedError:
            return Permanent("non-ASCII addresses need SMTPUTF8, which the server does not offer")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Stale from exc
        if code == 421 and reused:
            raise _Stale  # the server timed the idle connection out
        if code != 250:
            return self._abort(conn, reply_outcome(code, reply, "MAIL FROM", Taken.NO))
        try:
            return self._recipients_and_data(conn, composed)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Retry(f"SMTP connection lost: {exc}", taken=Taken.NO)

    def _recipients_and_data(self, conn: smtplib.SMTP, composed: Composed) -> Outcome:
        for recipient in composed.recipients:
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                # All or nothing: a message goes to every recipient or to none.
                return self._abort(conn, reply_outcome(code, reply, "RCPT TO", Taken.NO))
        try:
            code, reply = conn.data(composed.content)
        except smtplib.SMTPDataError as exc:  # DATA itself refused, before any content
            return self._abort(conn, reply_outcome(exc.smtp_code, exc.smtp_error, "DATA", Taken.NO))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return Retry(f"SMTP connection lost during DATA: {exc}", taken=Taken.MAYBE)
        if code == 250:
            return Delivered(provider_id=composed.message_id)
        return self._abort(conn, reply_outcome(code, reply, "end of data", Taken.MAYBE))

    def _abort(self, conn: smtplib.SMTP, outcome: Outcome) -> Outcome:
        """Reset the transaction so the connection can carry the next message."""
        if isinstance(outcome, Retry | Permanent) and outcome.status == 421:
            self._drop()  # 421: the server is closing the channel
            return outcome
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
        return outcome

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _quit(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


@attrs.frozen
class SmtpAdapter:
    """The SMTP provider: the shared email payload, sent over one connection per lane."""

    endpoint: SmtpEndpoint
    redactor: Redactor = attrs.field(factory=Redactor)
    kind: str = "smtp"
    batching: BatchLimits | None = None  # one message a transaction

    def validate(self, payload: Mapping[str, Any]) -> None:
        EmailPayload.parse(payload)

    @asynccontextmanager
    async def open_lane(self) -> AsyncIterator[Lane]:
        lane = SmtpLane(self.endpoint, self.redactor)
        try:
            yield lane
        finally:
            # QUIT even when the lane is cancelled; the socket timeout bounds it.
            with trio.CancelScope(shield=True):
                await lane.aclose()


def build_smtp(settings: SmtpSettings, ctx: AdapterContext) -> SmtpAdapter:
    """Make the adapter; in the sandbox, talk plain SMTP to the simulator."""
    ledger = SecretLedger(ctx.secrets)
    credentials = None
    if settings.username is not None and settings.password is not None:
        credentials = (ledger(settings.username), ledger(settings.password))
    host, port, security = settings.host, settings.port, settings.security
    if ctx.smtp_override is not None:
        (host, port), security = ctx.smtp_override, "none"
    endpoint = SmtpEndpoint(
        host=host,
        port=port,
        security=security,
        helo=settings.helo,
        timeout=ctx.timeout,
        ssl_context=ctx.ssl_context,
        credentials=credentials,
        sandbox=ctx.smtp_override is not None,
    )
    return SmtpAdapter(endpoint, ledger.redactor())


# --- preflight ---------------------------------------------------------------------


def _session(settings: SmtpSettings, ctx: AdapterContext) -> Finding:
    """Blocking: open a session as the adapter does, and QUIT before any transaction."""
    endpoint = build_smtp(settings, ctx).endpoint
    where = str(endpoint)
    try:
        conn = endpoint.connect()
    except smtplib.SMTPAuthenticationError as exc:
        return Finding(Verdict.FAIL, f"{where}: credentials refused ({_reply_words(exc)})")
    except smtplib.SMTPResponseException as exc:
        return Finding(Verdict.FAIL, f"{where}: {_reply_words(exc)}")
    except smtplib.SMTPException as exc:
        return Finding(Verdict.FAIL, f"{where}: {exc}")
    except ssl.SSLError as exc:
        return Finding(Verdict.FAIL, f"TLS failed with {where}: {exc}")
    except OSError as exc:
        return Finding(Verdict.FAIL, f"unreachable: {where}: {exc.strerror or exc}")
    done = ["EHLO", *{"starttls": ["STARTTLS"], "tls": ["TLS"]}.get(endpoint.security, [])]
    # The adapter's rule: the simulator's server may not offer AUTH; a real one must.
    if endpoint.credentials is not None and (conn.has_extn("auth") or not endpoint.sandbox):
        done.append("AUTH")
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
    return Finding(Verdict.PASS, f"{where}: {', '.join(done)} accepted; QUIT before MAIL FROM")


def _reply_words(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"SMTP {exc.smtp_code}: {shorten(text)}"


KIND = ProviderKind(
    kind="smtp",
    settings_type=SmtpSettings,
    build=build_smtp,
    family="email",
    probe=InThread(_session),
)
