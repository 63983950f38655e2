"""Mailgun's event webhooks: a JSON body that carries its own signature.

``{"signature": {timestamp, token, signature}, "event-data": {event, id,
timestamp, severity?, recipient, message{headers{message-id}},
user-variables}}``. The token is 50 random characters, one per event; a
retry resends the event as it was, signature block included (as Mailgun is
reported to do), so a receiver that caches tokens sees a retry as the same
delivery. A bounce is ``failed`` with ``severity`` ``permanent`` or
``temporary``; Mailgun stops trying an event answered 406.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

from ._fates import Fates, MailEvent
from ._mail import Sent, SentMail
from ._outbox import Outbound
from ._signing import mailgun_signature
from ._targets import WebhookTarget

_STOP = frozenset({406})  # "Not Acceptable": Mailgun gives the event up
_EVENTS: dict[MailEvent, tuple[str, dict[str, Any]]] = {
    MailEvent.DELIVERED: ("delivered", {"log-level": "info"}),
    MailEvent.HARD_BOUNCE: (
        "failed",
        {
            "log-level": "error",
            "severity": "permanent",
            "reason": "bounce",
            "delivery-status": {
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
                "attempt-no": 1,
                "enhanced-code": "5.1.1",
            },
        },
    ),
    MailEvent.SOFT_BOUNCE: (
        "failed",
        {
            "log-level": "warn",
            "severity": "temporary",
            "reason": "generic",
            "delivery-status": {
                "code": 452,
                "message": "4.2.2 The email account that you tried to reach is over quota.",
                "description": "",
                "attempt-no": 1,
                "enhanced-code": "4.2.2",
                "retry-seconds": 600,
            },
        },
    ),
    MailEvent.COMPLAINED: ("complained", {"log-level": "warn"}),
    MailEvent.UNSUBSCRIBED: ("unsubscribed", {"log-level": "info"}),
    MailEvent.OPENED: ("opened", {"log-level": "info"}),
    MailEvent.CLICKED: ("clicked", {"log-level": "info", "url": "https://example.com/"}),
}


def scripts(
    item: Sent, target: WebhookTarget | None, fates: Fates, now: float
) -> Iterator[tuple[Outbound, ...]]:
    """Per recipient of an email Mailgun took, its events in order."""
    if target is None or not isinstance(item, SentMail):
        return
    for address in item.to:
        events = fates.mail(address, item.provider_id)
        yield tuple(
            Outbound(
                target.url,
                _body(event, item, address, target.secret, now + index * 0.001),
                "application/json",
                final=_STOP,
            )
            for index, event in enumerate(events)
        )


def _body(event: MailEvent, mail: SentMail, address: str, signing_key: str, at: float) -> bytes:
    name, extra = _EVENTS[event]
    timestamp, token = str(int(at)), secrets.token_hex(25)
    signature = {
        "timestamp": timestamp,
        "token": token,
        "signature": mailgun_signature(signing_key, timestamp, token),
    }
    headers = {
        "message-id": mail.provider_id.strip("<>"),
        "to": address,
        "from": mail.sender,
        "subject": mail.subject,
    }
    data = {
        "event": name,
        "id": secrets.token_urlsafe(16),
        "timestamp": round(at, 6),
        **extra,
        "recipient": address,
        "message": {"headers": headers},
        "user-variables": dict(mail.variables),
        "tags": [],
        "flags": {"is-test-mode": False},
    }
    return json.dumps({"signature": signature, "event-data": data}).encode()
