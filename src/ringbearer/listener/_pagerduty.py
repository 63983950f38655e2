"""PagerDuty's own acknowledgements, received as V3 webhooks on the public listener.

An alert that reached PagerDuty (Events v2) opened an incident whose
``incident_key`` is the alert's ``dedup_key`` (its cause, such as
``breaker_open:resend``). When someone acknowledges or resolves that incident
in PagerDuty, a webhook subscription posts a signed event here, and the alert
is acknowledged as if by ``ringbearer alerts ack``: escalation and repeats stop.

PagerDuty signs each delivery: ``X-PagerDuty-Signature`` holds one or more
``v1=<hex>`` values (several while a secret is rotated), each an HMAC-SHA256
of the raw body under a subscription's secret. A delivery without a matching
signature is refused (401, with an audit event) and changes nothing. Answers
are 2xx for every signed delivery, even one about an incident we do not
know, because PagerDuty retries what it sees fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

import attrs

from .._logging import fields
from .._secrets import Secret
from ._http import Request, Response
from ._refusals import Refusals
from ._signatures import Refused, Why

log = logging.getLogger("ringbearer.alerts")

SOURCE = "pagerduty"  # the refusals' source
SIGNATURE_HEADER = "x-pagerduty-signature"
DEFAULT_PATH = "/pagerduty/webhook"
# What a person does in PagerDuty that means "someone is on it".
ACKNOWLEDGING = frozenset({"incident.acknowledged", "incident.resolved"})

Acknowledge = Callable[[str, str], Awaitable[bool]]  # (dedup key, by) -> an open alert was acked


@attrs.frozen
class IncidentEvent:
    """The part of a V3 webhook event that matters here."""

    event_type: str
    incident_key: str | None
    agent: str  # who did it, as PagerDuty names them


@attrs.frozen
class PagerDutyHook:
    """Where PagerDuty posts, the subscription's secret, and what an acknowledgement does."""

    secret: Secret
    acknowledge: Acknowledge
    path: str = DEFAULT_PATH


def signed(body: bytes, header: str, secret: Secret) -> bool:
    """Does any ``v1=`` signature in ``header`` match the body under ``secret``?"""
    expected = hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest().encode()
    offered = [part.strip().encode("utf-8", "surrogatepass") for part in header.split(",")]
    matches = [hmac.compare_digest(b"v1=" + expected, part) for part in offered]
    return any(matches)


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


async def answer(hook: PagerDutyHook, refusals: Refusals, request: Request) -> Response:
    """Verify a delivery, then acknowledge the alert it names."""
    if not signed(request.body, request.headers.get(SIGNATURE_HEADER, ""), hook.secret):
        return refusals.unauthorised(
            SOURCE, Refused(Why.FORGED, "no v1 signature matches"), integration=None
        )
    try:
        event = parse(request.body)
    except ValueError as exc:
        return Response.text(400, str(exc))
    if event.event_type in ACKNOWLEDGING and event.incident_key is not None:
        acked = await hook.acknowledge(event.incident_key, f"pagerduty ({event.agent})")
        log.info(
            "pagerduty webhook",
            extra=fields(event=event.event_type, key=event.incident_key, acked=acked),
        )
    return Response.text(200, "ok")
