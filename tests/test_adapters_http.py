"""HTTP adapters against httpx.MockTransport: exact requests and every documented answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import attrs
import cattrs
import httpx
import pytest
import trio

import ringbearer.integrations as integrations
from ringbearer import _converter
from ringbearer._delivery import Delivered, Outcome, Permanent, Retry, Taken
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import Secret, SecretRef
from ringbearer.integrations import (
    MailgunSettings,
    PagerDutySettings,
    ResendSettings,
    SlackWebhookSettings,
    _base,
    provider_kinds,
)

from .kit import (
    Handler,
    answer,
    context,
    deliver_one,
    envelope,
    malformed,
    mock_context,
    permanent,
    retry,
)

KEYS = {
    "RESEND": "re_live_5ecret_resend",
    "MAILGUN": "key-5ecret-mailgun",
    "SLACK": "https://hooks.slack.com/services/T0001/B0001/5ecretslackpath",
    "PD": "e93facc04764012d7bfb002500d5d1a6",
}
RESEND = ResendSettings(api_key=SecretRef(env="RESEND"))
MAILGUN = MailgunSettings(api_key=SecretRef(env="MAILGUN"), domain="mg.example.com")
SLACK = SlackWebhookSettings(url=SecretRef(env="SLACK"))
PAGERDUTY = PagerDutySettings(routing_key=SecretRef(env="PD"))
SETTINGS: dict[str, Any] = {
    "resend": RESEND,
    "mailgun": MAILGUN,
    "slack_webhook": SLACK,
    "pagerduty": PAGERDUTY,
}

EMAIL = {
    "from": "Studio <hello@studio.example>",
    "to": ["ann@example.com", "bob@example.com"],
    "subject": "Your gallery is ready",
    "text": "Hello!",
    "html": "<p>Hello!</p>",
    "cc": "planner@example.com",
    "reply_to": "desk@studio.example",
    "headers": {"X-Wedding": "w-42"},
    "tags": [{"name": "category", "value": "gallery"}],
}
SLACK_TEXT = {"text": "resend is down", "blocks": [{"type": "section"}]}
ALERT = {"summary": "email group failing over", "severity": "critical"}
PAYLOADS: dict[str, Mapping[str, Any]] = {
    "resend": EMAIL,
    "mailgun": EMAIL,
    "slack_webhook": SLACK_TEXT,
    "pagerduty": ALERT,
}


async def deliver(
    kind: str,
    handler: Callable[[httpx.Request], Any],  # returns a Response, or a coroutine of one
    payload: Mapping[str, Any] | None = None,
    settings: Any = None,
    **changes: Any,
) -> tuple[Outcome, list[httpx.Request]]:
    """Build the kind's adapter, open one lane, deliver one envelope; return what was sent."""
    ctx, sent = mock_context(KEYS, handler, **changes)
    adapter = provider_kinds()[kind].build(settings or SETTINGS[kind], ctx)
    return await deliver_one(adapter, envelope(payload or PAYLOADS[kind])), sent


# --- the table -----------------------------------------------------------------


def test_provider_table_rows() -> None:
    """The table maps each kind to its family and settings class, built fresh each call."""
    kinds = provider_kinds()
    assert {k: row.family for k, row in kinds.items()} == {
        "resend": "email",
        "mailgun": "email",
        "smtp": "email",
        "slack_webhook": "alerts",
        "pagerduty": "alerts",
        "slack_chat": "alerts",
        "twilio_sms": "alerts",
        "twilio_call": "alerts",
        "mixpanel": "analytics",
        "amplitude": "analytics",
        "mixpanel_deletion": "privacy",
        "amplitude_deletion": "privacy",
        "tave": "crm",
        "light_blue": "crm",
        "honeybook": "crm",
        "facebook_page": "social",
        "instagram": "social",
        "linkedin": "social",
        "x": "social",
    }
    assert all(row.kind == kind for kind, row in kinds.items())
    assert kinds is not provider_kinds()


