"""Resend, Mailgun, the Slack incoming webhook and PagerDuty against the simulator.

Each provider: a success, each documented retryable and permanent answer as
the simulator gives it (through its fault controls or its own refusals), its
rate-limit signal honoured, and its idempotency or dedup where it has one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import attrs
import pytest

from ringbearer._delivery import Delivered, Outcome, Permanent, Retry, Taken
from ringbearer._secrets import SecretRef
from ringbearer.integrations import (
    AdapterContext,
    MailgunSettings,
    PagerDutySettings,
    ResendSettings,
    SlackWebhookSettings,
    provider_kinds,
)
from ringbearer.integrations.alerts import PAGERDUTY_RATE_LIMIT_WAIT
from ringbearer.simulator._pagerduty import AlertStatus

from .kit import Sim, context, deliver_one, envelope, permanent, retry
from .kit import sim_fixture as sim_fixture

KEYS = {
    "RESEND": "re_sim_5ecret",
    "MAILGUN": "key-sim-5ecret",
    "SLACK": "https://hooks.slack.com/services/T1/B1/5ecret",  # the sandbox stands in for it
    "PD": "e93facc04764012d7bfb002500d5d1a6",
    "BAD": "invalid",  # the key every simulated provider refuses
}
SETTINGS: dict[str, Any] = {
    "resend": ResendSettings(api_key=SecretRef(env="RESEND")),
    "mailgun": MailgunSettings(api_key=SecretRef(env="MAILGUN"), domain="mg.example.com"),
    "slack_webhook": SlackWebhookSettings(url=SecretRef(env="SLACK")),
    "pagerduty": PagerDutySettings(routing_key=SecretRef(env="PD")),
}
EMAIL = {
    "from": "Studio <hello@studio.example>",
    "to": ["ann@example.com"],
    "subject": "Your gallery is ready",
    "text": "Hello!",
}
PAYLOADS: dict[str, Mapping[str, Any]] = {
    "resend": EMAIL,
    "mailgun": EMAIL,
    "slack_webhook": {"text": "resend is failing over"},
    "pagerduty": {"summary": "email group failing over", "severity": "critical"},
}
Expect = Callable[[Outcome], bool]


@pytest.fixture
def sim_seed() -> int:
    return 5


async def deliver_to(
    sim: Sim,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    *,
    settings: Any = None,
    ctx: AdapterContext | None = None,
    **fields: Any,
) -> Outcome:
    """One message of the kind, delivered to the simulator (in sandbox mode unless ``ctx``)."""
    adapter = provider_kinds()[kind].build(
        settings or SETTINGS[kind], ctx or sim.context(kind, KEYS)
    )
    return await deliver_one(
        adapter, envelope(PAYLOADS[kind] if payload is None else payload, **fields)
    )


def bad_key(kind: str) -> Any:
    """The kind's settings with the credential the simulator refuses."""
    field = {"resend": "api_key", "mailgun": "api_key", "pagerduty": "routing_key"}[kind]
    return attrs.evolve(SETTINGS[kind], **{field: SecretRef(env="BAD")})


def status_is(status: int, expect: Expect) -> Expect:
    """``expect``, and the outcome carries the HTTP status the simulator answered."""
    return lambda o: expect(o) and isinstance(o, Retry | Permanent) and o.status == status


# --- success ---------------------------------------------------------------------------


async def test_resend_sends_and_names_its_id(sim: Sim) -> None:
    """An email is delivered with Resend's id, sent to /emails with a bearer key and its key."""
    outcome = await deliver_to(sim, "resend")
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"[0-9a-f-]{36}", outcome.provider_id)
    [seen] = await sim.requests("resend")
    assert (seen["method"], seen["path"], seen["auth"]) == ("POST", "/emails", "Bearer")
    assert seen["headers"]["idempotency-key"] == "msg-0001"


