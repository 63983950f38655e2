"""Each adapter sends what the provider's official SDK sends, as the simulator saw both.

For every provider the official SDK is pointed at a simulator running in the
test and sends one message (in a worker thread: the SDKs are synchronous);
then our adapter sends the same message; the two requests, from
``/_sim/requests``, must agree on method, path, credential form, content type
and the decoded body, except for the differences each test documents.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import mailgun.client
import pytest
import resend
import slack_sdk
from resend.http_client_requests import RequestsClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import VoiceResponse

from ringbearer._delivery import Delivered, Outcome
from ringbearer._secrets import SecretRef
from ringbearer.integrations import (
    MailgunSettings,
    PagerDutySettings,
    ResendSettings,
    provider_kinds,
)
from ringbearer.integrations._twilio import TwilioCallSettings, TwilioSmsSettings
from ringbearer.integrations.alerts import SlackChatSettings

from .kit import Sim, deliver_one, envelope, in_thread
from .kit import sim_fixture as sim_fixture

with warnings.catch_warnings():
    # pdpyras warns on import that it is superseded by "pagerduty"; it is still
    # the SDK the providers notes were checked against.
    warnings.simplefilter("ignore", UserWarning)
    import pdpyras

SDK_TIMEOUT = 5  # seconds, given to each SDK's own HTTP client
KEY = "msg-0001"  # the envelope's idempotency key
ACCOUNT = "AC" + "0123456789abcdef" * 2
SECRETS = {
    "SLACK": "xoxb-1-fidelity",
    "TWILIO": "twilio-auth-token",
    "PD": "e93facc04764012d7bfb002500d5d1a6",
    "RESEND": "re_fidelity",
    "MAILGUN": "key-fidelity",
}


@pytest.fixture
def sim_seed() -> int:
    return 5


async def deliver_to(sim: Sim, kind: str, settings: Any, payload: Mapping[str, Any]) -> Outcome:
    """Our adapter, in sandbox mode, sends one message to the simulator."""
    adapter = provider_kinds()[kind].build(settings, sim.context(kind, SECRETS))
    adapter.validate(payload)
    return await deliver_one(adapter, envelope(payload, key=KEY))


def media(content_type: str) -> tuple[str, dict[str, str]]:
    """A content type as its media type and parameters, spacing and case aside."""
    kind, *params = (part.strip() for part in content_type.split(";"))
    pairs = (p.partition("=") for p in params if p)
    return kind.lower(), {name.lower(): value.lower() for name, _, value in pairs}


def json_body(seen: Mapping[str, Any]) -> Any:
    return json.loads(seen["body"])


def form_body(seen: Mapping[str, Any]) -> dict[str, list[str]]:
    return parse_qs(seen["body"], keep_blank_values=True)


def assert_same_request(sdk: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    """Method, path, query, credential form and media type agree."""
    for part in ("method", "path", "query", "auth"):
        assert ours[part] == sdk[part], f"{part}: ours {ours[part]!r}, SDK {sdk[part]!r}"
    assert media(ours["content_type"])[0] == media(sdk["content_type"])[0]


# --- Slack chat.postMessage (slack-sdk WebClient) ---------------------------------------


async def test_slack_chat_matches_slack_sdk(sim: Sim) -> None:
    """chat.postMessage: same path, bearer token, JSON with a UTF-8 charset, same fields."""
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*resend* is down"}}]
    args: dict[str, Any] = {"channel": "C0ALERTS01", "text": "resend is down", "blocks": blocks}
    args["thread_ts"] = "1700000000.000100"
    web = slack_sdk.WebClient(
        token=SECRETS["SLACK"], base_url=f"{sim.prefix('slack_chat')}/api/", timeout=SDK_TIMEOUT
    )
    answer = await in_thread(lambda: web.chat_postMessage(**args))
    assert answer["ok"] is True and answer["ts"]

    settings = SlackChatSettings(token=SecretRef(env="SLACK"), channel="C0ALERTS01")
    payload = {key: value for key, value in args.items() if key != "channel"}
    outcome = await deliver_to(sim, "slack_chat", settings, payload)
    assert isinstance(outcome, Delivered)

    sdk, ours = await sim.requests("slack_chat")
    assert_same_request(sdk, ours)
    # The SDK writes "application/json;charset=utf-8", we put a space after
    # the ";": the same media type and charset.
    assert (
        media(ours["content_type"])
        == media(sdk["content_type"])
        == (
            "application/json",
            {"charset": "utf-8"},
        )
    )
    assert json_body(ours) == json_body(sdk) == args


# --- Twilio (twilio Client, its API domain pointed at the simulator) ----------------------


def twilio_client(sim: Sim, kind: str) -> TwilioClient:
    client = TwilioClient(
        ACCOUNT, SECRETS["TWILIO"], http_client=TwilioHttpClient(timeout=SDK_TIMEOUT)
    )
    # The SDK builds every URL from its API domain's base_url, api.twilio.com.
    client.api.base_url = sim.prefix(kind)
    return client


async def test_twilio_sms_matches_twilio_sdk(sim: Sim) -> None:
    """Messages.json: same account path, Basic AccountSid, and the same form fields."""
    client = twilio_client(sim, "twilio_sms")
    message = await in_thread(
        lambda: client.messages.create(to="+15558675310", from_="+15017122661", body="Disk full")
    )
    assert message.sid is not None and message.sid.startswith("SM")

    settings = TwilioSmsSettings(
        account_sid=ACCOUNT, auth_token=SecretRef(env="TWILIO"), sender="+15017122661"
    )
    payload = {"to": "+15558675310", "body": "Disk full"}
    outcome = await deliver_to(sim, "twilio_sms", settings, payload)
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert outcome.provider_id.startswith("SM")

    sdk, ours = await sim.requests("twilio_sms")
    assert_same_request(sdk, ours)
    assert ours["auth"] == f"Basic {ACCOUNT}"
    assert (
        form_body(ours)
        == form_body(sdk)
        == {
            "To": ["+15558675310"],
            "From": ["+15017122661"],
            "Body": ["Disk full"],
        }
    )


async def test_twilio_call_matches_twilio_sdk(sim: Sim) -> None:
    """Calls.json: the same form, and our TwiML escapes the text as the SDK's builder does."""
    text = 'Disk <90%> & "rising"'
    spoken = VoiceResponse()
    spoken.say(text, loop=2)
    client = twilio_client(sim, "twilio_call")
    call = await in_thread(
        lambda: client.calls.create(to="+15558675310", from_="+15017122661", twiml=str(spoken))
    )
    assert call.sid is not None and call.sid.startswith("CA")

    settings = TwilioCallSettings(
        account_sid=ACCOUNT, auth_token=SecretRef(env="TWILIO"), sender="+15017122661"
    )
    payload = {"to": "+15558675310", "say": text, "loop": 2}
    outcome = await deliver_to(sim, "twilio_call", settings, payload)
    assert isinstance(outcome, Delivered)

    sdk, ours = await sim.requests("twilio_call")
    assert_same_request(sdk, ours)
    sdk_form, our_form = form_body(sdk), form_body(ours)
    # The SDK's TwiML opens with an XML declaration; it is optional and we
    # leave it out. Everything after it is the same document.
    declaration = '<?xml version="1.0" encoding="UTF-8"?>'
    [sdk_twiml] = sdk_form.pop("Twiml")
    assert sdk_twiml.startswith(declaration)
    assert our_form.pop("Twiml") == [sdk_twiml.removeprefix(declaration)]
    assert our_form == sdk_form == {"To": ["+15558675310"], "From": ["+15017122661"]}


