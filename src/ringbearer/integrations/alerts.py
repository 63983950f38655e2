"""The alerts family: Slack (incoming webhook, chat.postMessage), PagerDuty, Twilio.

Payloads, one per kind::

    slack_webhook  {"text": str (<= 40000), "blocks"?: [{...}]}
    slack_chat     {"text": str (<= 40000), "blocks"?: [{...}],
                    "channel"?: str (else the integration's default),
                    "thread_ts"?: str ("1503435956.000247": reply in that thread)}
    pagerduty      {"summary": str, "severity"?, "source"?, "event_action"?,
                    "dedup_key"?, "component"?, "group"?, "class"?, "custom_details"?}
    twilio_sms     see :mod:`._twilio`
    twilio_call    see :mod:`._twilio`

Neither Slack API has an idempotency key: a post whose answer was lost
(``Taken.MAYBE``) may show twice when retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from .._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from . import _twilio
from ._base import (
    CONNECT_TO_BASE_URL,
    AdapterContext,
    Connect,
    Finding,
    HttpCall,
    ProviderKind,
    ReadOnly,
    Verdict,
    bearer,
    choice,
    classify_status,
    delivered_on_success,
    detail,
    fields,
    http_kind,
    json_object,
    malformed,
    optional_list,
    optional_mapping,
    optional_str,
    refused,
    required_str,
    retry_after,
    secret_url,
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
        return cls(secret_url(ctx, settings.url, SLACK_SANDBOX_PATH))

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
    return _slack_message(fields(raw, {"text", "blocks"}))


def _slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The ``text`` and ``blocks`` both Slack APIs share."""
    body: dict[str, Any] = {"text": required_str(payload, "text", max_len=40_000)}
    blocks = optional_list(payload, "blocks")
    if blocks is not None:
        if not all(isinstance(block, dict) for block in blocks):
            raise InvalidPayload("'blocks' must be a list of objects")
        body["blocks"] = blocks
    return body


# --- Slack chat.postMessage --------------------------------------------------

_THREAD_TS = re.compile(r"\d+\.\d+")
_CHAT_FIELDS = frozenset({"text", "blocks", "channel", "thread_ts"})
# The Web API answers HTTP 200 with ``{"ok": false, "error": word}``. The words
# below are the documented ones whose meaning is not "fix the request":
_RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
# Refused credentials: retrying cannot help, but the integration is unhealthy,
# which the actor reads from a 401 or 403 status (see ``_actor._health_ok``).
# So these carry the status HTTP would have used; the reason keeps the real one.
_AUTH_STATUS = {
    "not_authed": 401,
    "invalid_auth": 401,
    "account_inactive": 401,
    "token_revoked": 401,
    "token_expired": 401,
    "missing_scope": 403,
    "not_allowed_token_type": 403,
    "no_permission": 403,
    "access_denied": 403,
    "ekm_access_denied": 403,
    "team_access_not_granted": 403,
}
# "The service is temporarily unavailable" and "the POST data was missing or
# truncated": the message was not posted.
_NOT_TAKEN = frozenset({"service_unavailable", "request_timeout"})
# "It's possible some aspect of the operation succeeded before the error was
# raised": a retry may post twice.
_MAYBE_TAKEN = frozenset({"internal_error", "fatal_error"})


@attrs.frozen
class SlackChatSettings:
    token: SecretRef  # a bot token, xoxb-...
    channel: str | None = None  # where a message that names no channel goes
    base_url: str = "https://slack.com/api"


def _slack_api(settings: SlackChatSettings, ctx: AdapterContext) -> str:
    # The simulator serves the real path, /api/chat.postMessage, under its
    # prefix; the setting is the API root, /api included, as Slack's SDKs take it.
    api = ctx.base_url("") + "/api" if ctx.base_url_override else settings.base_url
    return api.rstrip("/")


