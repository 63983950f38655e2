"""Hostile input against the real actors: whatever a message holds, it ends alone.

Property-based (hypothesis, derandomized so every run draws the same
examples): each example runs the daemon's core (tests/harness.py: the real
actors, dispatchers and supervisor, the in-memory store, trio's mock clock)
with one integration whose lane is a real provider adapter (Resend, Mailgun,
Slack, PagerDuty, Amplitude) over ``httpx.MockTransport``, or the SMTP
adapter's own message building. One hostile message and one innocent one are
submitted together, straight to the store (past the control protocol's checks
at the edge, on purpose). The hostile message carries hostile strings (lone
surrogates, every line boundary ``str.splitlines`` knows, control
characters, non-ASCII, huge texts), numbers (NaN, infinities, huge integers,
-0.0), deep nesting and a hostile idempotency key; the provider answers it
with hostile ids, error texts or garbage. Each example asserts that the core
is alive (idle, every actor running, never restarted), that every message
ends delivered or dead-lettered with a reason, that what an operator reads is
valid UTF-8, and that the innocent message is delivered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ringbearer._delivery import Delivered, Envelope, Outcome
from ringbearer._errors import ErrorCode, RequestError
from ringbearer._secrets import SecretRef
from ringbearer.integrations import (
    FakeAdapter,
    MailgunSettings,
    PagerDutySettings,
    ResendSettings,
    SlackWebhookSettings,
    _smtp,
    provider_kinds,
)
from ringbearer.integrations.analytics import AmplitudeSettings
from ringbearer.integrations.email import EmailPayload
from ringbearer.store import MessageStatus, NewMessage

from .harness import FAKE_CONFIG, Core, running_core
from .kit import context

MARK = "INNOCENT-7f3a"  # in the innocent message's request: the mock answers it normally
KEYS = {
    "RESEND": "re_5ecret",
    "MAILGUN": "key-5ecret",
    "SLACK": "https://hooks.slack.com/services/T1/B1/5ecret",
    "PD": "e93facc04764012d7bfb002500d5d1a6",
    "AMP": "amp-5ecret",
}
EMAIL = {"from": "studio@example.com", "to": ["ann@example.com"], "subject": "Hi", "text": "Hi"}
LINE_BOUNDARIES = [
    "\n",
    "\r",
    "\r\n",
    "\v",
    "\f",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
NUMBERS: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "-0.0": -0.0,
    "huge": 10**4000,
    "2**64": 2**64,
    "max float": 1.7976931348623157e308,
    "tiny": 5e-324,
}

Respond = Callable[[str], httpx.Response]


def _json(status: int, body: object) -> httpx.Response:
    # ensure_ascii: a lone surrogate goes out as the escape "\ud800", as a provider's JSON would.
    text = json.dumps(body)
    return httpx.Response(
        status, content=text.encode(), headers={"content-type": "application/json"}
    )


def _garbage(text: str) -> httpx.Response:
    raw = b"\xff\xfe{" + text.encode("utf-8", "surrogatepass")
    return httpx.Response(200, content=raw, headers={"content-type": "application/json"})


@attrs.frozen
class Kind:
    """One provider as the suite drives it: its settings, payloads and answers."""

    settings: Any
    hostile: Callable[[str, Any], dict[str, Any]]  # a payload from a hostile text and value
    innocent: dict[str, Any]
    ok: Callable[[], httpx.Response]
    hostile_ok: Respond  # a success whose id is the hostile text
    error: Respond  # a refusal whose words are the hostile text


def _email(text: str, value: Any) -> dict[str, Any]:
    return {**EMAIL, "subject": text, "text": text}


KINDS: dict[str, Kind] = {
    "resend": Kind(
        ResendSettings(api_key=SecretRef(env="RESEND")),
        _email,
        {**EMAIL, "subject": MARK},
        lambda: _json(200, {"id": "re-ok"}),
        lambda t: _json(200, {"id": t}),
        lambda t: _json(422, {"name": "validation_error", "message": t}),
    ),
    "mailgun": Kind(
        MailgunSettings(api_key=SecretRef(env="MAILGUN"), domain="mg.example.com"),
        _email,
        {**EMAIL, "subject": MARK},
        lambda: _json(200, {"id": "<ok@mg.example.com>", "message": "Queued. Thank you."}),
        lambda t: _json(200, {"id": t, "message": "Queued. Thank you."}),
        lambda t: _json(400, {"message": t}),
    ),
    "slack_webhook": Kind(
        SlackWebhookSettings(url=SecretRef(env="SLACK")),
        lambda t, v: {"text": t, "blocks": [{"type": "section", "v": v}]},
        {"text": MARK},
        lambda: httpx.Response(200, text="ok"),
        lambda t: httpx.Response(200, content=t.encode("utf-8", "surrogatepass")),
        lambda t: httpx.Response(400, content=t.encode("utf-8", "surrogatepass")),
    ),
    "pagerduty": Kind(
        PagerDutySettings(routing_key=SecretRef(env="PD")),
        lambda t, v: {"summary": t, "severity": "critical", "custom_details": {"v": v}},
        {"summary": MARK, "severity": "critical"},
        lambda: _json(202, {"status": "success", "message": "ok", "dedup_key": "dk-ok"}),
        lambda t: _json(202, {"status": "success", "message": "ok", "dedup_key": t}),
        lambda t: _json(400, {"status": "invalid event", "message": t, "errors": [t]}),
    ),
    "amplitude": Kind(
        AmplitudeSettings(api_key=SecretRef(env="AMP")),
        lambda t, v: {"event_type": t, "user_id": "user-0001", "event_properties": {"v": v}},
        {"event_type": MARK, "user_id": "user-0001"},
        lambda: _json(200, {"code": 200, "events_ingested": 1, "server_upload_time": 1}),
        lambda t: _json(200, {"code": 200, "events_ingested": t}),
        lambda t: _json(400, {"code": 400, "error": t}),
    ),
}


# --- strategies ----------------------------------------------------------------------------

_pieces = st.one_of(
    st.sampled_from([*LINE_BOUNDARIES, *SURROGATES, "\x00", "\x7f", "\t", "é", "\U0001f48d"]),
    st.characters(max_codepoint=0x1F),
    st.text(max_size=4),
)
_short = st.lists(_pieces, min_size=1, max_size=6).map(lambda parts: "x" + "".join(parts))
TEXTS = st.one_of(_short, st.integers(1, 3).map(lambda n: "é\ud800" * (10_000 * n)))


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


VALUES = st.one_of(
    st.sampled_from(sorted(NUMBERS)).map(NUMBERS.__getitem__),
    st.sampled_from([2, 60, 3000]).map(_nested),  # 3,000 deep: json cannot encode it
    TEXTS,
    st.dictionaries(_short, st.sampled_from(sorted(NUMBERS)).map(NUMBERS.__getitem__), max_size=2),
)
IDEMPOTENCY_KEYS = st.one_of(
    st.none(),
    _short,
    st.just("clé-1"),
    st.just("k\r\nBcc: all@example.com"),
    st.integers(300, 5000).map(lambda n: "k" * n),
)
ANSWERS = st.sampled_from(["ok", "hostile id", "error", "garbage"])


# --- one example ---------------------------------------------------------------------------


def _answering(kind: Kind, answer: str, text: str) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if MARK.encode() in request.content or answer == "ok":
            return kind.ok()
        if answer == "hostile id":
            return kind.hostile_ok(text)
        return kind.error(text) if answer == "error" else _garbage(text)

    return handle


async def _smtp_compose(envelope: Envelope) -> Outcome:
    """The SMTP adapter's own message building: its payload check, then the email package."""
    composed = _smtp.compose(EmailPayload.parse(envelope.payload), envelope)
    return Delivered(provider_id=composed.message_id)