def test_public_exports() -> None:
    """The package re-exports the seam and every settings class."""
    for name in (
        "Adapter",
        "AdapterContext",
        "HttpAdapter",
        "HttpCall",
        "HttpProvider",
        "Lane",
        "ProviderKind",
        "EmailPayload",
        "ResendSettings",
        "MailgunSettings",
        "SmtpSettings",
        "SlackWebhookSettings",
        "PagerDutySettings",
        "provider_kinds",
    ):
        assert hasattr(integrations, name), name


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("resend", {"api_key": {"env": "K"}}),
        ("mailgun", {"api_key": {"env": "K"}, "domain": "mg.example.com", "region": "eu"}),
        ("smtp", {"host": "smtp.example.com", "security": "tls", "port": 465}),
        ("slack_webhook", {"url": {"credential": "slack"}}),
        ("pagerduty", {"routing_key": {"env": "K"}, "source": "host-1"}),
    ],
)
def test_settings_structure_with_project_converter(kind: str, raw: dict[str, Any]) -> None:
    """Each settings class structures from TOML-shaped data with the project's converter."""
    settings_type = provider_kinds()[kind].settings_type
    assert isinstance(_converter.make().structure(raw, settings_type), settings_type)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("resend", {"api_key": {"env": "K"}, "api_url": "x"}),
        ("mailgun", {"api_key": {"env": "K"}, "domain": "mg.example.com", "region": "asia"}),
        ("smtp", {"host": "smtp.example.com", "security": "ssl"}),
        ("smtp", {"host": "smtp.example.com", "username": {"env": "U"}}),
        ("pagerduty", {"routing_key": "inline-key"}),
    ],
)
def test_settings_reject_bad_config(kind: str, raw: dict[str, Any]) -> None:
    """Unknown keys, bad choices, half credentials and inline secrets are config errors."""
    with pytest.raises(cattrs.BaseValidationError):
        _converter.make().structure(raw, provider_kinds()[kind].settings_type)


async def test_each_lane_has_its_own_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every lane opens its own one-connection transport and closes it when the lane closes."""

    class Recording(httpx.AsyncBaseTransport):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    opened: list[Recording] = []

    def new_transport(ssl_context: object) -> Recording:
        opened.append(Recording())
        return opened[-1]

    monkeypatch.setattr(_base, "new_transport", new_transport)
    ctx = attrs.evolve(context(KEYS, answer(200, {"id": "x"})), transport=None)
    adapter = provider_kinds()["resend"].build(RESEND, ctx)
    async with adapter.open_lane() as first, adapter.open_lane() as second:
        assert isinstance(first, _base.HttpLane) and isinstance(second, _base.HttpLane)
        assert first.connection.transport is opened[0]
        assert second.connection.transport is opened[1]
        assert not any(t.closed for t in opened)
    assert [t.closed for t in opened] == [True, True]


# --- Resend --------------------------------------------------------------------


async def test_resend_request() -> None:
    """Resend gets POST /emails, a bearer key, the Idempotency-Key header and wire names."""
    outcome, [request] = await deliver("resend", answer(200, {"id": "re-id-1"}))
    assert outcome == Delivered(provider_id="re-id-1")
    assert request.method == "POST"
    assert str(request.url) == "https://api.resend.com/emails"
    assert request.headers["authorization"] == f"Bearer {KEYS['RESEND']}"
    assert request.headers["idempotency-key"] == "msg-0001"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
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


async def test_resend_sandbox_prefix() -> None:
    """In the sandbox Resend is reached under the simulator's prefix."""
    override = "http://127.0.0.1:8700/resend"
    _, [request] = await deliver("resend", answer(200, {"id": "x"}), base_url_override=override)
    assert str(request.url) == "http://127.0.0.1:8700/resend/emails"


