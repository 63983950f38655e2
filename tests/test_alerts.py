"""Slack chat.postMessage, Twilio SMS and calls: against the simulator, and exact requests."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import parse_qs

import attrs
import cattrs
import httpx
import pytest

from ringbearer import _converter
from ringbearer._alerting import Alert, AlertManager
from ringbearer._alerting_settings import AlertingSettings
from ringbearer._delivery import Delivered, Outcome, Permanent, Retry, Taken
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import SecretRef
from ringbearer.control._replies import Severity
from ringbearer.integrations import (
    AdapterContext,
    MailgunSettings,
    ResendSettings,
    SmtpSettings,
    provider_kinds,
)
from ringbearer.integrations._twilio import TwilioCallSettings, TwilioSmsSettings, twiml
from ringbearer.integrations.alerts import SlackChatSettings

from .kit import (
    Handler,
    Sim,
    answer,
    context,
    deliver_one,
    envelope,
    mock_context,
    permanent,
    retry,
)
from .kit import sim_fixture as sim_fixture

ACCOUNT = "AC" + "0123456789abcdef" * 2
API_KEY = "SK" + "fedcba9876543210" * 2
SERVICE = "MG" + "00112233445566778899aabbccddeeff"
KEYS = {
    "SLACK": "xoxb-5ecret-slack-token",
    "SLACK_BAD": "not-a-slack-token",
    "TWILIO": "5ecret-twilio-auth-token",
    "TWILIO_KEY": "5ecret-twilio-key-secret",
    "BAD": "invalid",
    "RESEND": "re_5ecret_key",
    "MAILGUN": "5ecret-mailgun-key",
}
SLACK = SlackChatSettings(token=SecretRef(env="SLACK"), channel="C0ALERTS01")
SMS = TwilioSmsSettings(
    account_sid=ACCOUNT, auth_token=SecretRef(env="TWILIO"), sender="+15017122661"
)
CALL = TwilioCallSettings(
    account_sid=ACCOUNT, auth_token=SecretRef(env="TWILIO"), sender="+15017122661"
)
SETTINGS: dict[str, Any] = {"slack_chat": SLACK, "twilio_sms": SMS, "twilio_call": CALL}
PAYLOADS: dict[str, Mapping[str, Any]] = {
    "slack_chat": {"text": "resend is failing over"},
    "twilio_sms": {"to": "+15558675310", "body": "resend is failing over"},
    "twilio_call": {"to": "+15558675310", "say": "Resend is failing over."},
}


async def deliver(
    kind: str, ctx: AdapterContext, payload: Mapping[str, Any] | None = None, settings: Any = None
) -> Outcome:
    adapter = provider_kinds()[kind].build(settings or SETTINGS[kind], ctx)
    return await deliver_one(adapter, envelope(PAYLOADS[kind] if payload is None else payload))


async def mock(
    kind: str, handler: Handler, payload: Mapping[str, Any] | None = None, settings: Any = None
) -> tuple[Outcome, list[httpx.Request]]:
    """Deliver one envelope through httpx.MockTransport; return the outcome and what was sent."""
    ctx, sent = mock_context(KEYS, handler)
    return await deliver(kind, ctx, payload, settings), sent


# --- the simulator ---------------------------------------------------------------


@pytest.fixture
def sim_seed() -> int:
    return 3


async def deliver_to(
    sim: Sim, kind: str, payload: Mapping[str, Any] | None = None, settings: Any = None
) -> Outcome:
    """One message of the kind, delivered to the simulator in sandbox mode."""
    return await deliver(kind, sim.context(kind, KEYS), payload, settings)


# --- Slack chat.postMessage: the simulator ---------------------------------------------


async def test_slack_chat_posts_and_names_channel_and_ts(sim: Sim) -> None:
    """A post is delivered with the id channel/ts; the default channel is used."""
    outcome = await deliver_to(sim, "slack_chat")
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"C0ALERTS01/1700000001\.[0-9]{6}", outcome.provider_id)
    [seen] = await sim.requests("slack_chat")
    assert (seen["method"], seen["path"], seen["auth"]) == (
        "POST",
        "/api/chat.postMessage",
        "Bearer",
    )


async def test_slack_chat_by_name_answers_the_channel_id(sim: Sim) -> None:
    """A message naming #channel in a thread is delivered under the channel's id."""
    payload = {"text": "hi", "channel": "#ops", "thread_ts": "1700000000.000100"}
    outcome = await deliver_to(sim, "slack_chat", payload)
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"C[0-9A-F]{10}/[0-9]+\.[0-9]{6}", outcome.provider_id)