# --- PagerDuty (pdpyras EventsAPISession) ------------------------------------------------


async def test_pagerduty_matches_pdpyras(sim: Sim) -> None:
    """/v2/enqueue: no auth header, the routing key and dedup key in the same JSON event."""
    session = pdpyras.EventsAPISession(SECRETS["PD"])
    session.url = sim.prefix("pagerduty")
    session.timeout = SDK_TIMEOUT
    details = {"failed_over_to": "mailgun"}
    dedup_key = await in_thread(
        lambda: session.trigger(
            "email group failing over",
            "host-1",
            dedup_key=KEY,
            severity="critical",
            custom_details=details,
        )
    )
    assert dedup_key == KEY

    settings = PagerDutySettings(routing_key=SecretRef(env="PD"), source="host-1")
    payload = {
        "summary": "email group failing over",
        "severity": "critical",
        "custom_details": details,
    }
    outcome = await deliver_to(sim, "pagerduty", settings, payload)
    # Our dedup key is the envelope's idempotency key, so a retry joins the same alert.
    assert outcome == Delivered(provider_id=KEY)

    sdk, ours = await sim.requests("pagerduty")
    assert_same_request(sdk, ours)
    assert ours["auth"] is None
    assert json_body(ours) == json_body(sdk)


# --- Resend (resend module, api_url pointed at the simulator) ------------------------------


