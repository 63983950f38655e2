"""The provider simulator over HTTP: each provider's answers, faults, stats and the /_sim API."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

import ringbearer.simulator
from ringbearer._httpserver import HttpRequest
from ringbearer.simulator import (
    Faults,
    SimulatorAddress,
    SimulatorState,
    kind_of,
    provider_specs,
    run_simulator,
    serve_simulator,
)
from ringbearer.simulator._app import make_handler
from ringbearer.simulator._pagerduty import AlertStatus, PagerDuty
from ringbearer.simulator._resend import Resend

from .kit import HOST, Sim
from .kit import sim_fixture as sim_fixture

AUTH = {"Authorization": "Bearer re_test"}
EMAIL = {"from": "Acme <hi@acme.test>", "to": ["guest@example.com"], "subject": "Hi", "html": "x"}
FORM = {"from": "hi@acme.test", "to": "guest@example.com", "subject": "Hi", "text": "x"}
EVENT: dict[str, Any] = {
    "routing_key": "e93facc04764012d7bfb002500d5d1a6",
    "event_action": "trigger",
    "dedup_key": "srv01/mysql",
    "payload": {"summary": "disk full", "source": "srv01", "severity": "critical"},
}
MAILGUN_URL = "/mailgun/v3/mg.example.com/messages"
# The event counters of a provider that sent none (no webhook target is registered).
NO_EVENTS = {"events_sent": 0, "events_failed": 0, "events_dropped": 0, "event_retries": 0}
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
SLACK_URL = "/slack-webhook/services/T000/B000/XXXX"

# A valid request to each HTTP provider, as httpx keyword arguments.
VALID: dict[str, dict[str, Any]] = {
    "resend": {"url": "/resend/emails", "json": EMAIL, "headers": AUTH},
    "mailgun": {"url": MAILGUN_URL, "data": FORM, "auth": ("api", "key-test")},
    "slack-webhook": {"url": SLACK_URL, "json": {"text": "hi"}},
    "pagerduty": {"url": "/pagerduty/v2/enqueue", "json": EVENT},
    "slack-chat": {
        "url": "/slack-chat/api/chat.postMessage",
        "json": {"channel": "C0ALERTS01", "text": "hi"},
        "headers": {"Authorization": "Bearer xoxb-test"},
    },
    "twilio-sms": {
        "url": f"/twilio-sms/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
        "data": {"To": "+15558675310", "From": "+15017122661", "Body": "hi"},
        "auth": (TWILIO_SID, "token"),
    },
    "twilio-call": {
        "url": f"/twilio-call/2010-04-01/Accounts/{TWILIO_SID}/Calls.json",
        "data": {
            "To": "+15558675310",
            "From": "+15017122661",
            "Twiml": "<Response><Say>hi</Say></Response>",
        },
        "auth": (TWILIO_SID, "token"),
    },
    "tave": {
        "url": "/tave/api/v2/address-book",
        "json": {"kind": "person", "firstName": "Jane", "lastName": "Doe"},
        "headers": {"X-API-KEY": "k"},
    },
    "light-blue": {
        "url": "/light-blue/api.php",
        "data": {"key": "k", "type": "contact form", "ContactNameFull": "Jane Doe"},
    },
    "honeybook": {
        "url": "/honeybook/hooks/catch/1000000/sandbox/",
        "json": {
            "project": {"name": "Doe wedding"},
            "client": {"name": "Jane Doe", "email": "jane@example.com"},
            "idempotency_key": "k-1",
        },
    },
    "mixpanel": {
        "url": "/mixpanel/import?strict=1",
        "json": [
            {
                "event": "Signup",
                "properties": {
                    "time": 1700000000000,
                    "distinct_id": "user-1",
                    "$insert_id": "5f1c2a9e-0001",
                },
            }
        ],
        "auth": ("project-token", ""),
    },
    "amplitude": {
        "url": "/amplitude/2/httpapi",
        "json": {
            "api_key": "amp-test-key",
            "events": [{"event_type": "Signup", "user_id": "user-1", "insert_id": "5f1c2a9e-1"}],
        },
    },
    "mixpanel-deletion": {
        "url": "/mixpanel-deletion/data-deletions/v3.0/?token=project-token",
        "json": {"distinct_ids": ["user-1"], "compliance_type": "GDPR"},
        "headers": {"Authorization": "Bearer gdpr-token"},
    },
    "amplitude-deletion": {
        "url": "/amplitude-deletion/api/2/deletions/users",
        "json": {"user_ids": ["user-1"], "requester": "ringbearer"},
        "auth": ("amp-key", "amp-secret"),
    },
    "facebook-page": {
        "url": "/facebook-page/v21.0/1234567890/feed",
        "data": {"message": "hi", "access_token": "sandbox"},
    },
    "instagram": {
        "url": "/instagram/v21.0/17841400000000001/media",
        "data": {"image_url": "https://cdn.example.com/a.jpg", "access_token": "sandbox"},
    },
    "linkedin": {
        "url": "/linkedin/rest/posts",
        "json": {
            "author": "urn:li:organization:123456789",
            "commentary": "hi",
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        },
        "headers": {
            "Authorization": "Bearer sandbox",
            "LinkedIn-Version": "202601",
            "X-Restli-Protocol-Version": "2.0.0",
        },
    },
    "x": {
        "url": "/x/2/tweets",
        "json": {"text": "hi"},
        "headers": {"Authorization": "Bearer sandbox"},
    },
}
SUCCESS = {
    "resend": 200,
    "mailgun": 200,
    "slack-webhook": 200,
    "pagerduty": 202,
    "slack-chat": 200,
    "twilio-sms": 201,
    "twilio-call": 201,
    "tave": 201,
    "light-blue": 200,
    "honeybook": 200,
    "mixpanel": 200,
    "amplitude": 200,
    "mixpanel-deletion": 201,
    "amplitude-deletion": 200,
    "facebook-page": 200,
    "instagram": 200,
    "linkedin": 201,
    "x": 201,
}


@pytest.fixture
def sim_seed() -> int:
    return 7


async def send(sim: Sim, provider: str, **overrides: Any) -> httpx.Response:
    """The provider's valid request, with ``overrides`` of its httpx arguments."""
    return await sim.client.post(**{**VALID[provider], **overrides})