@pytest.mark.parametrize(
    ("channel", "word"),
    [
        ("nowhere", "channel_not_found"),
        ("#private", "not_in_channel"),
        ("#archived", "is_archived"),
    ],
)
async def test_slack_chat_channel_refusals_are_permanent(sim: Sim, channel: str, word: str) -> None:
    """Slack's channel refusals (HTTP 200, ok false) are permanent and keep the real status."""
    outcome = await deliver_to(sim, "slack_chat", {"text": "hi", "channel": channel})
    assert permanent(f"HTTP 200: {word}", 200)(outcome)


async def test_slack_chat_bad_token_is_a_health_problem(sim: Sim) -> None:
    """invalid_auth in a 200 becomes a permanent outcome with 401, which marks health down."""
    settings = attrs.evolve(SLACK, token=SecretRef(env="SLACK_BAD"))
    outcome = await deliver_to(sim, "slack_chat", settings=settings)
    assert permanent("HTTP 200: invalid_auth", 401)(outcome)


async def test_slack_chat_rate_limit_waits_as_asked(sim: Sim) -> None:
    """A 429 ratelimited is retried, not taken, after exactly the Retry-After Slack sent."""
    await sim.faults("slack_chat", storm=True, retry_after=7)
    outcome = await deliver_to(sim, "slack_chat")
    assert retry(Taken.NO, after=7.0)(outcome) and outcome.status == 429


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),  # 500 internal_error
        ({"outage": True}, retry(Taken.NO)),  # 503 service_unavailable
        ({"permanent_rate": 1.0}, permanent("invalid_blocks", 200)),
    ],
)
async def test_slack_chat_faults(
    sim: Sim, fault: dict[str, Any], expect: Callable[[Outcome], bool]
) -> None:
    """The simulator's own Slack errors classify as their words mean."""
    await sim.faults("slack_chat", **fault)
    assert expect(await deliver_to(sim, "slack_chat"))


# --- Slack chat.postMessage: exact requests and answers ----------------------------------


async def test_slack_chat_request() -> None:
    """The post is JSON with a charset, a bearer token, and only the fields given."""
    body = {"ok": True, "channel": "C0ALERTS01", "ts": "1.2", "message": {}}
    payload = {"text": "t", "blocks": [{"type": "section"}], "thread_ts": "1.000001"}
    outcome, [request] = await mock("slack_chat", answer(200, body), payload)
    assert outcome == Delivered(provider_id="C0ALERTS01/1.2")
    assert str(request.url) == "https://slack.com/api/chat.postMessage"
    assert request.headers["authorization"] == "Bearer " + KEYS["SLACK"]
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert httpx.Response(200, content=request.content).json() == {
        "channel": "C0ALERTS01",
        **payload,
    }


@pytest.mark.parametrize(
    ("changes", "url"),
    [
        ({"base_url_override": "http://sim:1/slack-chat/"}, "http://sim:1/slack-chat/api/"),
        ({}, "https://slack.example.gov/api/"),
    ],
)
async def test_slack_chat_base_url(changes: dict[str, Any], url: str) -> None:
    """The sandbox prefix stands for the host (the real path is kept); base_url is the API root."""
    answer_ok = answer(200, {"ok": True, "channel": "C1", "ts": "1.2"})
    settings = attrs.evolve(SLACK, base_url="https://slack.example.gov/api/")
    ctx, sent = mock_context(KEYS, answer_ok, **changes)
    assert isinstance(await deliver("slack_chat", ctx, settings=settings), Delivered)
    assert str(sent[0].url) == url + "chat.postMessage"