def resend_error(status: int, name: str, headers: Mapping[str, str] | None = None) -> Handler:
    return answer(status, {"statusCode": status, "name": name, "message": f"{name}!"}, headers)


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(200, {"id": "abc"}), lambda o: o == Delivered("abc")),
        (answer(200, {"data": []}), malformed),
        (answer(200, "<html>proxy</html>"), malformed),
        (resend_error(400, "invalid_idempotency_key"), permanent("invalid_idempotency_key")),
        (resend_error(400, "validation_error"), permanent("HTTP 400: validation_error")),
        (resend_error(401, "missing_api_key"), permanent("missing_api_key")),
        (resend_error(403, "invalid_api_key"), permanent("invalid_api_key")),
        (resend_error(404, "not_found"), permanent("not_found")),
        (resend_error(409, "invalid_idempotent_request"), permanent("invalid_idempotent")),
        (resend_error(409, "concurrent_idempotent_requests"), retry(Taken.MAYBE)),
        (resend_error(422, "invalid_from_address"), permanent("invalid_from_address!")),
        (
            resend_error(429, "rate_limit_exceeded", {"retry-after": "2", "ratelimit-reset": "1"}),
            retry(Taken.NO, after=2.0),
        ),
        (
            resend_error(429, "rate_limit_exceeded", {"ratelimit-reset": "7"}),
            retry(Taken.NO, after=7.0),
        ),
        (resend_error(429, "daily_quota_exceeded"), retry(Taken.NO, after=3600.0)),
        (resend_error(429, "monthly_quota_exceeded"), retry(Taken.NO, after=3600.0)),
        (resend_error(451, "security_error"), permanent("security_error")),
        (resend_error(500, "application_error"), retry(Taken.MAYBE)),
        (resend_error(500, "internal_server_error"), retry(Taken.MAYBE)),
        (answer(502, "bad gateway"), retry(Taken.MAYBE)),
        (answer(503, "unavailable", {"retry-after": "5"}), retry(Taken.NO, after=5.0)),
        (answer(504, "gateway timeout"), retry(Taken.MAYBE)),
        (answer(408, "request timeout"), retry(Taken.NO)),
        (answer(301, "moved"), permanent("HTTP 301: the provider redirects;", 301)),
    ],
)
async def test_resend_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented Resend answer maps to its outcome."""
    outcome, _ = await deliver("resend", handler)
    assert expect(outcome), outcome


async def test_status_and_provider_words_in_reason() -> None:
    """A failure's reason carries the status and the provider's own name and message."""
    outcome, _ = await deliver("resend", resend_error(422, "invalid_parameter"))
    assert outcome == Permanent("HTTP 422: invalid_parameter: invalid_parameter!", status=422)


# --- Mailgun -------------------------------------------------------------------


async def test_mailgun_request() -> None:
    """Mailgun gets a form post with repeated 'to', h:/v: fields and Basic api:<key>."""
    outcome, [request] = await deliver("mailgun", answer(200, {"id": "<1@mg>", "message": "Q"}))
    assert outcome == Delivered(provider_id="<1@mg>")
    assert request.method == "POST"
    assert str(request.url) == "https://api.mailgun.net/v3/mg.example.com/messages"
    credentials = base64.b64encode(f"api:{KEYS['MAILGUN']}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "from": ["Studio <hello@studio.example>"],
        "to": ["ann@example.com", "bob@example.com"],
        "cc": ["planner@example.com"],
        "subject": ["Your gallery is ready"],
        "text": ["Hello!"],
        "html": ["<p>Hello!</p>"],
        "h:Reply-To": ["desk@studio.example"],
        "h:X-Wedding": ["w-42"],
        "v:category": ["gallery"],
        "v:ringbearer-key": ["msg-0001"],
    }


@pytest.mark.parametrize(
    ("changes", "url"),
    [
        ({"region": "eu"}, "https://api.eu.mailgun.net/v3/mg.example.com/messages"),
        (
            {"base_url": "https://mg.proxy.example/"},
            "https://mg.proxy.example/v3/mg.example.com/messages",
        ),
    ],
)
async def test_mailgun_base_url(changes: dict[str, Any], url: str) -> None:
    """The region picks Mailgun's host; an explicit base_url wins over it."""
    settings = attrs.evolve(MAILGUN, **changes)
    _, [request] = await deliver("mailgun", answer(200, {"id": "x"}), settings=settings)
    assert str(request.url) == url


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(200, {"message": "Queued. Thank you."}), malformed),
        (
            answer(400, {"message": "to parameter is not a valid address"}),
            permanent("valid address"),
        ),
        (answer(401, "Forbidden"), permanent("HTTP 401: Forbidden")),
        (answer(403, "Forbidden"), permanent("HTTP 403")),
        (answer(404, {"message": "Domain not found"}), retry(Taken.NO)),
        (answer(429, {"message": "slow down"}, {"retry-after": "3"}), retry(Taken.NO, 3.0)),
        (answer(500, "oops"), retry(Taken.MAYBE)),
        (answer(503, "oops"), retry(Taken.NO)),
    ],
)
async def test_mailgun_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented Mailgun answer maps to its outcome (404 may be transient)."""
    outcome, _ = await deliver("mailgun", handler)
    assert expect(outcome), outcome


# --- Slack incoming webhook ----------------------------------------------------


async def test_slack_request() -> None:
    """Slack gets JSON posted to the secret URL itself, with no auth header."""
    outcome, [request] = await deliver("slack_webhook", answer(200, "ok"))
    assert outcome == Delivered()
    assert request.method == "POST"
    assert str(request.url) == KEYS["SLACK"]
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == SLACK_TEXT


async def test_slack_sandbox_url() -> None:
    """In the sandbox Slack posts to the simulator's stand-in webhook path."""
    override = "http://127.0.0.1:8700/slack_webhook"
    _, [request] = await deliver("slack_webhook", answer(200, "ok"), base_url_override=override)
    assert str(request.url) == override + "/services/TSANDBOX/BSANDBOX/sandbox"


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(200, "ok\n"), lambda o: o == Delivered()),
        (answer(200, "<html>login</html>"), malformed),
        (answer(400, "invalid_payload"), permanent("HTTP 400: invalid_payload")),
        (answer(400, "user_not_found"), permanent("user_not_found")),
        (answer(403, "action_prohibited"), permanent("action_prohibited")),
        (answer(404, "channel_not_found"), permanent("channel_not_found")),
        (answer(404, "no_service"), permanent("no_service")),
        (answer(410, "channel_is_archived"), permanent("channel_is_archived")),
        (answer(429, "rate_limited", {"retry-after": "30"}), retry(Taken.NO, 30.0)),
        (answer(500, "rollup_error"), retry(Taken.MAYBE)),
    ],
)
async def test_slack_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented webhook answer maps to its outcome."""
    outcome, _ = await deliver("slack_webhook", handler)
    assert expect(outcome), outcome


# --- PagerDuty -----------------------------------------------------------------

PD_OK = answer(202, {"status": "success", "message": "Event processed", "dedup_key": "msg-0001"})


async def test_pagerduty_trigger_request() -> None:
    """A trigger carries the routing key in the body and the idempotency key as dedup_key."""
    outcome, [request] = await deliver("pagerduty", PD_OK)
    assert outcome == Delivered(provider_id="msg-0001")
    assert request.method == "POST"
    assert str(request.url) == "https://events.pagerduty.com/v2/enqueue"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "routing_key": KEYS["PD"],
        "event_action": "trigger",
        "dedup_key": "msg-0001",
        "payload": {
            "summary": "email group failing over",
            "severity": "critical",
            "source": "ringbearer",
        },
    }


async def test_pagerduty_payload_fields() -> None:
    """The payload's own dedup_key, source and details win over the defaults."""
    alert = {
        "summary": "disk",
        "source": "db-1",
        "dedup_key": "db-1/disk",
        "component": "postgres",
        "group": "db",
        "class": "disk",
        "custom_details": {"free": "1%"},
    }
    _, [request] = await deliver("pagerduty", PD_OK, payload=alert)
    body = json.loads(request.content)
    assert body["dedup_key"] == "db-1/disk"
    assert body["payload"] == {
        "summary": "disk",
        "severity": "error",
        "source": "db-1",
        "component": "postgres",
        "group": "db",
        "class": "disk",
        "custom_details": {"free": "1%"},
    }