def test_public_surface() -> None:
    """The package exports exactly its documented names."""
    assert sorted(ringbearer.simulator.__all__) == [
        "EventTiming",
        "Fates",
        "FaultKind",
        "Faults",
        "MailEvent",
        "SimulatorAddress",
        "SimulatorState",
        "StatsSnapshot",
        "WebhookTarget",
        "kind_of",
        "provider_specs",
        "run_simulator",
        "serve_simulator",
    ]


def test_provider_table_names() -> None:
    """The provider table has one row per simulated HTTP provider, named by its path segment."""
    names = [spec.name for spec in provider_specs()]
    assert sorted(names) == sorted(VALID) and len(set(names)) == len(names)


def test_every_http_kind_has_its_simulated_provider() -> None:
    """Each kind but SMTP has its simulated provider, at /foo-bar and at its kind foo_bar."""
    from ringbearer.integrations import provider_kinds

    names = {spec.name for spec in provider_specs()}
    kinds = {kind for kind in provider_kinds() if kind != "smtp"}
    assert {kind.replace("_", "-") for kind in kinds} == names
    assert {spec.kind for spec in provider_specs()} == kinds
    state = SimulatorState()
    assert all(state.name_of(kind) == state.name_of(kind_of(kind)) for kind in kinds)
    assert (state.name_of("slack_webhook"), state.name_of("smtp")) == ("slack-webhook", "smtp")
    assert state.name_of("slack webhook") is None


def test_address_url() -> None:
    """The address renders as a base URL, bracketing IPv6 hosts."""
    assert SimulatorAddress("127.0.0.1", 8080).url == "http://127.0.0.1:8080"
    assert SimulatorAddress("::1", 8080, 2525).url == "http://[::1]:8080"


