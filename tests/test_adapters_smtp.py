"""The SMTP adapter against a tiny scripted SMTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import email
import email.policy
import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Priority, Retry, Taken
from ringbearer._secrets import Secret, SecretRef
from ringbearer.integrations import AdapterContext, SmtpSettings, provider_kinds
from ringbearer.integrations._smtp import message_id

SSL = ssl.create_default_context()
SECRETS = {"SMTP_USER": "user-5ecret", "SMTP_PASSWORD": "pa55-5ecret"}
EMAIL = {
    "from": "Studio <hello@studio.example>",
    "to": ["ann@example.com", "bob@example.com"],
    "cc": "planner@example.com",
    "bcc": ["archive@studio.example"],
    "subject": "Your gallery is ready",
    "text": "Hello!\n.\nA line with only a dot, above.",
    "html": "<p>Hello!</p>",
    "headers": {"X-Wedding": "w-42"},
}


class LineReader:
    """CRLF lines from a trio stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def data(self) -> bytes:
        lines = []
        while (line := await self.line()) not in (b".", None):
            assert line is not None
            lines.append(line[1:] if line.startswith(b".") else line)
        return b"\r\n".join(lines) + b"\r\n"


@attrs.define
class FakeSmtp:
    """A scripted server: a reply per command verb, an optional drop, and a transcript."""

    greeting: str = "220 fake.test ESMTP"
    replies: dict[str, str] = attrs.Factory(dict)  # verb (or "END" after the dot) -> reply
    once: dict[str, str] = attrs.Factory(dict)  # like replies, for the next such command only
    drop: str | None = None  # "after-message" | "after-data" (no final reply)
    login: str | None = None  # "user\0password" when AUTH PLAIN is offered
    lines: list[str] = attrs.Factory(list)
    messages: list[bytes] = attrs.Factory(list)
    connections: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            await self.converse(stream, LineReader(stream))

    async def converse(self, stream: trio.SocketStream, reader: LineReader) -> None:
        await self.send(stream, self.greeting)
        if not self.greeting.startswith("220"):
            return
        while (line := await reader.line()) is not None:
            self.lines.append(line.decode())
            verb = line.split(b" ", 1)[0].decode().upper()
            if verb == "DATA":
                if not await self.take_data(stream, reader):
                    return
                continue
            reply = self.reply(verb, line)
            await self.send(stream, reply)
            if verb == "QUIT" or reply.startswith("421"):
                return

    def reply(self, verb: str, line: bytes) -> str:
        if verb == "EHLO":
            extensions = ["fake.test", "8BITMIME"] + (["AUTH PLAIN"] if self.login else [])
            return "\r\n".join(f"250-{e}" for e in extensions[:-1]) + f"\r\n250 {extensions[-1]}"
        if verb == "AUTH":
            given = base64.b64decode(line.split()[-1]).decode()
            return (
                "235 2.7.0 ok"
                if given == f"\0{self.login}"
                else (f"535 5.7.8 bad credentials for {given.split(chr(0))[1]}")
            )
        if verb == "QUIT":
            return "221 2.0.0 bye"
        return self.once.pop(verb, None) or self.replies.get(verb, "250 2.0.0 ok")

    async def take_data(self, stream: trio.SocketStream, reader: LineReader) -> bool:
        reply = self.replies.get("DATA", "354 go ahead")
        await self.send(stream, reply)
        if not reply.startswith("354"):
            return True
        self.messages.append(await reader.data())
        if self.drop == "after-data":
            return False
        await self.send(stream, self.replies.get("END", "250 2.0.0 queued as 1"))
        return self.drop != "after-message"

    @staticmethod
    async def send(stream: trio.SocketStream, reply: str) -> None:
        await stream.send_all(reply.encode() + b"\r\n")


@asynccontextmanager
async def serving(server: FakeSmtp) -> AsyncIterator[tuple[str, int]]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        yield "127.0.0.1", listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def envelope(payload: Mapping[str, Any] = EMAIL, key: str = "msg-0001") -> Envelope:
    return Envelope(
        id=1,
        target="email",
        integration="smtp",
        priority=Priority.NORMAL,
        payload=dict(payload),
        idempotency_key=key,
        attempts=0,
        created_at=1_700_000_000.0,
    )


def adapter(address: tuple[str, int], *, sandbox: bool = True, **settings: Any) -> Any:
    """The smtp kind built from the table, aimed at ``address``."""
    host, port = address
    if sandbox:
        config = SmtpSettings(host="smtp.invalid", helo="client.test", **settings)
    else:
        config = SmtpSettings(host=host, port=port, helo="client.test", **settings)
    ctx = AdapterContext(
        name="smtp",
        timeout=5.0,
        ssl_context=SSL,
        secrets=lambda ref: Secret(SECRETS[str(ref.env)]),
        smtp_override=address if sandbox else None,
    )
    return provider_kinds()["smtp"].build(config, ctx)