def slack_no(word: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": word, **extra}


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(200, slack_no("internal_error")), retry(Taken.MAYBE)),
        (answer(200, slack_no("fatal_error")), retry(Taken.MAYBE)),
        (answer(200, slack_no("service_unavailable")), retry(Taken.NO)),
        (answer(200, slack_no("request_timeout")), retry(Taken.NO)),
        (answer(200, slack_no("ratelimited"), {"retry-after": "30"}), retry(Taken.NO, 30.0)),
        (answer(429, slack_no("ratelimited")), retry(Taken.NO)),
        (answer(200, slack_no("not_authed")), permanent("not_authed", 401)),
        (answer(200, slack_no("token_revoked")), permanent("token_revoked", 401)),
        (answer(200, slack_no("account_inactive")), permanent("account_inactive", 401)),
        (
            answer(200, slack_no("missing_scope", needed="chat:write")),
            permanent("missing_scope: chat:write", 403),
        ),
        (answer(200, slack_no("msg_too_long")), permanent("msg_too_long", 200)),
        (answer(200, slack_no("no_text")), permanent("no_text", 200)),
        (answer(200, slack_no("a_word_from_the_future")), permanent("a_word_from", 200)),
        (answer(500, "<html>oops</html>"), retry(Taken.MAYBE)),
        (answer(503, "down"), retry(Taken.NO)),
        (answer(404, slack_no("unknown_method")), permanent("unknown_method", 404)),
        (answer(200, "ok"), lambda o: isinstance(o, Retry) and "malformed" in o.reason),
        (answer(200, {"ok": True, "channel": "C1"}), lambda o: o.taken is Taken.MAYBE),
    ],
)
async def test_slack_chat_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented answer, mostly HTTP 200 with ok false, classifies by its word."""
    outcome, _ = await mock("slack_chat", handler)
    assert expect(outcome), outcome


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"channel": "C1"}, "'text' is required"),
        ({"text": "t", "blocks": ["x"]}, "'blocks' must be a list of objects"),
        ({"text": "t", "thread_ts": "yesterday"}, "'thread_ts' must look like"),
        ({"text": "t", "channel": "a\nb"}, "'channel' must not contain line breaks"),
        ({"text": "t", "username": "x"}, "unknown field(s) 'username'"),
    ],
)
def test_slack_chat_payload_rejected(payload: dict[str, Any], words: str) -> None:
    """A payload that does not fit names its field."""
    adapter = provider_kinds()["slack_chat"].build(SLACK, context(KEYS))
    with pytest.raises(InvalidPayload, match=re.escape(words)):
        adapter.validate(payload)


def test_slack_chat_needs_a_channel() -> None:
    """Without a default channel, a message must name one."""
    adapter = provider_kinds()["slack_chat"].build(attrs.evolve(SLACK, channel=None), context(KEYS))
    with pytest.raises(InvalidPayload, match="'channel' is required"):
        adapter.validate({"text": "t"})
    adapter.validate({"text": "t", "channel": "#ops"})


# --- Twilio: the simulator ---------------------------------------------------------


def form(seen: Mapping[str, Any]) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(seen["body"]).items()}


async def test_twilio_sms_sends_and_names_its_sid(sim: Sim) -> None:
    """An SMS is delivered with Twilio's SM sid, sent as a form under Basic AccountSid."""
    outcome = await deliver_to(sim, "twilio_sms")
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"SM[0-9a-f]{32}", outcome.provider_id)
    [seen] = await sim.requests("twilio_sms")
    assert seen["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert (seen["auth"], seen["content_type"]) == (
        f"Basic {ACCOUNT}",
        "application/x-www-form-urlencoded",
    )
    assert form(seen) == {
        "To": "+15558675310",
        "From": "+15017122661",
        "Body": PAYLOADS["twilio_sms"]["body"],
    }


