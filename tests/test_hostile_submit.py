"""Hostile submits, property-based: every request line is refused with a documented code or
accepted and carried to an end, and an innocent message is delivered after it.

The core runs the real submit handler, actors and dispatchers on the in-memory store under
trio's clock. Its integrations are real adapters (Resend, a Slack webhook, Twilio SMS) whose
provider answers from an ``httpx.MockTransport``, a fake that encodes each payload and key
as strictly as a wire would, and a fake with the email family's payload check that composes
each message as the SMTP adapter does: whatever the edge takes, the wire can carry.
"""

from __future__ import annotations

import json
import math
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, event, example, given, settings

from ringbearer import _config, _daemon
from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent
from ringbearer._errors import ErrorCode, RequestError
from ringbearer._metrics import Metrics
from ringbearer._parts import Base
from ringbearer._secrets import Secret
from ringbearer._systemd import Notifier
from ringbearer.control import MessageIn, Submit, _protocol
from ringbearer.integrations import (
    AdapterContext,
    EmailPayload,
    FakeAdapter,
    FakeSettings,
    ProviderKind,
    fake_kinds,
    provider_kinds,
)
from ringbearer.integrations._base import LINE_BOUNDARIES
from ringbearer.integrations._smtp import compose
from ringbearer.store import MemoryStore, MessageStatus

from .harness import Driver, wall

CONVERTER = _protocol.converter()
# What a refused line or submit may answer: the documented codes of bad input.
PARSE_CODES = {ErrorCode.BAD_JSON, ErrorCode.BAD_REQUEST, ErrorCode.BAD_ARGS}
SUBMIT_CODES = {
    ErrorCode.BAD_ARGS,
    ErrorCode.TOO_MANY,
    ErrorCode.INVALID_PAYLOAD,
    ErrorCode.UNKNOWN_TARGET,
    ErrorCode.KEY_REUSED,
}

CONFIG = """
[wedding_day]
weekdays = []
[daemon]
grace_seconds = 5
[defaults]
lanes = 2
mailbox = 4
[defaults.retry]
initial_seconds = 1
max_seconds = 10
max_attempts = 3
[integrations.alpha]
kind = "fake"
[integrations.resend]
kind = "resend"
api_key = { env = "RESEND_API_KEY" }
[integrations.mail]
kind = "mail_fake"
[integrations.slack]
kind = "slack_webhook"
url = { env = "SLACK_WEBHOOK_URL" }
[integrations.sms]
kind = "twilio_sms"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = { env = "TWILIO_AUTH_TOKEN" }
sender = "+15017122661"
[groups]
email = ["resend", "mail"]
"""
EMAIL: dict[str, Any] = {
    "from": "Studio <studio@example.com>",
    "to": ["guest@example.com"],
    "subject": "Timeline update",
    "text": "The first dance is at 19:30.",
}
INNOCENT: dict[str, dict[str, Any]] = {
    "alpha": {"n": 1},
    "email": EMAIL,  # Resend first: the group fails over to mail only on a retryable failure
    "mail": EMAIL,
    "slack": {"text": "all well"},
    "sms": {"to": "+15550100", "body": "all well"},
}


# -- the core ---------------------------------------------------------------------------------


def provider_answer(request: httpx.Request) -> httpx.Response:
    """Each provider's success, to a request that is strict JSON (as strict parsers read it)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            strict_text(json.loads(request.content, parse_constant=refuse_constant))
        except ValueError as exc:
            return httpx.Response(400, json={"name": "validation_error", "message": str(exc)})
    if request.url.path.endswith("/emails"):
        return httpx.Response(200, json={"id": "re_1"})
    if request.url.path.endswith("/Messages.json"):
        return httpx.Response(201, json={"sid": "SM1"})
    return httpx.Response(200, text="ok")


def refuse_constant(name: str) -> Any:
    raise ValueError(f"strict JSON has no {name}")


def strict_text(value: object) -> bytes:
    """``value`` as UTF-8 JSON, as a store or a strict provider holds it (no lone surrogate,
    no NaN); raises ValueError (UnicodeEncodeError is one) when it cannot be."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()


@attrs.define
class Wire:
    """What the fakes found they could not encode (the edge let it through)."""

    failures: list[str] = attrs.Factory(list)

    async def encode(self, envelope: Envelope) -> Outcome:
        """As an HTTP provider carries it: a strict JSON body, the key as a header."""
        try:
            body = strict_text(envelope.payload)
            httpx.Request("POST", "https://x.test/", content=body, headers=self._key(envelope))
        except Exception as exc:  # any failure here is the edge's fault
            self.failures.append(f"{envelope.id}: {exc!r}")
            return Permanent(f"unencodable: {exc!r}")
        return Delivered(provider_id=f"fake-{envelope.id}")

    async def mail(self, envelope: Envelope) -> Outcome:
        """As the SMTP adapter composes it."""
        try:
            compose(EmailPayload.parse(envelope.payload), envelope)
        except Exception as exc:  # as above
            self.failures.append(f"{envelope.id}: {exc!r}")
            return Permanent(f"uncomposable: {exc!r}")
        return Delivered(provider_id=f"mail-{envelope.id}")

    @staticmethod
    def _key(envelope: Envelope) -> dict[str, str]:
        return {"Idempotency-Key": envelope.idempotency_key}


