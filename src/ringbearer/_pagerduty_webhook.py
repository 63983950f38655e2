"""PagerDuty's own acknowledgements, received as V3 webhooks.

An alert that reached PagerDuty (Events v2) opened an incident whose
``incident_key`` is the alert's ``dedup_key`` (its cause, such as
``breaker_open:resend``). When someone acknowledges or resolves that incident
in PagerDuty, a webhook subscription posts a signed event here, and the alert
is acknowledged as if by ``ringbearer alerts ack``: escalation and repeats stop.

PagerDuty signs each delivery: ``X-PagerDuty-Signature`` holds one or more
``v1=<hex>`` values (several while a secret is rotated), each an HMAC-SHA256
of the raw body under a subscription's secret. A delivery without a matching
signature is refused (401) and changes nothing. Answers are 2xx for every
signed delivery, even one about an incident we do not know, because PagerDuty
retries what it sees fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

import attrs

from ._httpserver import Handler, HttpRequest, HttpResponse
from ._logging import fields
from ._secrets import Secret

log = logging.getLogger("ringbearer.alerts")

SIGNATURE_HEADER = "x-pagerduty-signature"
# What a person does in PagerDuty that means "someone is on it".
ACKNOWLEDGING = frozenset({"incident.acknowledged", "incident.resolved"})
BODY_MAX = 256 * 1024


@attrs.frozen
class IncidentEvent:
    """The part of a V3 webhook event that matters here."""

    event_type: str
    incident_key: str | None
    agent: str  # who did it, as PagerDuty names them


def signed(body: bytes, header: str, secret: Secret) -> bool:
    """Does any ``v1=`` signature in ``header`` match the body under ``secret``?"""
    expected = hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()
    offered = [part.strip() for part in header.split(",")]
    return any(
        hmac.compare_digest(f"v1={expected}", part) for part in offered if part.startswith("v1=")
    )


def parse(body: bytes) -> IncidentEvent:
    """Read a V3 webhook body; ValueError when it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError("the body is not JSON") from exc
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ValueError("expected {'event': {'event_type': ...}}")
    data = event.get("data")
    key = data.get("incident_key") if isinstance(data, dict) else None
    agent = event.get("agent")
    who = agent.get("summary") if isinstance(agent, dict) else None
    return IncidentEvent(
        event_type=event["event_type"],
        incident_key=key if isinstance(key, str) and key else None,
        agent=who if isinstance(who, str) and who else "someone",
    )


Acknowledge = Callable[[str, str], Awaitable[bool]]  # (dedup key, by) -> an open alert was acked


def handler(secret: Secret, acknowledge: Acknowledge) -> Handler:
    """Answer PagerDuty's webhook deliveries: verify, then acknowledge the alert they name."""

    async def answer(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse.text(405, "method not allowed\n")
        if len(request.body) > BODY_MAX:
            return HttpResponse.text(413, "too large\n")
        if not signed(request.body, request.headers.get(SIGNATURE_HEADER, ""), secret):
            log.warning("pagerduty webhook refused: no valid signature")
            return HttpResponse.text(401, "signature does not match\n")
        try:
            event = parse(request.body)
        except ValueError as exc:
            return HttpResponse.text(400, f"{exc}\n")
        if event.event_type in ACKNOWLEDGING and event.incident_key is not None:
            by = f"pagerduty ({event.agent})"
            acked = await acknowledge(event.incident_key, by)
            log.info(
                "pagerduty webhook",
                extra=fields(event=event.event_type, key=event.incident_key, acked=acked),
            )
        return HttpResponse.text(200, "ok\n")

    return answer