@attrs.frozen
class SlackChat:
    """``POST {api}/chat.postMessage`` with a bearer token; errors are words in a 200."""

    token: Secret
    url: str
    channel: str | None

    @classmethod
    def from_settings(cls, settings: SlackChatSettings, ctx: AdapterContext) -> SlackChat:
        url = f"{_slack_api(settings, ctx)}/chat.postMessage"
        return cls(ctx.secrets(settings.token), url, settings.channel)

    def validate(self, payload: Mapping[str, Any]) -> None:
        self._body(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        headers = {
            "Authorization": bearer(self.token),
            # Without the charset Slack answers with a ``missing_charset`` warning.
            "Content-Type": "application/json; charset=utf-8",
        }
        return HttpCall("POST", self.url, headers=headers, json=self._body(envelope.payload))

    def _body(self, raw: object) -> dict[str, Any]:
        payload = fields(raw, _CHAT_FIELDS)
        channel = optional_str(payload, "channel", max_len=200, one_line=True) or self.channel
        if channel is None:
            raise InvalidPayload("'channel' is required: the integration names no default channel")
        body = {"channel": channel, **_slack_message(payload)}
        thread_ts = optional_str(payload, "thread_ts")
        if thread_ts is not None:
            if not _THREAD_TS.fullmatch(thread_ts):
                raise InvalidPayload(
                    f"'thread_ts' must look like 1503435956.000247, got {thread_ts!r}"
                )
            body["thread_ts"] = thread_ts
        return body

    def classify(self, response: httpx.Response) -> Outcome:
        words = detail(response, "error", "needed")
        if response.status_code == 429:
            return _slack_rate_limited(response, words)
        if not response.is_success:
            return classify_status(response, words)
        body = json_object(response)
        if body is None or not isinstance(body.get("ok"), bool):
            return malformed(response, "a JSON object with a boolean 'ok'")
        if body["ok"]:
            return _slack_posted(response, body)
        error = body.get("error")
        return _slack_refused(response, error if isinstance(error, str) else "", words)


def _slack_rate_limited(response: httpx.Response, words: str) -> Retry:
    reason = status_reason(response, words)
    after = retry_after(response.headers)
    return Retry(reason, taken=Taken.NO, after=after, status=response.status_code)


def _slack_posted(response: httpx.Response, body: Mapping[str, Any]) -> Outcome:
    # A ts is unique only within its channel, and chat.update and chat.delete
    # take both: the id is the pair. ``channel`` is the id even when the
    # message named the channel as #name.
    channel, ts = body.get("channel"), body.get("ts")
    if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
        return malformed(response, "a JSON object with a string 'channel' and 'ts'")
    return Delivered(provider_id=f"{channel}/{ts}")


def _slack_refused(response: httpx.Response, error: str, words: str) -> Outcome:
    reason = status_reason(response, words)
    status = response.status_code
    if error in _RATE_LIMITED:
        return _slack_rate_limited(response, words)
    if error in _AUTH_STATUS:
        return Permanent(reason, status=_AUTH_STATUS[error])
    after = retry_after(response.headers)
    if error in _NOT_TAKEN:
        return Retry(reason, taken=Taken.NO, after=after, status=status)
    if error in _MAYBE_TAKEN:
        return Retry(reason, taken=Taken.MAYBE, after=after, status=status)
    # channel_not_found, not_in_channel, is_archived, msg_too_long, no_text,
    # invalid_blocks and every other word: the request must change first.
    return Permanent(reason, status=status)


# --- PagerDuty Events API v2 -------------------------------------------------

SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
# PagerDuty's rate-limit guidance: retry a 429 about 30 s apart.
PAGERDUTY_RATE_LIMIT_WAIT = 30.0
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
            return delivered_on_success(response, "dedup_key")
        status = response.status_code
        if status == 400:
            words = detail(response, "message", "errors")
            return Permanent(status_reason(response, words), status=400)
        # A 429 was not ingested. The Events API sends no wait, and the
        # policy's seconds of backoff would only spend attempts.
        words = detail(response, "message")
        return classify_status(response, words, wait_429=PAGERDUTY_RATE_LIMIT_WAIT)


# --- preflight ---------------------------------------------------------------------


def _webhook_url(settings: SlackWebhookSettings, ctx: AdapterContext) -> str:
    """The adapter's own webhook URL: a webhook has no read-only call."""
    return SlackWebhook.from_settings(settings, ctx).url.reveal()


def _slack_auth_test(settings: SlackChatSettings, ctx: AdapterContext) -> HttpCall:
    """``POST auth.test``, with the adapter's own token and API root."""
    token = SlackChat.from_settings(settings, ctx).token
    headers = {"Authorization": bearer(token)}
    return HttpCall("POST", f"{_slack_api(settings, ctx)}/auth.test", headers=headers)


_SLACK_AUTH_WORDS = frozenset(
    {"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired"}
)


def _read_slack(settings: SlackChatSettings, response: httpx.Response) -> Finding:
    if not response.is_success:
        return refused(response, detail(response, "error"))
    body = json_object(response)
    if body is None or not isinstance(body.get("ok"), bool):
        return Finding(Verdict.FAIL, "malformed answer: expected a JSON object with 'ok'")
    if not body["ok"]:
        error = str(body.get("error") or "no error word")
        words = "credentials refused" if error in _SLACK_AUTH_WORDS else "refused"
        return Finding(Verdict.FAIL, f"{words}: {error}")
    who = f"token accepted: {body.get('user', '?')} in {body.get('team', '?')}"
    # Slack lists a token's scopes in this header; posting needs chat:write.
    scopes = response.headers.get("x-oauth-scopes")
    if scopes is not None and "chat:write" not in {s.strip() for s in scopes.split(",")}:
        return Finding(Verdict.WARN, f"{who}, but it lacks the chat:write scope")
    return Finding(Verdict.PASS, who)


KINDS: tuple[ProviderKind, ...] = (
    http_kind(
        "slack_webhook",
        "alerts",
        SlackWebhookSettings,
        SlackWebhook.from_settings,
        probe=Connect(_webhook_url),
    ),
    http_kind(
        "slack_chat",
        "alerts",
        SlackChatSettings,
        SlackChat.from_settings,
        probe=ReadOnly(_slack_auth_test, _read_slack),
    ),
    http_kind(
        "pagerduty",
        "alerts",
        PagerDutySettings,
        PagerDuty.from_settings,
        probe=CONNECT_TO_BASE_URL,
    ),
    *_twilio.KINDS,
)