async def test_twilio_sms_messaging_service_and_api_key(sim: Sim) -> None:
    """With a Messaging Service the form names it, not From; an API key is the Basic user."""
    settings = TwilioSmsSettings(
        account_sid=ACCOUNT,
        api_key_sid=API_KEY,
        api_key_secret=SecretRef(env="TWILIO_KEY"),
        messaging_service_sid=SERVICE,
    )
    assert isinstance(await deliver_to(sim, "twilio_sms", settings=settings), Delivered)
    [seen] = await sim.requests("twilio_sms")
    assert seen["auth"] == f"Basic {API_KEY}"
    assert form(seen)["MessagingServiceSid"] == SERVICE and "From" not in form(seen)


async def test_twilio_payload_sender_wins(sim: Sim) -> None:
    """A message's own from replaces the integration's sender."""
    payload = {**PAYLOADS["twilio_sms"], "from": "Studio"}
    assert isinstance(await deliver_to(sim, "twilio_sms", payload), Delivered)
    [seen] = await sim.requests("twilio_sms")
    assert form(seen)["From"] == "Studio"


@pytest.mark.parametrize("kind", ["twilio_sms", "twilio_call"])
async def test_twilio_refused_credentials_are_a_health_problem(sim: Sim, kind: str) -> None:
    """A 401 with code 20003 is permanent with status 401."""
    settings = attrs.evolve(SETTINGS[kind], auth_token=SecretRef(env="BAD"))
    assert permanent("20003: Authenticate", 401)(await deliver_to(sim, kind, settings=settings))


async def test_twilio_account_must_match_the_user(sim: Sim) -> None:
    """Credentials of one account cannot post under another's path."""
    other = "AC" + "f" * 32
    settings = attrs.evolve(SMS, account_sid=other)
    assert isinstance(await deliver_to(sim, "twilio_sms", settings=settings), Delivered)
    seen = await sim.client.post(
        f"/twilio-sms/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
        data={"To": "+15558675310", "From": "+15017122661", "Body": "x"},
        auth=(other, "token"),
    )
    assert (seen.status_code, seen.json()["code"]) == (401, 20003)


@pytest.mark.parametrize(
    ("to", "code"),
    [("+15005550002", 21612), ("+15005550009", 21614), ("+15005550004", 21610)],
)
async def test_twilio_sms_recipient_refusals_are_permanent(sim: Sim, to: str, code: int) -> None:
    """Unreachable, non-mobile and unsubscribed recipients are 400s: permanent."""
    outcome = await deliver_to(sim, "twilio_sms", {"to": to, "body": "x"})
    assert permanent(f"HTTP 400: {code}", 400)(outcome)


async def test_twilio_sms_full_sender_queue_is_retried(sim: Sim) -> None:
    """21611 (the sender's queue is full) was refused, not queued: retry, not taken."""
    outcome = await deliver_to(
        sim, "twilio_sms", {**PAYLOADS["twilio_sms"], "from": "+15005550008"}
    )
    assert retry(Taken.NO)(outcome) and "21611" in outcome.reason


@pytest.mark.parametrize("kind", ["twilio_sms", "twilio_call"])
async def test_twilio_rate_limit_waits_as_asked(sim: Sim, kind: str) -> None:
    """A 429 (code 20429, never processed) is retried, not taken, after its Retry-After."""
    await sim.faults(kind, storm=True, retry_after=9)
    outcome = await deliver_to(sim, kind)
    assert retry(Taken.NO, after=9.0)(outcome) and "20429" in outcome.reason


@pytest.mark.parametrize("kind", ["twilio_sms", "twilio_call"])
@pytest.mark.parametrize(
    ("fault", "status", "expect"),
    [
        ({"error_rate": 1.0}, 500, retry(Taken.MAYBE)),
        # No idempotency key: even a 503 is ambiguous.
        ({"outage": True}, 503, retry(Taken.MAYBE)),
        ({"permanent_rate": 1.0}, 400, permanent("21211", 400)),
    ],
)
async def test_twilio_faults(
    sim: Sim, kind: str, fault: dict[str, Any], status: int, expect: Callable[[Outcome], bool]
) -> None:
    """Twilio's 5xx, for a text or a call, are ambiguous retries; its 400 is permanent."""
    await sim.faults(kind, **fault)
    outcome = await deliver_to(sim, kind)
    assert expect(outcome), outcome
    assert isinstance(outcome, Retry | Permanent) and outcome.status == status


