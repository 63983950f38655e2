"""Twilio's message status callbacks: a signed form to each message's ``StatusCallback``.

Twilio posts ``MessageSid``, ``MessageStatus``, ``ErrorCode`` (when it
failed), ``To``, ``From``, ``AccountSid`` and ``ApiVersion`` (and the older
``SmsSid``/``SmsStatus``), form-encoded, with ``X-Twilio-Signature`` over
the URL and the sorted parameters, keyed by the auth token the message was
sent with. The first status (``queued``) is in the create's answer, not in
a callback.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

from ._fates import Fates, sms_statuses
from ._mail import Sent, SentSms
from ._outbox import Outbound
from ._signing import twilio_signature
from ._targets import WebhookTarget

UNDELIVERED_CODE = "30003"  # "Unreachable destination handset"


def scripts(
    item: Sent, target: WebhookTarget | None, fates: Fates, now: float
) -> Iterator[tuple[Outbound, ...]]:
    """A text's statuses, in order, when it named a callback (``target`` plays no part)."""
    if not isinstance(item, SentSms) or item.callback is None:
        return
    yield tuple(_callback(item, item.callback, status) for status in sms_statuses(item.to))


def _callback(sms: SentSms, url: str, status: str) -> Outbound:
    params = {
        "MessageSid": sms.sid,
        "SmsSid": sms.sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": sms.to,
        "AccountSid": sms.account,
        "ApiVersion": "2010-04-01",
    }
    sender = "MessagingServiceSid" if sms.sender.startswith("MG") else "From"
    params[sender] = sms.sender
    if status in ("undelivered", "failed"):
        params["ErrorCode"] = UNDELIVERED_CODE
    signature = twilio_signature(sms.auth_token, url, params)
    body = urlencode(params).encode()
    headers = {"X-Twilio-Signature": signature}
    return Outbound(url, body, "application/x-www-form-urlencoded", signed=lambda _: headers)
