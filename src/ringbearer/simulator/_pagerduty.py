"""PagerDuty Events API v2: ``POST /v2/enqueue``, routing key in the body, dedup by key."""

from __future__ import annotations

import enum
import random
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._ids import new_uuid
from ._provider import FaultReplies, Outcome, ProviderSpec

_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_MAX_DEDUP_KEY = 255
_MAX_SUMMARY = 1024


class EventAction(enum.Enum):
    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class AlertStatus(enum.Enum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def _invalid(errors: list[str]) -> HttpResponse:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return HttpResponse.json(400, body)


def _rate_limited(_retry_after: int) -> HttpResponse:
    # PagerDuty sends no Retry-After or rate-limit headers on the Events API.
    body = {
        "status": "throttle exceeded",
        "message": "Requests for this service are arriving too quickly.",
    }
    return HttpResponse.json(429, body)


_UNPARSEABLE = HttpResponse.json(
    400,
    {
        "status": "Unrecognized object",
        "message": "Event object format is unrecognized",
        "errors": ["JSON parse error"],
    },
)

REPLIES = FaultReplies(
    error=HttpResponse.text(500, "Internal Server Error"),
    permanent=_invalid(["Invalid routing key"]),
    outage=HttpResponse.text(503, "Service Unavailable"),
    rate_limited=_rate_limited,
)


def next_status(current: AlertStatus | None, action: EventAction) -> AlertStatus | None:
    """An alert's status after ``action``; events for no open alert change nothing."""
    is_open = current in (AlertStatus.TRIGGERED, AlertStatus.ACKNOWLEDGED)
    match action:
        case EventAction.TRIGGER:
            # A trigger joins the open alert; after a resolve it opens a new one.
            return current if is_open else AlertStatus.TRIGGERED
        case EventAction.ACKNOWLEDGE:
            return AlertStatus.ACKNOWLEDGED if is_open else current
        case EventAction.RESOLVE:
            return AlertStatus.RESOLVED if is_open else current


@attrs.define
class PagerDuty:
    """The Events API, with a table of alerts keyed by (routing_key, dedup_key)."""

    alerts: dict[tuple[str, str], AlertStatus] = attrs.Factory(dict)
    opened: int = 0  # alerts created, counting a reopened one again

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        if path != "/v2/enqueue":
            return Outcome(HttpResponse.text(404, "Not Found"))
        if request.method != "POST":
            return Outcome(HttpResponse.text(405, "Method Not Allowed"))
        try:
            event = request.json()
        except ValueError:
            return Outcome(_UNPARSEABLE)
        errors = _errors(event)
        if errors:
            return Outcome(_invalid(errors))
        dedup_key = event.get("dedup_key") or new_uuid(rng)
        self._apply(event["routing_key"], EventAction(event["event_action"]), dedup_key)
        body = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        return Outcome(HttpResponse.json(202, body), key=dedup_key)

    def _apply(self, routing_key: str, action: EventAction, dedup_key: str) -> None:
        alert = (routing_key, dedup_key)
        current = self.alerts.get(alert)
        status = next_status(current, action)
        if status is None:
            return
        if status is AlertStatus.TRIGGERED and current is not AlertStatus.TRIGGERED:
            self.opened += 1
        self.alerts[alert] = status


def _errors(event: Any) -> list[str]:
    """Everything wrong with ``event``; empty when it is valid."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = _envelope_errors(event)
    if event.get("event_action") == EventAction.TRIGGER.value:
        errors += _payload_errors(event.get("payload"))
    return errors


def _envelope_errors(event: dict[str, Any]) -> list[str]:
    errors = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        errors.append("'routing_key' is missing or blank")
    elif routing_key == "invalid":
        errors.append("Invalid routing key")
    action = event.get("event_action")
    if action not in {a.value for a in EventAction}:
        errors.append("'event_action' is missing or invalid")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not (
        isinstance(dedup_key, str) and len(dedup_key) <= _MAX_DEDUP_KEY
    ):
        errors.append(f"'dedup_key' must be a string of at most {_MAX_DEDUP_KEY} characters")
    elif not dedup_key and action in ("acknowledge", "resolve"):
        errors.append("'dedup_key' is required for acknowledge and resolve events")
    return errors


def _is_dedup_key(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= _MAX_DEDUP_KEY


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > _MAX_SUMMARY:
        errors.append(f"'payload.summary' is longer than {_MAX_SUMMARY} characters")
    source = payload.get("source")
    if not isinstance(source, str) or not source:
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in _SEVERITIES:
        errors.append("'payload.severity' must be one of critical, error, warning, info")
    return errors


SPEC = ProviderSpec("pagerduty", PagerDuty, REPLIES)