async def test_run_simulator_announces_its_ports(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    """run_simulator prints one line naming the bound HTTP and SMTP ports."""
    nursery.start_soon(run_simulator, HOST, 0, 0, 3)
    await trio.testing.wait_all_tasks_blocked()
    line = capsys.readouterr().out
    assert line.startswith(f"simulator listening on http://{HOST}:")
    assert f"(smtp {HOST}:" in line and line.endswith(")\n")
    nursery.cancel_scope.cancel()


async def test_same_seed_same_ids() -> None:
    """Ids come from the seeded stream: the same seed gives the same ids, another seed not."""

    async def first_id(seed: int) -> bytes:
        path = "/resend/emails"
        body = b'{"from":"a@x.test","to":"b@x.test","subject":"s"}'
        request = HttpRequest("POST", path, path, "", {"authorization": "Bearer k"}, body)
        return (await make_handler(SimulatorState(seed=seed))(request)).body

    assert await first_id(5) == await first_id(5) != await first_id(6)


# --- Resend -----------------------------------------------------------------


async def test_resend_sends_one_email(sim: Sim) -> None:
    """A valid email gets 200 and a UUID id."""
    response = await send(sim, "resend")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert uuid.UUID(response.json()["id"]).version == 4


async def test_resend_batch(sim: Sim) -> None:
    """A batch gets one id per email; over 100 emails is a 422."""
    response = await send(sim, "resend", url="/resend/emails/batch", json=[EMAIL, EMAIL])
    assert response.status_code == 200
    assert len({item["id"] for item in response.json()["data"]}) == 2
    too_many = await send(sim, "resend", url="/resend/emails/batch", json=[EMAIL] * 101)
    assert too_many.status_code == 422
    assert too_many.json()["name"] == "validation_error"


async def test_resend_batch_validation_modes(sim: Sim) -> None:
    """Strict batches fail whole; permissive ones queue the valid emails and list the rest."""
    batch = [EMAIL, {"from": "a@x.test", "to": "b@x.test"}, EMAIL]
    strict = await send(sim, "resend", url="/resend/emails/batch", json=batch)
    assert strict.status_code == 422
    assert strict.json()["name"] == "missing_required_field"
    headers = {**AUTH, "x-batch-validation": "permissive"}
    loose = await send(sim, "resend", url="/resend/emails/batch", json=batch, headers=headers)
    assert loose.status_code == 200
    assert len(loose.json()["data"]) == 2
    assert loose.json()["errors"] == [{"index": 1, "message": "Missing `subject` field."}]


@pytest.mark.parametrize(
    ("headers", "status", "name"),
    [
        ({}, 401, "missing_api_key"),
        ({"Authorization": "Basic abc"}, 401, "missing_api_key"),
        ({"Authorization": "Bearer invalid"}, 403, "invalid_api_key"),
    ],
)
async def test_resend_auth_errors(
    sim: Sim, headers: dict[str, str], status: int, name: str
) -> None:
    """No Bearer key is a 401; the key ``invalid`` is a 403; both in Resend's error shape."""
    response = await send(sim, "resend", headers=headers)
    assert response.status_code == status
    assert response.json() == {
        "statusCode": status,
        "name": name,
        "message": response.json()["message"],
    }


@pytest.mark.parametrize(
    ("email", "status", "name"),
    [
        ({k: v for k, v in EMAIL.items() if k != "subject"}, 422, "missing_required_field"),
        ({k: v for k, v in EMAIL.items() if k != "to"}, 422, "missing_required_field"),
        ({**EMAIL, "to": [f"g{i}@x.test" for i in range(51)]}, 422, "validation_error"),
        ({**EMAIL, "to": 5}, 422, "validation_error"),
        ({**EMAIL, "from": "nobody"}, 422, "invalid_from_address"),
        ([EMAIL], 422, "validation_error"),
    ],
)
async def test_resend_validation_errors(sim: Sim, email: Any, status: int, name: str) -> None:
    """Missing fields, too many recipients and bad addresses get Resend's 422s."""
    response = await send(sim, "resend", json=email)
    assert (response.status_code, response.json()["name"]) == (status, name)


async def test_resend_rejects_bad_json_and_unknown_routes(sim: Sim) -> None:
    """Unparseable bodies are 400; unknown paths 404; other methods 405."""
    bad = await send(sim, "resend", content=b"{", json=None)
    assert (bad.status_code, bad.json()["name"]) == (400, "validation_error")
    missing = await send(sim, "resend", url="/resend/domains")
    assert (missing.status_code, missing.json()["name"]) == (404, "not_found")
    wrong = await sim.client.get("/resend/emails", headers=AUTH)
    assert (wrong.status_code, wrong.json()["name"]) == (405, "method_not_allowed")


async def test_resend_idempotent_replay(sim: Sim) -> None:
    """The same key and body replays the first answer, same id, without sending again."""
    headers = {**AUTH, "Idempotency-Key": "order-1"}
    first = await send(sim, "resend", headers=headers)
    second = await send(sim, "resend", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    stats = await sim.stats("resend")
    assert (stats["requests"], stats["accepted"]) == (2, 2)
    assert (stats["unique_keys"], stats["duplicates"]) == (1, 1)
    resend = sim.state.endpoints["resend"].logic
    assert isinstance(resend, Resend)
    assert len(resend.sent) == 1


async def test_resend_idempotency_conflict(sim: Sim) -> None:
    """The same key with a different body is a 409 invalid_idempotent_request."""
    headers = {**AUTH, "Idempotency-Key": "order-2"}
    await send(sim, "resend", headers=headers)
    other = await send(sim, "resend", headers=headers, json={**EMAIL, "subject": "Other"})
    assert other.status_code == 409
    assert other.json()["name"] == "invalid_idempotent_request"


@pytest.mark.parametrize("key", ["", "k" * 257])
async def test_resend_rejects_bad_idempotency_keys(sim: Sim, key: str) -> None:
    """Keys must be 1 to 256 characters long."""
    response = await send(sim, "resend", headers={**AUTH, "Idempotency-Key": key})
    assert (response.status_code, response.json()["name"]) == (400, "invalid_idempotency_key")


async def test_resend_failed_send_is_not_remembered(sim: Sim) -> None:
    """A key whose request failed validation can be used again once the body is fixed."""
    headers = {**AUTH, "Idempotency-Key": "order-3"}
    bad = await send(sim, "resend", headers=headers, json={"from": "a@x.test"})
    good = await send(sim, "resend", headers=headers)
    assert (bad.status_code, good.status_code) == (422, 200)


# --- Mailgun ----------------------------------------------------------------


async def test_mailgun_queues_a_form_message(sim: Sim) -> None:
    """A valid urlencoded message is queued with an id at the domain."""
    response = await send(sim, "mailgun")
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Queued. Thank you."
    assert body["id"].startswith("<") and body["id"].endswith("@mg.example.com>")


async def test_mailgun_multipart_and_its_idempotency_field(sim: Sim) -> None:
    """Multipart works; the SDK's h:X-Idempotency-Key is counted but never deduplicated."""
    fields = {**FORM, "h:X-Idempotency-Key": "fp-1"}
    files = {"attachment": ("a.txt", b"hello", "text/plain")}
    first = await send(sim, "mailgun", data=fields, files=files)
    second = await send(sim, "mailgun", data=fields, files=files)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] != second.json()["id"]
    stats = await sim.stats("mailgun")
    assert (stats["accepted"], stats["unique_keys"], stats["duplicates"]) == (2, 1, 1)


@pytest.mark.parametrize("auth", [None, ("user", "key"), ("api", "invalid"), ("api", "")])
async def test_mailgun_auth_errors(sim: Sim, auth: tuple[str, str] | None) -> None:
    """Anything but Basic ``api:<key>`` gets a plain-text 401 Forbidden."""
    response = await send(sim, "mailgun", auth=auth)
    assert (response.status_code, response.text) == (401, "Forbidden")


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("from", "from parameter is missing"),
        ("subject", "subject parameter is missing"),
        ("text", "Need at least one of 'text', 'html' or 'template' parameters specified"),
    ],
)
async def test_mailgun_validation_errors(sim: Sim, missing: str, message: str) -> None:
    """A missing required field is a 400 with Mailgun's message."""
    data = {k: v for k, v in FORM.items() if k != missing}
    response = await send(sim, "mailgun", data=data)
    assert (response.status_code, response.json()) == (400, {"message": message})