async def test_mailgun_queues_and_names_its_message_id(sim: Sim) -> None:
    """An email is delivered with Mailgun's <…@domain> id, posted as a form under Basic api."""
    outcome = await deliver_to(sim, "mailgun")
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"<[0-9a-f.]+@mg\.example\.com>", outcome.provider_id)
    [seen] = await sim.requests("mailgun")
    assert (seen["path"], seen["auth"]) == ("/v3/mg.example.com/messages", "Basic api")
    assert seen["content_type"] == "application/x-www-form-urlencoded"


async def test_slack_webhook_posts(sim: Sim) -> None:
    """A post to the sandbox's stand-in webhook is answered 'ok': delivered, with no id."""
    assert await deliver_to(sim, "slack_webhook") == Delivered()
    [seen] = await sim.requests("slack_webhook")
    assert seen["path"] == "/services/TSANDBOX/BSANDBOX/sandbox"
    assert json.loads(seen["body"]) == PAYLOADS["slack_webhook"]


async def test_pagerduty_triggers_under_the_idempotency_key(sim: Sim) -> None:
    """A trigger is accepted (202) and delivered under its dedup_key, the message's key."""
    assert await deliver_to(sim, "pagerduty") == Delivered(provider_id="msg-0001")
    assert sim.logic("pagerduty").alerts == {(KEYS["PD"], "msg-0001"): AlertStatus.TRIGGERED}


# --- retryable answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fault", "expect"),
    [
        # 500 application_error: "try again later", and the key dedups a resend.
        ("resend", {"error_rate": 1.0}, status_is(500, retry(Taken.MAYBE))),
        ("resend", {"outage": True}, status_is(503, retry(Taken.NO))),
        ("mailgun", {"error_rate": 1.0}, status_is(500, retry(Taken.MAYBE))),
        ("mailgun", {"outage": True}, status_is(503, retry(Taken.NO))),
        # 500 rollup_error, both for an error and for an outage.
        ("slack_webhook", {"error_rate": 1.0}, status_is(500, retry(Taken.MAYBE))),
        ("slack_webhook", {"outage": True}, status_is(500, retry(Taken.MAYBE))),
        ("pagerduty", {"error_rate": 1.0}, status_is(500, retry(Taken.MAYBE))),
        ("pagerduty", {"outage": True}, status_is(503, retry(Taken.NO))),
    ],
)
async def test_server_errors_are_retried(
    sim: Sim, kind: str, fault: dict[str, Any], expect: Expect
) -> None:
    """Each provider's own 5xx is a retry; a 503 was refused, a 500 may have been taken."""
    await sim.faults(kind, **fault)
    outcome = await deliver_to(sim, kind)
    assert expect(outcome), outcome


@pytest.mark.parametrize(
    ("kind", "retry_after", "after"),
    [
        ("resend", 7, 7.0),  # retry-after and ratelimit-reset
        ("mailgun", 9, 9.0),  # Retry-After
        ("slack_webhook", 4, 4.0),  # Retry-After
        ("pagerduty", 4, PAGERDUTY_RATE_LIMIT_WAIT),  # no header: PagerDuty's own 30 s
    ],
)
async def test_rate_limit_waits_as_the_provider_asks(
    sim: Sim, kind: str, retry_after: int, after: float
) -> None:
    """A 429 is a retry, not taken, after exactly the wait the provider asked for."""
    await sim.faults(kind, storm=True, retry_after=retry_after)
    outcome = await deliver_to(sim, kind)
    assert status_is(429, retry(Taken.NO, after=after))(outcome), outcome


# --- permanent answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("resend", permanent("HTTP 403: validation_error: You can only send testing", 403)),
        ("mailgun", permanent("HTTP 400: to parameter is not a valid address", 400)),
        ("slack_webhook", permanent("HTTP 400: invalid_payload", 400)),
        ("pagerduty", permanent("HTTP 400: Event object is invalid: Invalid routing key", 400)),
    ],
)
async def test_permanent_faults(sim: Sim, kind: str, expect: Expect) -> None:
    """Each provider's own validation refusal is permanent, in its own words."""
    await sim.faults(kind, permanent_rate=1.0)
    outcome = await deliver_to(sim, kind)
    assert expect(outcome), outcome


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        # The refused key is "invalid", so the provider's words show it scrubbed.
        ("resend", permanent("HTTP 403: ***_api_key: API key is ***", 403)),
        ("mailgun", permanent("HTTP 401: Forbidden", 401)),
        ("pagerduty", permanent("HTTP 400: Event object is ***: Invalid routing key", 400)),
    ],
)
async def test_refused_credentials_are_permanent(sim: Sim, kind: str, expect: Expect) -> None:
    """A key the provider refuses is permanent, and the reason never shows the key."""
    outcome = await deliver_to(sim, kind, settings=bad_key(kind))
    assert expect(outcome), outcome


