"""Resend's delivery events, signed by Svix, and the one-click unsubscribe a mailbox makes.

Each event is ``POST``ed as JSON ``{type, created_at, data{email_id, from,
to[], subject, created_at, ...}}`` with ``svix-id`` (one per event, the
same on its retries), ``svix-timestamp`` (of the attempt) and
``svix-signature``. A hard or soft bounce is ``email.bounced`` with
``bounce.type`` ``Permanent`` or ``Temporary``.

Resend has no unsubscribe event: a mailbox provider honours the email's
RFC 8058 headers itself. So, for ``unsubscribe@simulator.test``, the
simulator ``POST``s ``List-Unsubscribe=One-Click`` (urlencoded) to the
first http(s) URI of ``List-Unsubscribe``, when ``List-Unsubscribe-Post``
asks for one-click, whether or not a Resend target is registered.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from ._fates import UNSUBSCRIBE, Fates, MailEvent
from ._mail import Sent, SentMail
from ._outbox import Outbound
from ._signing import svix_key, svix_signature
from ._targets import WebhookTarget

ONE_CLICK = "List-Unsubscribe=One-Click"
_URI = re.compile(r"<\s*(https?://[^>\s]+)\s*>")
_TYPES = {
    MailEvent.DELIVERED: "email.delivered",
    MailEvent.HARD_BOUNCE: "email.bounced",
    MailEvent.SOFT_BOUNCE: "email.bounced",
    MailEvent.COMPLAINED: "email.complained",
    MailEvent.OPENED: "email.opened",
    MailEvent.CLICKED: "email.clicked",
}
_BOUNCES = {
    MailEvent.HARD_BOUNCE: {
        "type": "Permanent",
        "subType": "General",
        "message": "The recipient's mail server permanently rejected the email.",
        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
    },
    MailEvent.SOFT_BOUNCE: {
        "type": "Temporary",
        "subType": "MailboxFull",
        "message": "The recipient's mailbox is full.",
        "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
    },
}


def iso(at: float) -> str:
    """Unix seconds as Resend writes a time: ``2026-02-22T23:41:12.126Z``."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen
class _Svix:
    """Signs one event's body at each attempt, under its one ``svix-id``."""

    key: bytes
    msg_id: str
    body: bytes

    def __call__(self, attempt_at: int) -> Mapping[str, str]:
        return {
            "svix-id": self.msg_id,
            "svix-timestamp": str(attempt_at),
            "svix-signature": svix_signature(self.key, self.msg_id, attempt_at, self.body),
        }


def scripts(
    item: Sent, target: WebhookTarget | None, fates: Fates, now: float
) -> Iterator[tuple[Outbound, ...]]:
    """Per recipient of an email Resend took, its events in order."""
    if not isinstance(item, SentMail):
        return
    one_click = one_click_url(item) if UNSUBSCRIBE in item.to else None
    if target is None and one_click is None:
        return  # the hot path without a target: nothing to build
    key = None if target is None else svix_key(target.secret)
    for address in item.to:
        steps: list[Outbound] = []
        for index, event in enumerate(fates.mail(address, item.provider_id)):
            if event is MailEvent.UNSUBSCRIBED:
                steps.extend(_one_click(one_click))
            elif target is not None and key is not None:
                body = _body(event, item, address, now, now + index * 0.001)
                steps.append(_event(target.url, key, body))
        if steps:
            yield tuple(steps)


def _event(url: str, key: bytes, body: bytes) -> Outbound:
    msg_id = "msg_" + secrets.token_hex(14)
    return Outbound(url, body, "application/json", signed=_Svix(key, msg_id, body))


def _body(event: MailEvent, mail: SentMail, address: str, sent_at: float, at: float) -> bytes:
    data: dict[str, Any] = {
        "email_id": mail.provider_id,
        "message_id": f"<{mail.provider_id}@resend.simulator.test>",
        "from": mail.sender,
        "to": [address],
        "subject": mail.subject,
        "created_at": iso(sent_at),
    }
    if event in _BOUNCES:
        data["bounce"] = _BOUNCES[event]
    if event is MailEvent.CLICKED:
        data["click"] = {
            "ipAddress": "192.0.2.10",
            "link": "https://example.com/",
            "timestamp": iso(at),
            "userAgent": "Mozilla/5.0 (ringbearer simulator)",
        }
    envelope = {"type": _TYPES[event], "created_at": iso(at), "data": data}
    return json.dumps(envelope, separators=(",", ":")).encode()


def one_click_url(mail: SentMail) -> str | None:
    """The http(s) URI a mailbox would POST to, if the email offers one-click unsubscribe."""
    post = mail.header("List-Unsubscribe-Post")
    listed = mail.header("List-Unsubscribe")
    if not isinstance(post, str) or post.strip() != ONE_CLICK or not isinstance(listed, str):
        return None
    found = _URI.search(listed)
    return None if found is None else found[1]


def _one_click(url: str | None) -> tuple[Outbound, ...]:
    if url is None:
        return ()
    body = ONE_CLICK.encode()
    return (Outbound(url, body, "application/x-www-form-urlencoded"),)