# --- Slack incoming webhook -------------------------------------------------


async def test_slack_webhook_posts(sim: Sim) -> None:
    """A message with text or blocks gets a plain ``ok``; no key is counted."""
    text = await send(sim, "slack-webhook")
    blocks = await send(sim, "slack-webhook", json={"blocks": [{"type": "divider"}]})
    assert (text.status_code, text.text) == (200, "ok")
    assert (blocks.status_code, blocks.text) == (200, "ok")
    stats = await sim.stats("slack-webhook")
    assert (stats["accepted"], stats["unique_keys"]) == (2, 0)


@pytest.mark.parametrize(
    ("overrides", "status", "text"),
    [
        ({"json": {"username": "x"}}, 400, "no_text"),
        ({"content": b"not json"}, 400, "invalid_payload"),
        ({"json": {"text": "x", "blocks": "nope"}}, 400, "invalid_blocks"),
        ({"url": "/slack-webhook/services/T000/B000/invalid"}, 403, "invalid_token"),
        ({"url": "/slack-webhook/services/T000"}, 404, "no_service"),
    ],
)
async def test_slack_webhook_errors(
    sim: Sim, overrides: dict[str, Any], status: int, text: str
) -> None:
    """Bad payloads and bad hooks get Slack's plain-text error words."""
    response = await send(sim, "slack-webhook", **overrides)
    assert (response.status_code, response.text) == (status, text)


# --- PagerDuty --------------------------------------------------------------


async def test_pagerduty_accepts_an_event(sim: Sim) -> None:
    """A trigger is 202 with its dedup_key; without one, PagerDuty makes one up."""
    given = await send(sim, "pagerduty")
    assert given.status_code == 202
    assert given.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "srv01/mysql",
    }
    event = {k: v for k, v in EVENT.items() if k != "dedup_key"}
    made_up = await send(sim, "pagerduty", json=event)
    assert uuid.UUID(made_up.json()["dedup_key"])


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({**EVENT, "routing_key": "invalid"}, "Invalid routing key"),
        ({**EVENT, "routing_key": ""}, "'routing_key' is missing or blank"),
        ({**EVENT, "event_action": "explode"}, "'event_action' is missing or invalid"),
        (
            {**EVENT, "payload": {"source": "s", "severity": "info"}},
            "'payload.summary' is missing or blank",
        ),
        (
            {**EVENT, "payload": {**EVENT["payload"], "severity": "dire"}},
            "'payload.severity' must be one of critical, error, warning, info",
        ),
        (
            {**EVENT, "event_action": "resolve", "dedup_key": None},
            "'dedup_key' is required for acknowledge and resolve events",
        ),
        (
            {**EVENT, "dedup_key": "k" * 256},
            "'dedup_key' must be a string of at most 255 characters",
        ),
    ],
)
async def test_pagerduty_invalid_events(sim: Sim, event: dict[str, Any], error: str) -> None:
    """Invalid events get 400 ``invalid event`` listing what is wrong."""
    response = await send(sim, "pagerduty", json=event)
    assert response.status_code == 400
    body = response.json()
    assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
    assert error in body["errors"]