async def test_pagerduty_resolve_request() -> None:
    """A resolve names its alert's dedup_key and sends no payload object."""
    resolve = {"event_action": "resolve", "dedup_key": "db-1/disk"}
    _, [request] = await deliver("pagerduty", PD_OK, payload=resolve)
    body = json.loads(request.content)
    assert body == {"routing_key": KEYS["PD"], "event_action": "resolve", "dedup_key": "db-1/disk"}


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(202, {"status": "success", "message": "Event processed"}), malformed),
        (answer(202, "accepted"), malformed),
        (
            answer(
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["'payload.summary' is missing"],
                },
            ),
            permanent("Event object is invalid: 'payload.summary' is missing"),
        ),
        (
            answer(429, {"status": "throttle", "message": "Request Limit Exceeded"}),
            retry(Taken.NO, after=30.0),
        ),
        (answer(429, "slow down", {"retry-after": "5"}), retry(Taken.NO, after=5.0)),
        (answer(500, "error"), retry(Taken.MAYBE)),
        (answer(502, "error"), retry(Taken.MAYBE)),
    ],
)
async def test_pagerduty_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented Events v2 answer maps to its outcome."""
    outcome, _ = await deliver("pagerduty", handler)
    assert expect(outcome), outcome


# --- redirects -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["resend", "mailgun", "slack_webhook", "pagerduty"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_permanent_and_names_the_base_url(kind: str, status: int) -> None:
    """A 3xx is not followed or retried: permanent, telling the operator to check the base URL."""
    moved = answer(status, "", {"location": "https://api.example.com/v2/"})
    outcome, sent = await deliver(kind, moved)
    assert len(sent) == 1
    assert outcome == Permanent(
        f"HTTP {status}: the provider redirects to https://api.example.com/v2/; "
        "check the integration's configured base URL",
        status=status,
    )


async def test_redirect_reason_hides_a_secret_location() -> None:
    """A Location that echoes the webhook's secret URL shows only '***' in the reason."""
    outcome, _ = await deliver("slack_webhook", answer(302, "", {"location": KEYS["SLACK"]}))
    assert isinstance(outcome, Permanent) and "5ecret" not in outcome.reason