@attrs.define
class MailFake(FakeAdapter):
    """A fake with the email family's payload check (what every email member asks)."""

    def validate(self, payload: Any) -> None:
        EmailPayload.parse(payload)


def kinds(wire: Wire) -> dict[str, ProviderKind]:
    adapters: dict[str, FakeAdapter] = {}
    table = dict(fake_kinds(adapters))
    real = provider_kinds()
    for name in ("resend", "slack_webhook", "twilio_sms"):
        table[name] = attrs.evolve(real[name], build=_mocked(real[name]))
    table["mail_fake"] = ProviderKind(
        kind="mail_fake",
        settings_type=FakeSettings,
        build=lambda settings, ctx: MailFake(ctx.name, behaviour=wire.mail),
        family="email",
    )
    return table


def _mocked(kind: ProviderKind) -> Any:
    def build(settings: Any, ctx: AdapterContext) -> Any:
        secret = Secret("https://hooks.slack.test/services/T0/B0/secret")
        mocked = attrs.evolve(
            ctx, transport=httpx.MockTransport(provider_answer), secrets=lambda ref: secret
        )
        return kind.build(settings, mocked)

    return build


@asynccontextmanager
async def hostile_core(tmp_path: Path) -> AsyncIterator[tuple[Driver, MemoryStore, Wire]]:
    """The daemon's core on these integrations, as tests/harness.py runs it."""
    wire = Wire()
    table = kinds(wire)
    config = _config.parse(CONFIG, tmp_path / "config.toml", table)
    store = MemoryStore(wall)
    base = Base(
        config, store, wall, Metrics(), None, table, ssl.create_default_context(),
        notifier=Notifier({}),
    )  # fmt: skip
    stop, ready = trio.Event(), trio.Event()
    started: list[Driver] = []
    async with trio.open_nursery() as nursery:

        def on_ready(parts: Any) -> None:
            fake = parts.fleet.adapters["alpha"]
            assert isinstance(fake, FakeAdapter)
            fake.behaviour = wire.encode
            started.append(Driver(parts))
            ready.set()

        nursery.start_soon(lambda: _daemon.run_core(base, stop, on_ready))
        await ready.wait()
        yield started[0], store, wire
        stop.set()


# -- hostile values ---------------------------------------------------------------------------


def raw(number: str) -> str:
    """A placeholder for a number json.dumps cannot write (``1e309``), put back in the line."""
    return f"@@raw:{number}@@"


RAW = re.compile(r'"@@raw:([^"@]*)@@"')
# Each hostile string holds characters of one kind of danger.
DANGERS = {
    "surrogate": st.characters(categories=["Cs"]) | st.sampled_from(["\ud800", "\udfff"]),
    "boundary": st.sampled_from(LINE_BOUNDARIES),
    "control": st.sampled_from([*map(chr, range(0x20)), "\x7f", "\x80", "\x9f"]),
    "other": st.sampled_from(["\ufeff", "\u200b", "\ufffd", "\U0001f600", "é", '"', "\\", " "])
    | st.characters(codec=None),
}
KNOWN_BAD = ["clé-1", "k\r\nX-Evil: 1", "x" * 300, "", " ", "Timeline\u2028Bcc: a@b.c", "\x00"]


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """Plain text with characters of one danger in it, or a known bad string."""
    danger = draw(st.sampled_from([*sorted(DANGERS), "known"]))
    if danger == "known":
        return draw(st.sampled_from(KNOWN_BAD))
    before, after = draw(st.text(max_size=6)), draw(st.text(max_size=6))
    return before + "".join(draw(st.lists(DANGERS[danger], min_size=1, max_size=3))) + after


hostile_numbers = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        raw("1e309"),
        raw("-1e309"),
        raw("-0"),
        -0.0,
        0,
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        10**30,
        1e308,
        5e-324,
        raw("9" * 5000),
    ]
)
hostile_scalars = hostile_text() | hostile_numbers | st.booleans() | st.none()
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text(), inner, max_size=3),
    max_leaves=4,
)


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# Around the nesting bound: the payload sits five levels into the request.
deep_values = st.builds(nested, st.integers(50, 65), hostile_scalars)
# Mostly text (most of it carried), then numbers, trees and deep nesting (most refused).
VALUE_KINDS = {
    "text": hostile_text(),
    "number": hostile_numbers,
    "tree": hostile_values,
    "deep": deep_values,
}


@st.composite
def hostile_value(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["text"] * 6 + ["number"] * 2 + ["tree", "deep"]))
    return draw(VALUE_KINDS[kind])