async def test_pagerduty_unparseable_body(sim: Sim) -> None:
    """A body that is not JSON is a 400 ``Unrecognized object``."""
    response = await send(sim, "pagerduty", content=b"{", json=None)
    assert response.status_code == 400
    assert response.json()["errors"] == ["JSON parse error"]


async def test_pagerduty_dedup_applies_events_to_one_alert(sim: Sim) -> None:
    """Events sharing a dedup_key move one alert; a trigger after resolve opens a new one."""
    pagerduty = sim.state.endpoints["pagerduty"].logic
    assert isinstance(pagerduty, PagerDuty)
    alert = (EVENT["routing_key"], EVENT["dedup_key"])
    await send(sim, "pagerduty")
    await send(sim, "pagerduty")
    assert (pagerduty.alerts[alert], pagerduty.opened) == (AlertStatus.TRIGGERED, 1)
    await send(sim, "pagerduty", json={**EVENT, "event_action": "acknowledge"})
    await send(sim, "pagerduty")
    assert (pagerduty.alerts[alert], pagerduty.opened) == (AlertStatus.ACKNOWLEDGED, 1)
    await send(sim, "pagerduty", json={**EVENT, "event_action": "resolve"})
    assert pagerduty.alerts[alert] is AlertStatus.RESOLVED
    await send(sim, "pagerduty")
    assert (pagerduty.alerts[alert], pagerduty.opened) == (AlertStatus.TRIGGERED, 2)
    stats = await sim.stats("pagerduty")
    assert (stats["accepted"], stats["unique_keys"], stats["duplicates"]) == (6, 1, 5)


async def test_pagerduty_events_for_no_open_alert_are_dropped(sim: Sim) -> None:
    """Acknowledging or resolving an unknown key is accepted and changes nothing."""
    pagerduty = sim.state.endpoints["pagerduty"].logic
    assert isinstance(pagerduty, PagerDuty)
    response = await send(sim, "pagerduty", json={**EVENT, "event_action": "resolve"})
    assert response.status_code == 202
    assert pagerduty.alerts == {}


# --- Faults -----------------------------------------------------------------

PROVIDERS = list(VALID)


@pytest.mark.parametrize(
    ("provider", "status", "marker"),
    [
        ("resend", 500, "application_error"),
        ("mailgun", 500, "Internal Server Error"),
        ("slack-webhook", 500, "rollup_error"),
        ("pagerduty", 500, "Internal Server Error"),
    ],
)
async def test_error_fault_answers_the_providers_own_5xx(
    sim: Sim, provider: str, status: int, marker: str
) -> None:
    """error_rate 1 makes every request a provider-shaped transient 5xx."""
    await sim.faults(provider, error_rate=1.0)
    response = await send(sim, provider)
    assert response.status_code == status
    assert marker in response.text
    stats = await sim.stats(provider)
    assert (stats["requests"], stats["accepted"], stats["status_counts"]) == (
        1,
        0,
        {str(status): 1},
    )


@pytest.mark.parametrize(
    ("provider", "status", "marker"),
    [
        ("resend", 403, "validation_error"),
        ("mailgun", 400, "not a valid address"),
        ("slack-webhook", 400, "invalid_payload"),
        ("pagerduty", 400, "Invalid routing key"),
    ],
)
async def test_permanent_fault_answers_the_providers_own_4xx(
    sim: Sim, provider: str, status: int, marker: str
) -> None:
    """permanent_rate 1 makes every request a provider-shaped permanent 4xx."""
    await sim.faults(provider, permanent_rate=1.0)
    response = await send(sim, provider)
    assert (response.status_code, marker in response.text) == (status, True)


@pytest.mark.parametrize(
    ("provider", "status"),
    [("resend", 503), ("mailgun", 503), ("slack-webhook", 500), ("pagerduty", 503)],
)
async def test_outage_fails_every_request(sim: Sim, provider: str, status: int) -> None:
    """An outage answers every request with the provider's 5xx, until it is cleared."""
    await sim.faults(provider, outage=True)
    statuses = [(await send(sim, provider)).status_code for _ in range(3)]
    assert statuses == [status] * 3
    await sim.client.delete("/_sim/faults", params={"provider": provider})
    assert (await send(sim, provider)).status_code == SUCCESS[provider]