async def deliver_all(server: FakeSmtp, *envelopes: Envelope, **settings: Any) -> list[Outcome]:
    async with serving(server) as address, adapter(address, **settings).open_lane() as lane:
        return [await lane.deliver(e) for e in envelopes]


async def test_success_sends_the_mime_message() -> None:
    """A 250 after the data is Delivered, with the Message-ID made from the idempotency key."""
    server = FakeSmtp()
    [outcome] = await deliver_all(server, envelope())
    assert outcome == Delivered(provider_id="<msg-0001@ringbearer>")
    assert server.lines[1:6] == [
        "mail FROM:<hello@studio.example>",
        "rcpt TO:<ann@example.com>",
        "rcpt TO:<bob@example.com>",
        "rcpt TO:<planner@example.com>",
        "rcpt TO:<archive@studio.example>",
    ]
    message = email.message_from_bytes(server.messages[0], policy=email.policy.default)
    assert message["Message-ID"] == "<msg-0001@ringbearer>"
    assert message["X-Idempotency-Key"] == "msg-0001"
    assert message["From"] == "Studio <hello@studio.example>"
    assert message["To"] == "ann@example.com, bob@example.com"
    assert message["Cc"] == "planner@example.com"
    assert message["Bcc"] is None
    assert message["X-Wedding"] == "w-42"
    assert message["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    assert text is not None and ".\r\nA line with only a dot" in text.get_content()


async def test_lane_close_says_quit() -> None:
    """Closing a lane ends its session with QUIT."""
    server = FakeSmtp()
    await deliver_all(server, envelope())
    assert server.lines[-1] == "quit"


async def test_connection_is_reused() -> None:
    """Consecutive messages share one connection."""
    server = FakeSmtp()
    outcomes = await deliver_all(server, envelope(key="a"), envelope(key="b"))
    assert outcomes == [Delivered("<a@ringbearer>"), Delivered("<b@ringbearer>")]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("replies", "status", "step"),
    [
        ({"MAIL": "451 4.3.0 local error"}, 451, "MAIL FROM"),
        ({"RCPT": "450 4.2.1 mailbox busy"}, 450, "RCPT TO"),
        ({"RCPT": "452 4.5.3 too many recipients"}, 452, "RCPT TO"),
        ({"DATA": "451 4.3.0 not now"}, 451, "DATA"),
        ({"END": "452 4.3.1 insufficient storage"}, 452, "end of data"),
    ],
)
async def test_transient_reply_is_retry_not_taken(
    replies: dict[str, str], status: int, step: str
) -> None:
    """A 4yz reply anywhere is an explicit refusal: Retry, not taken, connection kept."""
    server = FakeSmtp(replies=replies)
    async with serving(server) as address, adapter(address).open_lane() as lane:
        outcome = await lane.deliver(envelope())
        server.replies.clear()
        after = await lane.deliver(envelope())
    assert isinstance(outcome, Retry)
    assert (outcome.taken, outcome.status) == (Taken.NO, status)
    assert outcome.reason.startswith(f"SMTP {status} at {step}: ")
    assert after == Delivered("<msg-0001@ringbearer>")
    assert "rset" in server.lines
    assert server.connections == 1


@pytest.mark.parametrize(
    ("replies", "status", "words"),
    [
        ({"MAIL": "553 5.1.8 sender not allowed"}, 553, "sender not allowed"),
        ({"RCPT": "550 5.1.1 no such user"}, 550, "no such user"),
        ({"END": "554 5.7.1 rejected as spam"}, 554, "rejected as spam"),
    ],
)
async def test_permanent_reply(replies: dict[str, str], status: int, words: str) -> None:
    """A 5yz reply is Permanent and carries the server's own text."""
    [outcome] = await deliver_all(FakeSmtp(replies=replies), envelope())
    assert isinstance(outcome, Permanent)
    assert outcome.status == status
    assert words in outcome.reason


async def test_421_greeting_is_retry_not_taken() -> None:
    """A 421 at connect means the server is busy: Retry, not taken."""
    [outcome] = await deliver_all(FakeSmtp(greeting="421 4.3.2 try later"), envelope())
    assert isinstance(outcome, Retry)
    assert (outcome.taken, outcome.status) == (Taken.NO, 421)
    assert "SMTP 421 at connect: 4.3.2 try later" in outcome.reason