async def test_resend_refuses_an_address_it_cannot_send_to(sim: Sim) -> None:
    """An address Resend cannot parse is a 422 validation_error: permanent."""
    outcome = await deliver_to(sim, "resend", {**EMAIL, "to": "@example.com"})
    assert permanent("HTTP 422: validation_error: Invalid `to` field", 422)(outcome), outcome


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        ("/services/T1/B1/invalid", permanent("HTTP 403: invalid_token", 403)),
        ("/services/T1/missing", permanent("HTTP 404: no_service", 404)),
    ],
)
async def test_slack_webhook_refusals_are_permanent(sim: Sim, path: str, expect: Expect) -> None:
    """A revoked or unknown webhook URL (the URL is the secret) is permanent."""
    ctx = context({**KEYS, "SLACK": sim.prefix("slack_webhook") + path})
    outcome = await deliver_to(sim, "slack_webhook", ctx=ctx)
    assert expect(outcome), outcome


# --- idempotency and dedup ------------------------------------------------------------


async def test_resend_replay_of_a_key_gives_the_same_id(sim: Sim) -> None:
    """A retry under the same Idempotency-Key and payload gets the first id; nothing is re-sent."""
    first = await deliver_to(sim, "resend")
    again = await deliver_to(sim, "resend", attempts=1)
    assert isinstance(first, Delivered) and again == first
    assert list(sim.logic("resend").sent) == ["msg-0001"]
    stats = await sim.stats("resend")
    assert (stats["requests"], stats["unique_keys"]) == (2, 1)


async def test_resend_same_key_other_payload_is_permanent(sim: Sim) -> None:
    """A key reused with a different payload is 409 invalid_idempotent_request: permanent."""
    assert isinstance(await deliver_to(sim, "resend"), Delivered)
    outcome = await deliver_to(sim, "resend", {**EMAIL, "subject": "Another"}, attempts=1)
    assert permanent("HTTP 409: invalid_idempotent_request", 409)(outcome), outcome


async def test_pagerduty_retry_joins_the_open_alert(sim: Sim) -> None:
    """A retried trigger carries the same dedup_key: one alert, opened once; resolve closes it."""
    first = await deliver_to(sim, "pagerduty")
    again = await deliver_to(sim, "pagerduty", attempts=1)
    assert first == again == Delivered(provider_id="msg-0001")
    logic = sim.logic("pagerduty")
    assert logic.opened == 1
    resolve = {"event_action": "resolve", "dedup_key": "msg-0001"}
    assert await deliver_to(sim, "pagerduty", resolve, key="msg-0002") == Delivered("msg-0001")
    assert logic.alerts == {(KEYS["PD"], "msg-0001"): AlertStatus.RESOLVED}


async def test_mailgun_retry_carries_the_same_key_variable(sim: Sim) -> None:
    """Mailgun does not dedup: a retry is queued again, under the same v:ringbearer-key."""
    first = await deliver_to(sim, "mailgun")
    again = await deliver_to(sim, "mailgun", attempts=1)
    assert isinstance(first, Delivered) and isinstance(again, Delivered) and first != again
    keys = [parse_qs(seen["body"])["v:ringbearer-key"] for seen in await sim.requests("mailgun")]
    assert keys == [["msg-0001"], ["msg-0001"]]
    stats = await sim.stats("mailgun")
    assert (stats["accepted"], stats["duplicates"]) == (2, 1)