async def _run(tmp_path: Path, name: str, hostile: NewMessage, answer: str, text: str) -> None:
    if name == "smtp":
        await _exercise(tmp_path, _smtp_compose, hostile, {**EMAIL, "subject": MARK})
        return
    kind = KINDS[name]
    adapter = provider_kinds()[name].build(
        kind.settings, context(KEYS, _answering(kind, answer, text))
    )
    async with adapter.open_lane() as lane:
        await _exercise(tmp_path, lane.deliver, hostile, kind.innocent)


async def _exercise(
    tmp_path: Path, deliver: Any, hostile: NewMessage, innocent_payload: Mapping[str, Any]
) -> None:
    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["alpha"].behaviour = deliver

    innocent = NewMessage("alpha", dict(innocent_payload))
    async with running_core(tmp_path, FAKE_CONFIG, setup=setup) as core:
        try:
            ids = [a.id for a in await core.store.submit([hostile, innocent])]
        except RequestError as refused:  # a key no store can hold: refused, naming it
            assert refused.code is ErrorCode.BAD_ARGS
            assert refused.message.startswith("messages[0]: key ")
            ids = [a.id for a in await core.store.submit([innocent])]
            event("refused at submit")
        assert (await core.daemon.wait_idle(24 * 3600))["idle"]
        _check(core, ids)
        if len(ids) == 2:  # what became of the hostile one (see --hypothesis-show-statistics)
            row = core.store.rows[ids[0]]
            event(f"{row.status.value}: {(row.last_error or '')[:28]}")


def _check(core: Core, ids: list[int]) -> None:
    alpha = core.daemon.actors["alpha"]
    assert alpha.restarts == 0, alpha.last_error  # bad data never crashes the actor
    assert core.daemon.status()["integrations"][0]["state"] == "running"
    for message_id in ids:
        row = core.store.rows[message_id]
        assert row.status in (MessageStatus.DELIVERED, MessageStatus.DEAD), row
        if row.status is MessageStatus.DEAD:
            assert row.last_error, row
        for shown in (row.last_error, row.provider_id):
            assert shown is None or shown.encode("utf-8")  # what an operator reads is UTF-8
    assert core.store.rows[ids[-1]].status is MessageStatus.DELIVERED  # the innocent one
    json.dumps(core.daemon.status(), ensure_ascii=False, allow_nan=False).encode("utf-8")


@settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(["resend", "mailgun", "slack_webhook", "pagerduty", "amplitude", "smtp"]),
    text=TEXTS,
    value=VALUES,
    key=IDEMPOTENCY_KEYS,
    answer=ANSWERS,
)
def test_a_hostile_message_ends_alone_and_the_innocent_beside_it_is_delivered(
    tmp_path: Path, name: str, text: str, value: Any, key: str | None, answer: str
) -> None:
    """Whatever a message and its answer hold: the core lives, each ends, the innocent goes."""
    payload = KINDS[name].hostile(text, value) if name in KINDS else _email(text, value)
    hostile = NewMessage("alpha", payload, idempotency_key=key)
    trio.run(
        _run, tmp_path, name, hostile, answer, text,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )  # fmt: skip