@pytest.mark.parametrize(
    ("provider", "headers"),
    [
        (
            "resend",
            {
                "ratelimit-limit": "2",
                "ratelimit-remaining": "0",
                "ratelimit-reset": "5",
                "retry-after": "5",
            },
        ),
        ("mailgun", {"retry-after": "5"}),
        ("slack-webhook", {"retry-after": "5"}),
        ("pagerduty", {}),
    ],
)
async def test_rate_limit_storm_uses_each_providers_headers(
    sim: Sim, provider: str, headers: dict[str, str]
) -> None:
    """A storm is a 429 with the provider's own rate-limit headers (PagerDuty sends none)."""
    await sim.faults(provider, storm=True, retry_after=5)
    response = await send(sim, provider)
    assert response.status_code == 429
    sent = {k: v for k, v in response.headers.items() if "ratelimit" in k or k == "retry-after"}
    assert sent == headers


async def test_rate_limit_rate_defaults_retry_after_to_one_second(sim: Sim) -> None:
    """rate_limit_rate 1 without retry_after announces one second."""
    await sim.faults("resend", rate_limit_rate=1.0)
    response = await send(sim, "resend")
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reset_fault_aborts_the_connection(sim: Sim, provider: str) -> None:
    """reset_rate 1 resets the TCP connection; the request is counted but not processed."""
    await sim.faults(provider, reset_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await send(sim, provider)
    stats = await sim.stats(provider)
    assert (stats["accepted"], stats["status_counts"]) == (0, {"reset": 1})


async def test_hang_fault_never_answers(sim: Sim) -> None:
    """hang_rate 1 keeps the request unanswered until the client times out."""
    await sim.faults("resend", hang_rate=1.0)
    with pytest.raises(httpx.ReadTimeout):
        await send(sim, "resend", timeout=0.2)
    stats = await sim.stats("resend")
    assert (stats["accepted"], stats["status_counts"]) == (0, {"hang": 1})


# LinkedIn's success has an empty body: there is nothing to cut short.
@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "linkedin"])
async def test_truncate_fault_cuts_the_answer_after_the_work(sim: Sim, provider: str) -> None:
    """truncate_rate 1 processes the request, then cuts its answer short."""
    await sim.faults(provider, truncate_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        await send(sim, provider)
    stats = await sim.stats(provider)
    assert (stats["accepted"], stats["status_counts"]) == (1, {str(SUCCESS[provider]): 1})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_fault_garbles_a_success(sim: Sim, provider: str) -> None:
    """malformed_rate 1 answers the success status with half a body labelled HTML."""
    await sim.faults(provider, malformed_rate=1.0)
    good = await send(sim, provider)
    assert good.status_code == SUCCESS[provider]
    assert good.headers["content-type"] == "text/html"
    # A reset, not just clearing the faults: some providers refuse a repeated post.
    await sim.client.post("/_sim/reset")
    healthy = await send(sim, provider)
    assert len(good.content) == len(healthy.content) // 2
    if healthy.headers.get("content-type") == "application/json":
        with pytest.raises(ValueError):
            good.json()


async def test_malformed_fault_leaves_errors_alone(sim: Sim) -> None:
    """A request that fails on its own merits keeps its real error under malformed_rate."""
    await sim.faults("resend", malformed_rate=1.0)
    response = await send(sim, "resend", headers={})
    assert (response.status_code, response.json()["name"]) == (401, "missing_api_key")


async def test_faults_are_per_provider(sim: Sim) -> None:
    """A fault set for one provider leaves the others healthy."""
    await sim.faults("resend", outage=True)
    assert (await send(sim, "mailgun")).status_code == 200


async def test_latency_delays_the_answer_after_the_work(autojump_clock: Any) -> None:
    """latency_ms delays each answer by that much, and the work is done before the wait."""
    state = SimulatorState()
    handle = make_handler(state)
    state.endpoints["slack-webhook"].slot.faults = Faults(latency_ms=2500)
    request = HttpRequest(
        "POST",
        "/slack-webhook/services/T/B/X",
        "/slack-webhook/services/T/B/X",
        "",
        {},
        b'{"text":"x"}',
    )
    stats = state.endpoints["slack-webhook"].slot.stats
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle, request)
        await trio.sleep(1)
        assert stats.accepted == 1  # counted while the answer is still delayed
    assert trio.current_time() == pytest.approx(2.5)