EMAIL: resend.Emails.SendParams = {
    "from": "Studio <hello@studio.example>",
    "to": ["ann@example.com", "bob@example.com"],
    "subject": "Your gallery is ready",
    "text": "Hello!",
    "html": "<p>Hello!</p>",
    "cc": ["planner@example.com"],
    "reply_to": ["desk@studio.example"],
    "headers": {"X-Wedding": "w-42"},
    "tags": [{"name": "category", "value": "gallery"}],
}


async def test_resend_matches_resend_sdk(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """/emails: same bearer key, Idempotency-Key header, and the same JSON fields."""
    monkeypatch.setattr(resend, "api_key", SECRETS["RESEND"])
    monkeypatch.setattr(resend, "api_url", sim.prefix("resend"))
    monkeypatch.setattr(resend, "default_http_client", RequestsClient(timeout=SDK_TIMEOUT))
    # Its own key: the simulator, like Resend, would refuse a second send under
    # one key whose body differs in any byte, and the SDK's JSON has spaces
    # after separators where ours has none.
    sdk_key = f"sdk-{KEY}"
    sent = await in_thread(lambda: resend.Emails.send(EMAIL, {"idempotency_key": sdk_key}))
    assert sent["id"]

    settings = ResendSettings(api_key=SecretRef(env="RESEND"))
    outcome = await deliver_to(sim, "resend", settings, EMAIL)
    assert isinstance(outcome, Delivered)

    sdk, ours = await sim.requests("resend")
    assert_same_request(sdk, ours)
    assert ours["auth"] == "Bearer"
    assert (ours["headers"]["idempotency-key"], sdk["headers"]["idempotency-key"]) == (KEY, sdk_key)
    assert ours["headers"]["accept"] == sdk["headers"]["accept"] == "application/json"
    assert json_body(ours) == json_body(sdk) == EMAIL


# --- Mailgun (mailgun Client with api_url) -------------------------------------------------


async def test_mailgun_matches_mailgun_sdk(sim: Sim) -> None:
    """/v3/{domain}/messages: Basic api, a urlencoded form with the same fields."""
    form = {
        "from": EMAIL["from"],
        "to": EMAIL["to"],
        "cc": EMAIL["cc"],
        "subject": EMAIL["subject"],
        "text": EMAIL["text"],
        "html": EMAIL["html"],
        "h:Reply-To": "desk@studio.example",
        "h:X-Wedding": "w-42",
        "v:category": "gallery",
    }

    def send() -> Any:
        auth = ("api", SECRETS["MAILGUN"])
        timeout = (SDK_TIMEOUT, SDK_TIMEOUT)
        with mailgun.client.Client(
            auth=auth, api_url=sim.prefix("mailgun"), timeout=timeout
        ) as client:
            return client.messages.create(data=form, domain="mg.example.com").json()

    assert (await in_thread(send))["message"] == "Queued. Thank you."

    settings = MailgunSettings(api_key=SecretRef(env="MAILGUN"), domain="mg.example.com")
    outcome = await deliver_to(sim, "mailgun", settings, EMAIL)
    assert isinstance(outcome, Delivered)

    sdk, ours = await sim.requests("mailgun")
    assert_same_request(sdk, ours)
    assert ours["auth"] == "Basic api"
    expected = {key: value if isinstance(value, list) else [value] for key, value in form.items()}
    assert form_body(sdk) == expected
    # We carry the envelope's idempotency key as a custom variable, which
    # recipients never see and Mailgun echoes in its events; the plain create
    # call used here adds none.
    assert form_body(ours) == {**expected, "v:ringbearer-key": [KEY]}
