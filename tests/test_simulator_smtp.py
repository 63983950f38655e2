"""The simulator's SMTP server, driven by the standard library's smtplib in a thread."""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from typing import Any, TypeVar

import attrs
import pytest
import trio
import trio.testing

from ringbearer.simulator import Faults, SimulatorState, serve_simulator
from ringbearer.simulator._smtp_wire import LineReader, LineTooLong

HOST = "127.0.0.1"
T = TypeVar("T")


@attrs.frozen
class Smtp:
    state: SimulatorState
    port: int

    async def run(self, work: Callable[[smtplib.SMTP], T], client_timeout: float = 5) -> T:
        """Run ``work`` on a fresh smtplib connection in a worker thread."""

        def session() -> T:
            with smtplib.SMTP(HOST, self.port, timeout=client_timeout) as client:
                return work(client)

        return await trio.to_thread.run_sync(session)

    def stats(self) -> dict[str, Any]:
        snapshot = self.state.smtp.stats.snapshot()
        return attrs.asdict(snapshot)


@pytest.fixture
async def smtp(nursery: trio.Nursery) -> AsyncIterator[Smtp]:
    state = SimulatorState()
    address = await nursery.start(serve_simulator, state, HOST, 0, 0)
    yield Smtp(state, address.smtp_port)


def message(message_id: str = "<m1@acme.test>", body: str = "Hello.\n") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "hi@acme.test"
    mail["To"] = "guest@example.com"
    mail["Subject"] = "Your table"
    mail["Message-ID"] = message_id
    mail.set_content(body)
    return mail


def send(mail: EmailMessage) -> Callable[[smtplib.SMTP], dict[str, Any]]:
    def work(client: smtplib.SMTP) -> dict[str, Any]:
        client.login("user", "secret")
        return dict(client.send_message(mail))

    return work


async def test_ehlo_advertises_auth_size_and_8bitmime(smtp: Smtp) -> None:
    """EHLO lists AUTH PLAIN LOGIN, SIZE, 8BITMIME and PIPELINING."""

    def work(client: smtplib.SMTP) -> dict[str, str]:
        client.ehlo()
        return dict(client.esmtp_features)

    features = await smtp.run(work)
    assert features["auth"].split() == ["PLAIN", "LOGIN"]
    assert {"size", "8bitmime", "pipelining"} <= set(features)


async def test_a_message_is_accepted_and_counted_by_message_id(smtp: Smtp) -> None:
    """A message gets 250; its Message-ID is the key, so a resend counts as a duplicate."""
    assert await smtp.run(send(message())) == {}
    await smtp.run(send(message()))
    await smtp.run(send(message("<m2@acme.test>")))
    assert smtp.stats() == {
        "requests": 3,
        "accepted": 3,
        "unique_keys": 2,
        "duplicates": 1,
        "status_counts": {"250": 3},
        # SMTP has no webhooks: it never sends events.
        "events_sent": 0,
        "events_failed": 0,
        "events_dropped": 0,
        "event_retries": 0,
    }


async def test_several_messages_on_one_connection(smtp: Smtp) -> None:
    """One session can send message after message, with RSET and NOOP in between."""

    def work(client: smtplib.SMTP) -> list[int]:
        codes = []
        for i in range(3):
            client.send_message(message(f"<k{i}@acme.test>"))
            codes += [client.rset()[0], client.noop()[0]]
        return codes

    assert await smtp.run(work) == [250, 250] * 3
    assert smtp.stats()["unique_keys"] == 3


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_mechanisms(smtp: Smtp, mechanism: str) -> None:
    """AUTH PLAIN and LOGIN accept any password but ``invalid``, which gets 535."""

    def work(client: smtplib.SMTP) -> tuple[int, int]:
        client.ehlo()
        client.user, client.password = "user", "invalid"
        method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth(mechanism, method)
        client.password = "secret"
        return refused.value.smtp_code, client.auth(mechanism, method)[0]

    assert await smtp.run(work) == (535, 235)
    assert smtp.stats()["status_counts"] == {"535": 1}


async def test_auth_without_an_initial_response(smtp: Smtp) -> None:
    """AUTH PLAIN without an initial response prompts with 334, and ``*`` aborts."""

    def work(client: smtplib.SMTP) -> list[int]:
        client.ehlo()
        codes = [client.docmd("AUTH", "PLAIN")[0], client.docmd("*")[0]]
        codes += [client.docmd("AUTH", "PLAIN")[0], client.docmd("AHVzZXIAc2VjcmV0")[0]]
        return [*codes, client.docmd("AUTH", "PLAIN dXNlcg==")[0]]

    assert await smtp.run(work) == [334, 501, 334, 235, 503]