async def test_fault_rates_are_seeded_and_proportional() -> None:
    """error_rate 0.3 fails about 30% of requests, identically for the same seed."""

    async def failures(seed: int) -> list[int]:
        state = SimulatorState(seed=seed)
        state.endpoints["slack-webhook"].slot.faults = Faults(error_rate=0.3)
        handle = make_handler(state)
        path = "/slack-webhook/services/T/B/X"
        request = HttpRequest("POST", path, path, "", {}, b'{"text":"x"}')
        return [i for i in range(1000) if (await handle(request)).status == 500]

    first, again, other = await failures(1), await failures(1), await failures(2)
    assert first == again != other
    assert 250 < len(first) < 350


# --- The /_sim API ----------------------------------------------------------


async def test_stats_start_at_zero_for_every_provider(sim: Sim) -> None:
    """Every provider kind, SMTP included, is listed with zero counters."""
    stats = (await sim.client.get("/_sim/stats")).json()
    zero = {"requests": 0, "accepted": 0, "unique_keys": 0, "duplicates": 0, "status_counts": {}}
    assert stats == {name: {**zero, **NO_EVENTS} for name in [*PROVIDERS, "smtp"]}


async def test_stats_count_requests_keys_and_duplicates(sim: Sim) -> None:
    """Requests, accepted sends, distinct keys, repeats and statuses are all counted."""
    for key in ["a", "b", "a", "c", "a"]:
        await send(sim, "resend", headers={**AUTH, "Idempotency-Key": key})
    await send(sim, "resend", headers={})
    await send(sim, "resend")
    assert await sim.stats("resend") == {
        "requests": 7,
        "accepted": 6,
        "unique_keys": 3,
        "duplicates": 2,
        "status_counts": {"200": 6, "401": 1},
        **NO_EVENTS,
    }


async def test_fault_api_shows_sets_and_clears(sim: Sim) -> None:
    """POST replaces a provider's faults, GET shows them, DELETE clears one or all."""
    await sim.faults("resend", error_rate=0.25, latency_ms=3)
    await sim.faults("resend", hang_rate=0.5)  # replaces, does not merge
    await sim.faults("smtp", outage=True)
    shown = (await sim.client.get("/_sim/faults")).json()
    assert shown["resend"] == {**attrs.asdict(Faults()), "hang_rate": 0.5}
    assert shown["smtp"]["outage"] is True
    await sim.client.delete("/_sim/faults", params={"provider": "smtp"})
    assert (await sim.client.get("/_sim/faults")).json()["smtp"]["outage"] is False
    await sim.client.delete("/_sim/faults")
    assert all(
        f == attrs.asdict(Faults()) for f in (await sim.client.get("/_sim/faults")).json().values()
    )


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"provider": "sendgrid"}, "'sendgrid'"),
        ({"error_rate": 0.5}, "provider"),
        ({"provider": "resend", "eror_rate": 0.5}, "eror_rate"),
        ({"provider": "resend", "error_rate": "high"}, "error_rate"),
        ({"provider": "resend", "error_rate": 1.5}, "error_rate"),
        ({"provider": "resend", "outage": "yes"}, "outage"),
        ({"provider": "resend", "retry_after": 1.5}, "retry_after"),
        ({"provider": "resend", "latency_ms": -1}, "latency_ms"),
        ({"provider": "resend", "outage": True, "count": 0}, "count"),
        ({"provider": "resend", "error_rate": 0.6, "reset_rate": 0.6}, "add up to more than 1"),
        ([1], "JSON object"),
    ],
)
async def test_fault_api_rejects_bad_requests_naming_the_problem(
    sim: Sim, body: Any, named: str
) -> None:
    """Unknown providers, unknown fields and bad values get a 400 naming them."""
    response = await sim.client.post("/_sim/faults", json=body)
    assert response.status_code == 400
    assert named in response.json()["error"]


async def test_a_provider_is_known_by_its_kind_too(sim: Sim) -> None:
    """Paths, faults, stats and waits take the kind as the config spells it: one provider."""
    by_kind = await sim.client.post(
        **{**VALID["slack-webhook"], "url": SLACK_URL.replace("-", "_")}
    )
    assert by_kind.status_code == 200
    fault = await sim.client.post("/_sim/faults", json={"provider": "twilio_sms", "outage": True})
    assert (fault.status_code, fault.json()["twilio_sms"]["outage"]) == (200, True)
    assert (await send(sim, "twilio-sms")).status_code == 503
    stats = (await sim.client.get("/_sim/stats", params={"provider": "slack_webhook"})).json()
    assert stats["slack_webhook"]["accepted"] == 1  # keyed as asked
    assert (await sim.stats("slack-webhook"))["accepted"] == 1  # the same provider
    waited = await sim.client.get(
        "/_sim/wait", params={"provider": "slack_webhook", "accepted": 1, "timeout": 1}
    )
    assert waited.status_code == 200
    await sim.client.delete("/_sim/faults", params={"provider": "twilio_sms"})
    assert (await send(sim, "twilio-sms")).status_code == 201