# --- exceptions at the boundary ------------------------------------------------


@pytest.mark.parametrize(
    ("exc_type", "taken"),
    [
        (httpx.ConnectError, Taken.NO),
        (httpx.ConnectTimeout, Taken.NO),
        (httpx.PoolTimeout, Taken.NO),
        (httpx.WriteError, Taken.NO),
        (httpx.WriteTimeout, Taken.NO),
        (httpx.ProxyError, Taken.NO),
        (httpx.UnsupportedProtocol, Taken.NO),
        (httpx.LocalProtocolError, Taken.NO),
        (httpx.ReadTimeout, Taken.MAYBE),
        (httpx.ReadError, Taken.MAYBE),
        (httpx.RemoteProtocolError, Taken.MAYBE),
        (httpx.CloseError, Taken.MAYBE),
        (httpx.DecodingError, Taken.MAYBE),
    ],
)
@pytest.mark.parametrize("kind", ["resend", "mailgun", "slack_webhook", "pagerduty"])
async def test_exception_translation(
    kind: str, exc_type: type[httpx.RequestError], taken: Taken
) -> None:
    """Each httpx failure becomes a Retry whose 'taken' says if the request got through."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("peer reset", request=request)

    outcome, _ = await deliver(kind, handler)
    assert isinstance(outcome, Retry)
    assert outcome.taken is taken
    assert exc_type.__name__ in outcome.reason


async def test_whole_request_deadline(autojump_clock: trio.abc.Clock) -> None:
    """A provider that never answers is cut off at the context timeout, maybe taken."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(3600)
        raise AssertionError("unreachable")

    outcome, _ = await deliver("resend", handler, timeout=5.0)
    assert outcome == Retry("no answer within 5s", taken=Taken.MAYBE)
    assert trio.current_time() == pytest.approx(5.0)