async def test_twilio_call_speaks_the_text(sim: Sim) -> None:
    """A call is delivered with its CA sid; the simulator got escaped TwiML it could parse."""
    payload = {"to": "+15558675310", "say": "Disk <90%> & rising", "loop": 2}
    outcome = await deliver_to(sim, "twilio_call", payload)
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"CA[0-9a-f]{32}", outcome.provider_id)
    [seen] = await sim.requests("twilio_call")
    assert seen["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert form(seen)["Twiml"] == (
        '<Response><Say loop="2">Disk &lt;90%&gt; &amp; rising</Say></Response>'
    )


async def test_twilio_call_by_url(sim: Sim) -> None:
    """A call may fetch its TwiML from a URL instead."""
    payload = {"to": "+15558675310", "url": "https://studio.example/alert.xml"}
    assert isinstance(await deliver_to(sim, "twilio_call", payload), Delivered)
    [seen] = await sim.requests("twilio_call")
    assert form(seen)["Url"] == payload["url"] and "Twiml" not in form(seen)


# --- Twilio: exact requests and answers ---------------------------------------------------


async def test_twilio_sms_request() -> None:
    """The SMS is a form POST to the account's Messages.json with Basic AccountSid:AuthToken."""
    outcome, [request] = await mock("twilio_sms", answer(201, {"sid": "SM1", "status": "queued"}))
    assert outcome == Delivered(provider_id="SM1")
    assert str(request.url) == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    pair = base64.b64encode(f"{ACCOUNT}:{KEYS['TWILIO']}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {pair}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "To": ["+15558675310"],
        "From": ["+15017122661"],
        "Body": ["resend is failing over"],
    }


async def test_twilio_call_request_escapes_twiml() -> None:
    """The spoken text is XML-escaped into a <Say> that loops as asked."""
    payload = {"to": "+15558675310", "say": "<Hangup/> & \"quotes\" 'too'", "loop": 3}
    outcome, [request] = await mock("twilio_call", answer(201, {"sid": "CA1"}), payload)
    assert outcome == Delivered(provider_id="CA1")
    assert str(request.url).endswith(f"/Accounts/{ACCOUNT}/Calls.json")
    assert parse_qs(request.content.decode())["Twiml"] == [
        '<Response><Say loop="3">&lt;Hangup/&gt; &amp; "quotes" \'too\'</Say></Response>'
    ]


def test_twiml_once_has_no_loop() -> None:
    """Spoken once, the <Say> carries no loop attribute."""
    assert twiml("a & b") == "<Response><Say>a &amp; b</Say></Response>"