async def test_faults_with_a_count_last_that_many_requests(sim: Sim) -> None:
    """A count of 2: two requests meet the outage, the faults show what is left, then healthy."""
    await sim.faults("resend", outage=True, count=2)
    assert (await send(sim, "resend")).status_code == 503
    shown = (await sim.client.get("/_sim/faults", params={"provider": "resend"})).json()
    assert (shown["resend"]["outage"], shown["resend"]["count"]) == (True, 1)
    assert (await send(sim, "resend")).status_code == 503
    assert sim.state.endpoints["resend"].slot.faults == Faults()
    assert [(await send(sim, "resend")).status_code for _ in range(2)] == [200, 200]


async def test_a_counted_rate_limit_still_answers_with_its_retry_after(sim: Sim) -> None:
    """The last counted request is answered with the faults it met, not the healed ones."""
    await sim.faults("resend", storm=True, retry_after=7, count=1)
    limited = await send(sim, "resend")
    assert (limited.status_code, limited.headers.get("retry-after")) == (429, "7")
    assert (await send(sim, "resend")).status_code == 200


@pytest.mark.parametrize("service", ["HTTP", "SMTP"])
async def test_a_busy_address_is_one_oserror_naming_it(nursery: trio.Nursery, service: str) -> None:
    """The simulator cannot listen: one OSError (no exception group) naming the address."""
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = (port, 0) if service == "HTTP" else (0, port)
        with pytest.raises(OSError) as raised:
            await nursery.start(serve_simulator, SimulatorState(), HOST, *ports)
    assert raised.value.strerror is not None
    assert raised.value.strerror.startswith(f"{HOST}:{port} ({service}): ")


async def test_fault_api_rejects_non_json_and_unknown_providers_in_queries(sim: Sim) -> None:
    """A body that is not JSON, or ?provider naming no provider, is a 400."""
    not_json = await sim.client.post("/_sim/faults", content=b"{")
    assert not_json.status_code == 400
    unknown = await sim.client.get("/_sim/stats", params={"provider": "nope"})
    assert (unknown.status_code, "'nope'" in unknown.json()["error"]) == (400, True)


async def test_reset_clears_stats_dedup_tables_and_faults(sim: Sim) -> None:
    """POST /_sim/reset forgets counters, idempotency keys, alerts and faults."""
    headers = {**AUTH, "Idempotency-Key": "k"}
    await send(sim, "resend", headers=headers)
    await send(sim, "pagerduty")
    await sim.faults("mailgun", outage=True)
    assert (await sim.client.post("/_sim/reset")).status_code == 200
    assert (await sim.stats("resend"))["requests"] == 0
    assert (await send(sim, "mailgun")).status_code == 200
    # The key is forgotten: another body under it is a fresh send, not a 409.
    other = {**EMAIL, "subject": "Another"}
    assert (await send(sim, "resend", headers=headers, json=other)).status_code == 200
    pagerduty = sim.state.endpoints["pagerduty"].logic
    assert isinstance(pagerduty, PagerDuty)
    assert pagerduty.alerts == {}


async def test_unknown_routes(sim: Sim) -> None:
    """Unknown providers and /_sim routes are 404; wrong methods on /_sim routes 405."""
    unknown = await sim.client.post("/sendgrid/v3/mail/send")
    assert (unknown.status_code, "resend" in unknown.json()["providers"]) == (404, True)
    assert (await sim.client.get("/_sim/nothing")).status_code == 404
    assert (await sim.client.get("/_sim/reset")).status_code == 405


async def test_requests_log_keeps_the_last_requests_without_credentials(sim: Sim) -> None:
    """/_sim/requests shows what each provider received, with the credential reduced to its form."""
    await send(sim, "mailgun")
    await send(sim, "resend", headers={**AUTH, "Idempotency-Key": "k-1"})
    for _ in range(60):
        await send(sim, "slack-webhook")
    seen = (await sim.client.get("/_sim/requests")).json()
    (mailgun,) = seen["mailgun"]
    assert (mailgun["method"], mailgun["path"], mailgun["auth"]) == (
        "POST",
        "/v3/mg.example.com/messages",
        "Basic api",
    )
    assert mailgun["content_type"] == "application/x-www-form-urlencoded"
    assert "subject=Hi" in mailgun["body"] and "key-test" not in str(seen)
    (resend,) = seen["resend"]
    assert (resend["auth"], resend["headers"]["idempotency-key"]) == ("Bearer", "k-1")
    assert "re_test" not in str(seen) and "authorization" not in resend["headers"]
    assert len(seen["slack-webhook"]) == 50  # bounded: the oldest are dropped
    await sim.client.post("/_sim/reset")
    assert (await sim.client.get("/_sim/requests", params={"provider": "resend"})).json() == {
        "resend": []
    }
