"""A verified delivery, read into :class:`ProviderEvent` values.

Only what the rules and the funnel need is kept, and nothing that names a
person beyond the recipient the event is about: a bounce's diagnostic text,
a clicked link or a user agent can carry an address or a name, so they stay
out of ``detail``. A delivery whose kind we do not act on (``email.sent``,
``contact.created``, Mailgun's ``accepted``, Twilio's ``sent``) reads as no
event, and is still answered 2xx: the provider would only retry it. A body
that is verified but does not have the documented shape raises
:class:`Malformed` (answered 400; nothing changes).
"""

from __future__ import annotations

import contextlib
import datetime
import math
from collections.abc import Mapping
from typing import Any

from ..deliverability import Channel, EventType, ProviderEvent, normalise_address


class Malformed(ValueError):
    """A verified body that is not what the provider documents; the text says what."""


_RESEND = {
    "email.delivered": EventType.DELIVERED,
    "email.bounced": EventType.HARD_BOUNCE,  # unless its bounce type is a temporary one
    "email.complained": EventType.COMPLAINED,
    "email.opened": EventType.OPENED,
    "email.clicked": EventType.CLICKED,
}
# Resend names temporary bounces "Temporary"; SES, under it, says "Transient".
_SOFT_BOUNCE_TYPES = frozenset({"temporary", "transient"})
_MAILGUN = {
    "delivered": EventType.DELIVERED,
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
}
# A temporary failure is Mailgun retrying, not a bounce (django-anymail reads it as
# "deferred" too): its retries end in delivered or a permanent failure.
_MAILGUN_FAILED = {"permanent": EventType.HARD_BOUNCE, "temporary": EventType.DEFERRED}
MAILGUN_KEY_VARIABLE = "ringbearer-key"  # the custom variable (v:ringbearer-key) the sender sets
_TWILIO = {
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.UNDELIVERED,
    "failed": EventType.FAILED,
}


def resend_events(source: str, event_id: str, document: object) -> list[ProviderEvent]:
    """A Resend webhook body (``{type, created_at, data}``); ``event_id`` is its svix-id."""
    body = _object(document, "the body")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise Malformed("expected a string 'type'")
    event_type = _RESEND.get(kind)
    if event_type is None:
        return []
    data = _object(body.get("data"), "'data'")
    detail: dict[str, object] = {}
    if kind == "email.bounced":
        event_type, detail = _resend_bounce(data.get("bounce"))
    return [
        ProviderEvent(
            source=source,
            event_id=event_id,
            type=event_type,
            at=_iso_time(body.get("created_at"), "'created_at'"),
            provider_id=_text(data.get("email_id"), "'data.email_id'"),
            address=_first_address(data.get("to")),
            detail=detail,
        )
    ]


def _resend_bounce(bounce: object) -> tuple[EventType, dict[str, object]]:
    """Hard unless Resend says the bounce is temporary; no bounce object reads as hard."""
    if bounce is None:
        return EventType.HARD_BOUNCE, {}
    found = _object(bounce, "'data.bounce'")
    kind, sub = found.get("type"), found.get("subType")
    detail = {k: v for k, v in (("bounce_type", kind), ("bounce_subtype", sub)) if _short(v)}
    soft = isinstance(kind, str) and kind.lower() in _SOFT_BOUNCE_TYPES
    return (EventType.SOFT_BOUNCE if soft else EventType.HARD_BOUNCE), detail


def _first_address(to: object) -> str | None:
    if to is None:
        return None
    if isinstance(to, str):  # lenient: the docs say an array
        to = [to]
    if not isinstance(to, list) or not to or not isinstance(to[0], str):
        raise Malformed("expected 'data.to' to be a list of addresses")
    return normalise_address(to[0]) or None


def mailgun_events(source: str, document: object) -> list[ProviderEvent]:
    """A Mailgun webhook body (``{signature, event-data}``); its token is the event's id."""
    body = _object(document, "the body")
    token = _text(_object(body.get("signature"), "'signature'").get("token"), "'signature.token'")
    data = _object(body.get("event-data"), "'event-data'")
    kind = data.get("event")
    if not isinstance(kind, str):
        raise Malformed("expected a string 'event-data.event'")
    if kind == "failed":
        event_type = _MAILGUN_FAILED.get(str(data.get("severity")))
        if event_type is None:
            raise Malformed("a failed event's severity is 'permanent' or 'temporary'")
    else:
        event_type = _MAILGUN.get(kind)
    if event_type is None:
        return []
    return [
        ProviderEvent(
            source=source,
            event_id=token,
            type=event_type,
            at=_unix_time(data.get("timestamp"), "'event-data.timestamp'"),
            provider_id=_mailgun_message_id(data.get("message")),
            key=_mailgun_key(data.get("user-variables")),
            address=_optional_address(data.get("recipient"), "'event-data.recipient'"),
            detail=_mailgun_detail(data) if kind == "failed" else {},
        )
    ]


def _mailgun_message_id(message: object) -> str | None:
    """The message-id as Mailgun's send API answered it, in angle brackets.

    The send API answers ``<id@domain>`` (what the store keeps); events carry
    the same id without the brackets.
    """
    if message is None:
        return None
    headers = _object(_object(message, "'event-data.message'").get("headers"), "message headers")
    found = headers.get("message-id")
    if found is None:
        return None
    text = _text(found, "'message.headers.message-id'").strip()
    return text if text.startswith("<") else f"<{text}>"


def _mailgun_key(variables: object) -> str | None:
    if not isinstance(variables, dict):
        return None
    key = variables.get(MAILGUN_KEY_VARIABLE)
    return key if isinstance(key, str) and key else None


def _mailgun_detail(data: Mapping[str, Any]) -> dict[str, object]:
    detail: dict[str, object] = {"severity": data.get("severity")}
    if _short(data.get("reason")):
        detail["reason"] = data["reason"]
    status = data.get("delivery-status")
    code = status.get("code") if isinstance(status, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        detail["code"] = code
    return detail


def twilio_events(source: str, form: Mapping[str, str], *, now: float) -> list[ProviderEvent]:
    """A Twilio status callback's form; it carries no time of its own, so ``now`` is used."""
    sid, status = form.get("MessageSid"), form.get("MessageStatus")
    if not sid or not status:
        raise Malformed("a status callback carries MessageSid and MessageStatus")
    event_type = _TWILIO.get(status)
    if event_type is None:
        return []
    code = form.get("ErrorCode")
    to = form.get("To")
    return [
        ProviderEvent(
            source=source,
            event_id=f"{sid}:{status}",
            type=event_type,
            at=now,
            channel=Channel.SMS,
            provider_id=sid,
            address=normalise_address(to) if to else None,
            detail={"error_code": code} if code else {},
        )
    ]


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"expected {what} to be a JSON object")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(f"expected {what} to be a non-empty string")
    return value


def _optional_address(value: object, what: str) -> str | None:
    return None if value is None else normalise_address(_text(value, what)) or None


def _short(value: object) -> bool:
    """A small label worth keeping in ``detail`` (never free text)."""
    return isinstance(value, str) and 0 < len(value) <= 64


def _iso_time(value: object, what: str) -> float:
    """An ISO 8601 time as Unix time; a time without a zone is taken as UTC."""
    try:
        moment = datetime.datetime.fromisoformat(_text(value, what))
    except ValueError as exc:
        raise Malformed(f"expected {what} to be an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _unix_time(value: object, what: str) -> float:
    if isinstance(value, str):  # lenient: the docs' examples send numbers
        with contextlib.suppress(ValueError):  # not a number: refused just below
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Malformed(f"expected {what} to be Unix seconds")
    return float(value)