@pytest.mark.parametrize(
    ("commands", "code"),
    [
        (["MAIL FROM:<a@x.test>"], 503),  # before EHLO
        (["EHLO me", "RCPT TO:<b@x.test>"], 503),
        (["EHLO me", "DATA"], 503),
        (["EHLO me", "MAIL FROM:<a@x.test>", "DATA"], 503),
        (["EHLO me", "MAIL FROM:<a@x.test>", "MAIL FROM:<a@x.test>"], 503),
        (["EHLO me", "MAIL FROM:<a@x.test>", "AUTH PLAIN"], 503),
        (["EHLO me", "MAIL FROM a@x.test"], 501),
        (["EHLO me", "MAIL FROM:<a@x.test>", "RCPT TO:b@x.test"], 501),
        (["EHLO me", "MAIL FROM:<a@x.test> SIZE=999999999"], 552),
        (["EHLO"], 501),
        (["EHLO me", "AUTH CRAM-MD5"], 504),
        (["EHLO me", "AUTH PLAIN !!!"], 501),
        (["FROB"], 500),
    ],
)
async def test_bad_commands_and_sequences(smtp: Smtp, commands: list[str], code: int) -> None:
    """Unknown commands get 500, bad syntax 501, bad order 503, an oversize 552."""

    def work(client: smtplib.SMTP) -> int:
        return [client.docmd(command)[0] for command in commands][-1]

    assert await smtp.run(work) == code


async def test_quit_says_goodbye(smtp: Smtp) -> None:
    """QUIT gets 221."""
    assert await smtp.run(lambda client: client.docmd("QUIT")[0]) == 221


async def test_outage_refuses_the_greeting(smtp: Smtp) -> None:
    """During an outage the server greets with 421 and hangs up."""
    smtp.state.smtp.faults = Faults(outage=True)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        await smtp.run(lambda client: None)
    assert refused.value.smtp_code == 421
    assert smtp.stats()["status_counts"] == {"421": 1}


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (Faults(error_rate=1.0), 451),
        (Faults(permanent_rate=1.0), 550),
        (Faults(storm=True, retry_after=9), 421),
        (Faults(malformed_rate=1.0), -1),
    ],
)
async def test_message_faults_answer_the_end_of_data(smtp: Smtp, faults: Faults, code: int) -> None:
    """Error, permanent, rate-limit and malformed faults answer DATA with 451, 550, 421, garbage."""
    smtp.state.smtp.faults = faults
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await smtp.run(send(message()))
    assert refused.value.smtp_code == code


async def test_malformed_reply_still_delivers(smtp: Smtp) -> None:
    """A garbled reply comes after the message was taken, so its key is counted."""
    smtp.state.smtp.faults = Faults(malformed_rate=1.0)
    with pytest.raises(smtplib.SMTPDataError):
        await smtp.run(send(message()))
    assert (smtp.stats()["accepted"], smtp.stats()["unique_keys"]) == (1, 1)


@pytest.mark.parametrize("faults", [Faults(reset_rate=1.0), Faults(truncate_rate=1.0)])
async def test_connection_faults_break_the_session(smtp: Smtp, faults: Faults) -> None:
    """Reset and truncate faults leave the client with a broken connection after DATA."""
    smtp.state.smtp.faults = faults
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        await smtp.run(send(message()))


async def test_hang_fault_never_answers_data(smtp: Smtp) -> None:
    """A hang leaves DATA unanswered until the client's timeout."""
    smtp.state.smtp.faults = Faults(hang_rate=1.0)
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        await smtp.run(send(message()), client_timeout=0.3)
    assert smtp.stats()["status_counts"] == {"hang": 1}


async def test_overlong_command_line_is_refused(smtp: Smtp) -> None:
    """A command line past the limit gets 500 and the session ends."""
    stream = await trio.open_tcp_stream(HOST, smtp.port)
    async with stream:
        await stream.send_all(b"NOOP " + b"x" * 10_000 + b"\r\n")
        received = bytearray()
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                received += chunk
    assert received.splitlines()[-1].startswith(b"500 ")


async def reader_with(data: bytes) -> LineReader:
    send_stream, receive_stream = trio.testing.memory_stream_one_way_pair()
    await send_stream.send_all(data)
    await send_stream.aclose()
    return LineReader(receive_stream)


async def test_data_is_dot_unstuffed_up_to_the_lone_dot() -> None:
    """DATA ends at CRLF.CRLF, and a doubled leading dot loses one dot."""
    reader = await reader_with(b"Subject: x\r\n\r\n..leading\r\nplain\n.\r\nNOOP\r\n")
    assert await reader.message(1000) == b"Subject: x\r\n\r\n.leading\r\nplain"
    assert await reader.line(100) == b"NOOP"
    assert await reader.line(100) is None


async def test_oversized_data_is_read_to_its_end_and_refused() -> None:
    """A message over the limit is consumed whole, so the session stays in step."""
    reader = await reader_with(b"a" * 50 + b"\r\n" + b"b" * 50 + b"\r\n.\r\nQUIT\r\n")
    assert await reader.message(80) is None
    assert await reader.line(100) == b"QUIT"


@pytest.mark.parametrize("data", [b"x" * 200, b"x" * 200 + b"\r\n"])
async def test_a_line_past_its_limit_raises(data: bytes) -> None:
    """A line longer than its limit raises LineTooLong, whether or not its ending arrived."""
    reader = await reader_with(data)
    with pytest.raises(LineTooLong):
        await reader.line(100)