@st.composite
def hostile_message(draw: st.DrawFn) -> dict[str, Any]:
    """An innocent message of a target with one part of it made hostile."""
    target = draw(st.sampled_from(sorted(INNOCENT)))
    payload = dict(INNOCENT[target])
    message: dict[str, Any] = {"target": target, "payload": payload}
    parts = ["payload"] * 5 + ["key"] * 2 + ["deliver_by", "priority", "target", "none"]
    where = draw(st.sampled_from(parts))
    value = draw(hostile_value())
    match where:
        case "payload":
            payload[draw(st.sampled_from([*sorted(payload), "x"]))] = value
        case "none":
            pass
        case _:
            message[where] = value
    return message


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    """A submit line of one or two messages, escaped or raw (surrogates as raw bytes)."""
    messages = draw(st.lists(hostile_message(), min_size=1, max_size=2))
    request_id = draw(st.sampled_from(["plain"] * 4 + ["hostile"]))
    request = {
        "cmd": "submit",
        "id": draw(hostile_scalars if request_id == "hostile" else st.integers(1, 99)),
    }
    request["args"] = {"messages": messages}
    text = json.dumps(request, ensure_ascii=draw(st.booleans()))
    return RAW.sub(r"\1", text).encode("utf-8", "surrogatepass")


# -- the property -----------------------------------------------------------------------------

example_number = iter(range(1_000_000))


def line_of(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"id": 1, "cmd": "submit", "args": {"messages": list(messages)}}).encode()


def to(target: str, **changes: Any) -> dict[str, Any]:
    return {"target": target, "payload": {**INNOCENT[target], **changes}}


# The symptoms (1 to 4), always among the examples.
SYMPTOMS = [
    line_of(to("slack", text="\ud800")),  # 1
    line_of(to("alpha", x={"\udfff": "a\ud800"})),  # 1, in a key
    line_of(to("alpha", x="X")).replace(b'"X"', b"NaN"),  # 2
    line_of(to("email"), to("alpha", x=["X"])).replace(b'"X"', b"1e309"),  # 2, beside another
    line_of({**to("email"), "key": "clé-1"}),  # 3
    line_of({**to("email"), "key": "k\r\nX-Evil: 1"}),  # 3
    line_of(to("mail", subject="Timeline\u2028Bcc: evil@example.com")),  # 4
    line_of(to("email", subject="Timeline\x85update")),  # 4
    line_of(to("mail", **{"from": "Studio\x1c <studio@example.com>"})),
    line_of({**to("mail"), "key": "k\r\n"}),
    line_of(to("alpha", x=nested(70, 1))),
    line_of(to("alpha", x=2**64)),
    line_of({**to("alpha"), "deliver_by": 1e300}),
    line_of(to("sms", to="+1555\u20280100")),
    line_of(to("slack", text="tab\tand\x00nul and \u2028 are fine in a body")),  # carried
]


def symptoms(test: Any) -> Any:
    for line in reversed(SYMPTOMS):
        test = example(line)(test)
    return test


@settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request_lines())
@symptoms
async def test_a_hostile_submit_is_refused_or_carried_and_innocents_go_on(
    tmp_path: Path, line: bytes
) -> None:
    """Refused with a documented code, or carried to its end; innocents delivered after it."""
    folder = tmp_path / f"e{next(example_number)}"
    folder.mkdir()
    async with hostile_core(folder) as (daemon, store, wire):
        accepted = await submit_line(daemon, line)
        innocents = [MessageIn(t, p, key=f"innocent-{t}") for t, p in INNOCENT.items()]
        sent = await daemon.submit(innocents)
        assert (await daemon.wait_idle(600))["idle"]
        for message_id in accepted:
            row = store.rows[message_id]
            strict_text([row.payload, row.key, row.target, row.deliver_by])  # storable as is
            assert row.status in (MessageStatus.DELIVERED, MessageStatus.DEAD), row
            assert row.status is MessageStatus.DELIVERED or row.last_error, row
            # Every provider here answers success: only a deadline already past ends one dead.
            if row.status is MessageStatus.DEAD:
                assert row.deliver_by is not None and row.deliver_by < wall(), row
        for a in sent:
            assert store.rows[a["id"]].status is MessageStatus.DELIVERED, store.rows[a["id"]]
        assert wire.failures == []
        assert all(i["restarts"] == 0 for i in daemon.status()["integrations"])


async def submit_line(daemon: Driver, line: bytes) -> list[int]:
    """Parse and hand the line to the submit handler as the server does; the ids accepted."""
    try:
        request = _protocol.parse(line, CONVERTER).request
    except RequestError as exc:
        assert exc.code in PARSE_CODES, exc
        check_reply(getattr(exc, "request_id", None), exc)
        event(f"parse refused: {exc.code}")
        return []
    assert isinstance(request, Submit)
    try:
        accepted = [a["id"] for a in await daemon.submit(request.messages)]
    except RequestError as exc:
        assert exc.code in SUBMIT_CODES, exc
        check_reply(1, exc)
        event(f"submit refused: {exc.code}")
        return []
    event("accepted")
    return accepted


def check_reply(request_id: Any, error: RequestError) -> None:
    """The error reply is one line of strict JSON."""
    reply = _protocol.error(request_id, error.code, error.message)
    assert reply.count(b"\n") == 1
    decoded = json.loads(reply, parse_constant=refuse_constant)
    assert decoded["error"]["code"] == error.code and decoded["error"]["message"]