def twilio_error(status: int, code: int, headers: Mapping[str, str] | None = None) -> Handler:
    body = {"code": code, "message": "words", "more_info": "x", "status": status}
    return answer(status, body, headers)


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (twilio_error(429, 20429), retry(Taken.NO)),
        (twilio_error(429, 20429, {"retry-after": "4"}), retry(Taken.NO, 4.0)),
        (twilio_error(400, 20429), retry(Taken.NO)),
        (twilio_error(401, 20003), permanent("20003: words", 401)),
        (twilio_error(403, 20003), permanent("20003", 401)),
        (twilio_error(404, 20404), permanent("20404", 404)),
        (twilio_error(400, 21211), permanent("21211", 400)),
        (twilio_error(400, 21614), permanent("21614", 400)),
        (twilio_error(400, 21610), permanent("21610", 400)),
        (twilio_error(400, 21611), retry(Taken.NO)),
        (twilio_error(500, 20500), retry(Taken.MAYBE)),
        (twilio_error(503, 20503), retry(Taken.MAYBE)),
        (answer(502, "<html>bad gateway</html>"), retry(Taken.MAYBE)),
        (answer(201, {"status": "queued"}), lambda o: o.taken is Taken.MAYBE),
    ],
)
async def test_twilio_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented answer: 429/20429 not taken, 5xx ambiguous, 4xx permanent."""
    outcome, _ = await mock("twilio_sms", handler)
    assert expect(outcome), outcome


@pytest.mark.parametrize(
    ("kind", "payload", "words"),
    [
        ("twilio_sms", {"to": "5551234567", "body": "x"}, "'to' must be an E.164 number"),
        ("twilio_sms", {"to": "+15558675310", "body": "x" * 1601}, "at most 1600"),
        ("twilio_sms", {"to": "+15558675310", "body": "x", "from": "no way!"}, "'from' must be"),
        ("twilio_sms", {"to": "+15558675310"}, "'body' is required"),
        ("twilio_call", {"to": "+15558675310"}, "exactly one of 'say' or 'url'"),
        ("twilio_call", {"to": "+15558675310", "say": "x", "url": "https://a"}, "exactly one"),
        ("twilio_call", {"to": "+15558675310", "url": "http://a"}, "'url' must be an https"),
        ("twilio_call", {"to": "+15558675310", "url": "https://a", "loop": 2}, "'loop' goes"),
        ("twilio_call", {"to": "+15558675310", "say": "x", "loop": 0}, "'loop' must be"),
        ("twilio_call", {"to": "+15558675310", "say": "x", "loop": True}, "'loop' must be"),
        ("twilio_call", {"to": "+15558675310", "say": "x\x07"}, "control characters"),
        ("twilio_call", {"to": "+15558675310", "say": "&" * 900}, "at most 4000"),
        ("twilio_call", {"to": "+15558675310", "say": "x", "from": "Studio"}, "'from' must be"),
    ],
)
def test_twilio_payload_rejected(kind: str, payload: dict[str, Any], words: str) -> None:
    """A payload that does not fit names its field."""
    adapter = provider_kinds()[kind].build(SETTINGS[kind], context(KEYS))
    with pytest.raises(InvalidPayload, match=re.escape(words)):
        adapter.validate(payload)


@pytest.mark.parametrize("kind", ["twilio_sms", "twilio_call"])
def test_twilio_needs_a_sender(kind: str) -> None:
    """Without a default sender or service, a message must name its From."""
    settings = attrs.evolve(SETTINGS[kind], sender=None)
    adapter = provider_kinds()[kind].build(settings, context(KEYS))
    with pytest.raises(InvalidPayload, match="'from' is required"):
        adapter.validate(PAYLOADS[kind])


# --- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("slack_chat", {"token": {"env": "T"}, "channel": "#ops"}),
        ("twilio_sms", {"account_sid": ACCOUNT, "auth_token": {"env": "T"}, "sender": "Studio"}),
        (
            "twilio_sms",
            {
                "account_sid": ACCOUNT,
                "api_key_sid": API_KEY,
                "api_key_secret": {"env": "T"},
                "messaging_service_sid": SERVICE,
            },
        ),
        (
            "twilio_call",
            {"account_sid": ACCOUNT, "auth_token": {"env": "T"}, "sender": "+15017122661"},
        ),
    ],
)
def test_settings_structure(kind: str, raw: dict[str, Any]) -> None:
    """Each settings class structures from TOML-shaped data with the project's converter."""
    settings_type = provider_kinds()[kind].settings_type
    assert isinstance(_converter.make().structure(raw, settings_type), settings_type)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("slack_chat", {"token": "xoxb-inline"}),
        ("twilio_sms", {"account_sid": "AC123", "auth_token": {"env": "T"}}),
        ("twilio_sms", {"account_sid": ACCOUNT}),
        (
            "twilio_sms",
            {"account_sid": ACCOUNT, "auth_token": {"env": "T"}, "api_key_sid": API_KEY},
        ),
        (
            "twilio_sms",
            {
                "account_sid": ACCOUNT,
                "auth_token": {"env": "T"},
                "api_key_sid": API_KEY,
                "api_key_secret": {"env": "S"},
            },
        ),
        (
            "twilio_sms",
            {
                "account_sid": ACCOUNT,
                "auth_token": {"env": "T"},
                "sender": "+15017122661",
                "messaging_service_sid": SERVICE,
            },
        ),
        ("twilio_call", {"account_sid": ACCOUNT, "auth_token": {"env": "T"}, "sender": "Studio"}),
        (
            "twilio_call",
            {"account_sid": ACCOUNT, "auth_token": {"env": "T"}, "messaging_service_sid": SERVICE},
        ),
    ],
)
def test_settings_reject_bad_config(kind: str, raw: dict[str, Any]) -> None:
    """Inline secrets, malformed sids, missing or doubled credentials and senders are refused."""
    with pytest.raises(cattrs.BaseValidationError):
        _converter.make().structure(raw, provider_kinds()[kind].settings_type)


