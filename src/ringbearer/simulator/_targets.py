"""Where a provider's events go: a URL and the secret they are signed with.

Resend and Mailgun send events to an endpoint configured once, for every
message; Twilio posts to each message's own ``StatusCallback`` and signs
with the auth token the message was sent with, so it needs no target here.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from ._signing import svix_key

WebhookKind: TypeAlias = Literal["resend", "mailgun"]
WEBHOOK_KINDS: tuple[WebhookKind, ...] = ("resend", "mailgun")


@attrs.frozen
class WebhookTarget:
    """One provider's webhook endpoint: Resend's ``whsec_...`` secret, or Mailgun's key."""

    url: str
    secret: str = attrs.field(repr=False)

    def problem(self, kind: str) -> str | None:
        """Why this cannot be ``kind``'s target, or None."""
        if kind not in WEBHOOK_KINDS:
            known = ", ".join(WEBHOOK_KINDS)
            return (
                f"{kind!r} sends no events to a registered URL (Twilio posts to each"
                f" text's StatusCallback); these do: {known}"
            )
        if not self.url.startswith(("http://", "https://")):
            return "the url must be http:// or https://"
        if not self.secret:
            return "the secret must not be empty"
        if kind == "resend":
            try:
                svix_key(self.secret)
            except ValueError as exc:
                return str(exc)
        return None

    def shown(self) -> dict[str, str]:
        """What ``/_sim/webhooks`` shows: the URL, never the secret."""
        return {"url": self.url, "secret": "set"}