async def test_connection_refused_is_retry_not_taken() -> None:
    """Nobody listening: Retry, not taken."""
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with adapter(("127.0.0.1", port)).open_lane() as lane:
        outcome = await lane.deliver(envelope())
    assert isinstance(outcome, Retry)
    assert outcome.taken is Taken.NO
    assert "cannot open an SMTP session" in outcome.reason


async def test_reconnects_after_the_server_drops_the_connection() -> None:
    """A connection the server closed while idle is replaced, and the message goes out."""
    server = FakeSmtp(drop="after-message")
    outcomes = await deliver_all(server, envelope(key="a"), envelope(key="b"))
    assert outcomes == [Delivered("<a@ringbearer>"), Delivered("<b@ringbearer>")]
    assert server.connections == 2
    assert len(server.messages) == 2


async def test_idle_timeout_421_reconnects() -> None:
    """A 421 to MAIL on a reused connection is an idle timeout: reconnect and send."""
    server = FakeSmtp()
    async with serving(server) as address, adapter(address).open_lane() as lane:
        await lane.deliver(envelope(key="a"))
        server.once["MAIL"] = "421 4.4.2 idle timeout"
        outcome = await lane.deliver(envelope(key="b"))
    assert outcome == Delivered("<b@ringbearer>")
    assert server.connections == 2


async def test_connection_lost_after_data_is_maybe_taken() -> None:
    """A connection lost after the data was sent may have delivered it: Retry, maybe taken."""
    server = FakeSmtp(drop="after-data")
    outcomes = await deliver_all(server, envelope(key="a"), envelope(key="b"))
    first = outcomes[0]
    assert isinstance(first, Retry)
    assert first.taken is Taken.MAYBE
    assert isinstance(outcomes[1], Retry)  # the server keeps dropping; each try reconnects
    assert server.connections == 2


async def test_auth_plain_login() -> None:
    """Credentials are resolved from their references and sent with AUTH."""
    server = FakeSmtp(login="user-5ecret\0pa55-5ecret")
    [outcome] = await deliver_all(
        server,
        envelope(),
        username=SecretRef(env="SMTP_USER"),
        password=SecretRef(env="SMTP_PASSWORD"),
    )
    assert outcome == Delivered("<msg-0001@ringbearer>")


async def test_auth_failure_is_permanent_and_hides_secrets() -> None:
    """A 535 is Permanent, and the server echoing the username shows only '***'."""
    server = FakeSmtp(login="user-5ecret\0other")
    [outcome] = await deliver_all(
        server,
        envelope(),
        username=SecretRef(env="SMTP_USER"),
        password=SecretRef(env="SMTP_PASSWORD"),
    )
    assert isinstance(outcome, Permanent)
    assert outcome.status == 535
    assert "5ecret" not in repr(outcome)
    assert "***" in outcome.reason


async def test_starttls_not_offered_is_retry_not_taken() -> None:
    """Outside the sandbox STARTTLS is required; a server without it gets nothing."""
    server = FakeSmtp()
    [outcome] = await deliver_all(server, envelope(), sandbox=False)
    assert isinstance(outcome, Retry)
    assert outcome.taken is Taken.NO
    assert "STARTTLS" in outcome.reason
    assert server.messages == []


async def test_plain_security_outside_the_sandbox() -> None:
    """security = 'none' talks plain SMTP to the configured host and port."""
    server = FakeSmtp()
    [outcome] = await deliver_all(server, envelope(), sandbox=False, security="none")
    assert outcome == Delivered("<msg-0001@ringbearer>")


async def test_non_ascii_address_needs_smtputf8() -> None:
    """A non-ASCII address to a server without SMTPUTF8 is Permanent."""
    payload = {**EMAIL, "to": "zoë@example.com"}
    [outcome] = await deliver_all(FakeSmtp(), envelope(payload))
    assert isinstance(outcome, Permanent)
    assert "SMTPUTF8" in outcome.reason


async def test_invalid_payload_is_permanent_without_connecting() -> None:
    """A payload that no longer fits is Permanent and opens no connection."""
    server = FakeSmtp()
    [outcome] = await deliver_all(server, envelope({"to": "a@example.com"}))
    assert isinstance(outcome, Permanent)
    assert outcome.reason.startswith("invalid payload: ")
    assert server.connections == 0


def test_message_id_from_any_key() -> None:
    """A key that is not a valid msg-id left part is replaced by its digest."""
    assert message_id("3f2a.b-1") == "<3f2a.b-1@ringbearer>"
    odd = message_id("a key <with> @ signs")
    assert odd.startswith("<") and odd.endswith("@ringbearer>")
    assert " " not in odd and odd == message_id("a key <with> @ signs")