async def test_invalid_secret_url_is_not_sent() -> None:
    """A webhook secret that is not a URL is reported without echoing it."""
    bad = {**KEYS, "SLACK": "https://hooks.slack.com:5ecret/path"}

    outcome, sent = await deliver(
        "slack_webhook", answer(200, "ok"), secrets=lambda ref: Secret(bad[str(ref.env)])
    )
    assert sent == []
    assert isinstance(outcome, Retry) and outcome.taken is Taken.NO
    assert "5ecret" not in repr(outcome)


# --- secrets never leak --------------------------------------------------------


@pytest.mark.parametrize("kind", ["resend", "mailgun", "slack_webhook", "pagerduty"])
async def test_auth_failure_hides_the_secret(kind: str) -> None:
    """An auth failure echoing the key shows only '***' in the outcome's repr."""
    secret = KEYS[
        {"resend": "RESEND", "mailgun": "MAILGUN", "slack_webhook": "SLACK"}.get(kind, "PD")
    ]
    outcome, _ = await deliver(kind, answer(401, {"message": f"bad key {secret}"}))
    assert isinstance(outcome, Permanent)
    assert secret not in repr(outcome)
    assert "***" in outcome.reason


async def test_network_error_hides_the_secret_url() -> None:
    """A transport error naming the webhook URL is scrubbed before it becomes a reason."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    outcome, _ = await deliver("slack_webhook", handler)
    assert KEYS["SLACK"] not in repr(outcome)
    assert "5ecret" not in repr(outcome)


def test_call_repr_hides_secrets() -> None:
    """An HttpCall's repr shows neither its URL, headers nor body."""
    call = _base.HttpCall(
        "POST", KEYS["SLACK"], headers={"Authorization": "Bearer 5ecret"}, json={"k": "5ecret"}
    )
    assert "5ecret" not in repr(call)


# --- payloads ------------------------------------------------------------------


def email(**changes: Any) -> dict[str, Any]:
    payload = {**EMAIL, **changes}
    return {k: v for k, v in payload.items() if v is not None}


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (["not", "an", "object"], "must be a JSON object"),
        (email(txt="typo"), "unknown field(s) 'txt'"),
        (email(**{"from": None}), "'from' is required"),
        (email(**{"from": "nobody"}), "'from' is not an email address"),
        (email(to=None), "'to' is required"),
        (email(to=[]), "'to' must be an address or a list of 1 to 50"),
        (email(to=[f"u{i}@example.com" for i in range(51)]), "list of 1 to 50"),
        (email(to=["ok@example.com", 7]), "'to[1]' must be a string"),
        (email(cc="not-an-address"), "'cc[0]' is not an email address"),
        (email(subject=None), "'subject' is required"),
        (email(subject="two\nlines"), "'subject' must not contain line breaks"),
        (email(subject=""), "'subject' must not be empty"),
        (email(text=None, html=None), "one of 'text' or 'html' is required"),
        (email(html=5), "'html' must be a string"),
        (email(headers=["X-A"]), "'headers' must be an object"),
        (email(headers={"Bad Name": "x"}), "invalid header name"),
        (email(headers={"Message-ID": "<x@y>"}), "may not set 'Message-ID'"),
        (email(headers={"X-A": "a\r\nBcc: evil@example.com"}), "'headers.X-A' must not contain"),
        (email(tags=[{"name": "a"}]), "'tags[0]' must be an object with 'name' and 'value'"),
        (email(tags=[{"name": "a b", "value": "c"}]), "'tags[0].name'"),
    ],
)
@pytest.mark.parametrize("kind", ["resend", "mailgun", "smtp"])
def test_email_payload_rejected(kind: str, payload: Any, words: str) -> None:
    """Every email provider rejects a bad payload with a message naming the field."""
    adapter = provider_kinds()[kind].build(
        integrations.SmtpSettings(host="localhost") if kind == "smtp" else SETTINGS[kind],
        context(KEYS, answer(200, {})),
    )
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate(payload)
    assert words in caught.value.message


