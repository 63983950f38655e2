"""The alerts family: a Slack incoming webhook and PagerDuty Events API v2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from .._delivery import Delivered, Envelope, Outcome, Permanent
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from ._base import (
    AdapterContext,
    HttpCall,
    ProviderKind,
    choice,
    classify_status,
    detail,
    fields,
    http_kind,
    json_object,
    malformed,
    optional_list,
    optional_mapping,
    optional_str,
    required_str,
    status_reason,
)

# --- Slack incoming webhook --------------------------------------------------

# The simulator's stand-in for the secret webhook path.
SLACK_SANDBOX_PATH = "/services/TSANDBOX/BSANDBOX/sandbox"


@attrs.frozen
class SlackWebhookSettings:
    url: SecretRef  # the webhook URL is the secret


@attrs.frozen
class SlackWebhook:
    """``POST`` JSON to the webhook URL; success is a 200 whose body is ``ok``."""

    url: Secret

    @classmethod
    def from_settings(cls, settings: SlackWebhookSettings, ctx: AdapterContext) -> SlackWebhook:
        if ctx.base_url_override is not None:
            return cls(Secret(ctx.base_url("") + SLACK_SANDBOX_PATH))
        return cls(ctx.secrets(settings.url))

    def validate(self, payload: Mapping[str, Any]) -> None:
        _slack_body(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        return HttpCall("POST", self.url.reveal(), json=_slack_body(envelope.payload))

    def classify(self, response: httpx.Response) -> Outcome:
        # Errors are plain-text strings (invalid_payload, no_service, rollup_error...)
        # and their status codes follow the default table.
        if not response.is_success:
            return classify_status(response, detail(response))
        if response.text.strip() != "ok":
            return malformed(response, "the body 'ok'")
        return Delivered()


def _slack_body(raw: object) -> dict[str, Any]:
    payload = fields(raw, {"text", "blocks"})
    body: dict[str, Any] = {"text": required_str(payload, "text", max_len=40_000)}
    blocks = optional_list(payload, "blocks")
    if blocks is not None:
        if not all(isinstance(block, dict) for block in blocks):
            raise InvalidPayload("'blocks' must be a list of objects")
        body["blocks"] = blocks
    return body


# --- PagerDuty Events API v2 -------------------------------------------------

SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
_PD_FIELDS = frozenset(
    {
        "summary",
        "severity",
        "source",
        "event_action",
        "dedup_key",
        "component",
        "group",
        "class",
        "custom_details",
    }
)


@attrs.frozen
class PagerDutySettings:
    routing_key: SecretRef
    base_url: str = "https://events.pagerduty.com"
    source: str = "ringbearer"  # payload.source when a message does not name one


@attrs.frozen
class PagerDutyEvent:
    """A checked alert payload; ``dedup_key`` None means "use the idempotency key"."""

    event_action: str
    dedup_key: str | None
    details: Mapping[str, Any]  # PagerDuty's ``payload`` object; empty unless triggering

    @classmethod
    def parse(cls, raw: object, default_source: str) -> PagerDutyEvent:
        payload = fields(raw, _PD_FIELDS)
        action = choice(payload, "event_action", EVENT_ACTIONS, "trigger")
        dedup_key = optional_str(payload, "dedup_key", max_len=255)
        if action != "trigger":
            if dedup_key is None:
                raise InvalidPayload(f"'dedup_key' is required to {action} an alert")
            return cls(action, dedup_key, {})
        return cls(action, dedup_key, _pd_details(payload, default_source))


def _pd_details(payload: Mapping[str, Any], default_source: str) -> dict[str, Any]:
    details: dict[str, Any] = {
        "summary": required_str(payload, "summary", max_len=1024),
        "severity": choice(payload, "severity", SEVERITIES, "error"),
        "source": optional_str(payload, "source") or default_source,
    }
    for key in ("component", "group", "class"):
        value = optional_str(payload, key)
        if value is not None:
            details[key] = value
    custom = optional_mapping(payload, "custom_details")
    if custom is not None:
        details["custom_details"] = custom
    return details


@attrs.frozen
class PagerDuty:
    """``POST /v2/enqueue`` with the routing key in the body and a stable ``dedup_key``."""

    routing_key: Secret
    url: str
    source: str

    @classmethod
    def from_settings(cls, settings: PagerDutySettings, ctx: AdapterContext) -> PagerDuty:
        url = f"{ctx.base_url(settings.base_url)}/v2/enqueue"
        return cls(ctx.secrets(settings.routing_key), url, settings.source)

    def validate(self, payload: Mapping[str, Any]) -> None:
        PagerDutyEvent.parse(payload, self.source)

    def build(self, envelope: Envelope) -> HttpCall:
        event = PagerDutyEvent.parse(envelope.payload, self.source)
        body: dict[str, Any] = {
            "routing_key": self.routing_key.reveal(),
            "event_action": event.event_action,
            # A trigger without a dedup key opens a new alert on every retry.
            "dedup_key": event.dedup_key or envelope.idempotency_key,
        }
        if event.details:
            body["payload"] = dict(event.details)
        return HttpCall("POST", self.url, json=body)

    def classify(self, response: httpx.Response) -> Outcome:
        if response.is_success:
            return _pd_delivered(response)
        if response.status_code == 400:
            words = detail(response, "message", "errors")
            return Permanent(status_reason(response, words), status=400)
        # 429 carries no headers: retry (not taken) on the policy's own backoff.
        return classify_status(response, detail(response, "message"))


def _pd_delivered(response: httpx.Response) -> Outcome:
    body = json_object(response) or {}
    dedup_key = body.get("dedup_key")
    if body.get("status") != "success" or not isinstance(dedup_key, str) or not dedup_key:
        return malformed(response, "a JSON object with status 'success' and a 'dedup_key'")
    return Delivered(provider_id=dedup_key)


KINDS: tuple[ProviderKind, ...] = (
    http_kind("slack_webhook", "alerts", SlackWebhookSettings, SlackWebhook.from_settings),
    http_kind("pagerduty", "alerts", PagerDutySettings, PagerDuty.from_settings),
)