def test_alert_kinds_in_the_table() -> None:
    """The new kinds are alerts rows next to the webhook and PagerDuty."""
    kinds = provider_kinds()
    assert {k for k, row in kinds.items() if row.family == "alerts"} == {
        "slack_webhook",
        "slack_chat",
        "pagerduty",
        "twilio_sms",
        "twilio_call",
    }


# --- email alerts: the resend, mailgun and smtp channels ----------------------------------

ONCALL = "oncall@example.com"
EMAIL_SETTINGS: dict[str, Any] = {
    "resend": ResendSettings(api_key=SecretRef(env="RESEND")),
    "mailgun": MailgunSettings(api_key=SecretRef(env="MAILGUN"), domain="mg.example.com"),
    "smtp": SmtpSettings(host="smtp.invalid"),
}


def email_alert(kind: str) -> Mapping[str, Any]:
    """The payload the alert manager sends an email channel of ``kind`` for a dead letter."""
    settings = AlertingSettings(chain=(kind,), email_to=ONCALL, email_from="rb@example.com")
    alert = Alert(
        7, "dead_letters:slack", Severity.WARNING, "slack: 1 dead letter(s) in 900 s", 0, 0, (kind,)
    )
    # payload() reads only the settings: no daemon is needed behind it.
    alerts = AlertManager(settings, cast(Any, None), lambda: False)
    return alerts.payload(kind, alert, resolved=False)


@pytest.mark.parametrize("kind", ["resend", "mailgun", "smtp"])
def test_an_email_alert_fits_each_email_kind(kind: str) -> None:
    """The alert manager's email is a valid payload for every email provider it may go to."""
    payload = email_alert(kind)
    assert payload["to"] == ONCALL
    assert payload["subject"] == "[ringbearer WARNING] slack: 1 dead letter(s) in 900 s"
    assert "ringbearer alerts ack 7" in payload["text"]
    adapter = provider_kinds()[kind].build(EMAIL_SETTINGS[kind], context(KEYS, name=kind))
    adapter.validate(payload)


def email_sent(kind: str, seen: Mapping[str, Any]) -> tuple[list[str], str]:
    """The recipients and subject of an email as the simulated provider received it."""
    if kind == "resend":
        body = json.loads(seen["body"])
        return body["to"], body["subject"]
    form = parse_qs(seen["body"])
    return form["to"], form["subject"][0]


@pytest.mark.parametrize("kind", ["resend", "mailgun"])
async def test_an_email_alert_reaches_the_simulated_provider(sim: Sim, kind: str) -> None:
    """Delivered to the simulator, the alert goes to email_to with the alert in its subject."""
    outcome = await deliver_to(sim, kind, email_alert(kind), EMAIL_SETTINGS[kind])
    assert isinstance(outcome, Delivered)
    [seen] = await sim.requests(kind)
    to, subject = email_sent(kind, seen)
    assert (to, subject) == ([ONCALL], "[ringbearer WARNING] slack: 1 dead letter(s) in 900 s")