def test_email_payload_minimal() -> None:
    """The smallest valid email: one address as a string and an html body."""
    mail = integrations.EmailPayload.parse(
        {"from": "a@example.com", "to": "b@example.com", "subject": "s", "html": "<p>x</p>"}
    )
    assert mail.to == ("b@example.com",)
    assert mail.text is None


@pytest.mark.parametrize(
    ("kind", "payload", "words"),
    [
        ("slack_webhook", {"blocks": []}, "'text' is required"),
        ("slack_webhook", {"text": "x", "blocks": "no"}, "'blocks' must be a list"),
        ("slack_webhook", {"text": "x", "blocks": ["no"]}, "'blocks' must be a list of objects"),
        ("slack_webhook", {"text": "x", "channel": "#general"}, "unknown field(s) 'channel'"),
        ("pagerduty", {"severity": "error"}, "'summary' is required"),
        ("pagerduty", {"summary": "x" * 1025}, "'summary' is 1025 characters long, at most 1024"),
        ("pagerduty", {"summary": "x", "severity": "fatal"}, "'severity' must be one of"),
        ("pagerduty", {"summary": "x", "event_action": "close"}, "'event_action' must be one of"),
        ("pagerduty", {"summary": "x", "dedup_key": "k" * 256}, "'dedup_key' is 256"),
        ("pagerduty", {"event_action": "resolve"}, "'dedup_key' is required to resolve"),
        (
            "pagerduty",
            {"summary": "x", "custom_details": [1]},
            "'custom_details' must be an object",
        ),
    ],
)
def test_alert_payload_rejected(kind: str, payload: dict[str, Any], words: str) -> None:
    """Alert providers reject a bad payload with a message naming the field."""
    adapter = provider_kinds()[kind].build(SETTINGS[kind], context(KEYS, answer(200, {})))
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate(payload)
    assert words in caught.value.message


async def test_invalid_payload_at_delivery_is_permanent() -> None:
    """A stored payload that no longer fits is a permanent failure, and nothing is sent."""
    outcome, sent = await deliver("resend", answer(200, {"id": "x"}), payload={"to": "x"})
    assert sent == []
    assert isinstance(outcome, Permanent)
    assert outcome == Permanent("invalid payload: one of 'text' or 'html' is required")


# --- wait hints ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "after"),
    [
        ({"retry-after": "120"}, 120.0),
        ({"retry-after": "1.5"}, 1.5),
        (
            {
                "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            30.0,
        ),
        (
            {
                "retry-after": "Wed, 21 Oct 2015 07:27:00 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            0.0,
        ),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"ratelimit-reset": "12"}, 12.0),
        ({"ratelimit": '"default";r=0;t=9'}, 9.0),
        ({}, None),
    ],
)
def test_wait_hint(headers: dict[str, str], after: float | None) -> None:
    """Retry-After (seconds or HTTP-date, against the server's Date) then RateLimit reset."""
    assert _base.wait_hint(httpx.Headers(headers)) == after


def test_epoch_reset_against_server_date() -> None:
    """An epoch reset header becomes seconds from the server's own clock."""
    headers = httpx.Headers(
        {"x-rate-limit-reset": "1445412540", "date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    assert _base.epoch_reset(headers, "x-rate-limit-reset") == 60.0
    assert _base.epoch_reset(headers, "missing") is None


def test_safe_json_reader() -> None:
    """Only a JSON object labelled as JSON is read; anything else is None."""
    assert _base.json_object(httpx.Response(200, json={"a": 1})) == {"a": 1}
    assert _base.json_object(httpx.Response(200, json=[1])) is None
    assert _base.json_object(httpx.Response(200, text='{"a": 1}')) is None
    broken = httpx.Response(200, content=b"{", headers={"content-type": "application/json"})
    assert _base.json_object(broken) is None
