"""``[alerting]``: where alerts go, when they escalate, and the thresholds (see ``_alerting``)."""

from __future__ import annotations

import attrs
from attrs import validators as v

from ._converter import HttpPath
from ._secrets import SecretRef

# The kinds whose alerts are emails (``AlertManager.payload``): a chain that
# reaches one needs email_to and email_from, or every alert it sends is refused.
EMAIL_KINDS = frozenset({"resend", "mailgun", "smtp"})
EMAIL_KEYS = ("email_to", "email_from")


@attrs.frozen
class AlertingSettings:
    """``[alerting]``: where alerts go and when they escalate."""

    enabled: bool = True
    chain: tuple[str, ...] = ()  # targets (integrations or groups), first tried first
    wedding_day_chain: tuple[str, ...] = ()  # shorter, ending at a phone; () = chain
    escalate_after_seconds: float = attrs.field(default=600.0, validator=v.gt(0.0))
    wedding_day_escalate_after_seconds: float = attrs.field(default=120.0, validator=v.gt(0.0))
    repeat_seconds: float = attrs.field(default=1800.0, validator=v.gt(0.0))
    channel_timeout_seconds: float = attrs.field(default=60.0, validator=v.gt(0.0))
    breaker_open_seconds: float = attrs.field(default=300.0, validator=v.ge(0.0))
    wedding_day_breaker_open_seconds: float = attrs.field(default=60.0, validator=v.ge(0.0))
    dead_letter_window_seconds: float = attrs.field(default=900.0, validator=v.gt(0.0))
    deadline_warning_seconds: float = attrs.field(default=600.0, validator=v.gt(0.0))
    tick_seconds: float = attrs.field(default=5.0, validator=v.gt(0.0))
    # Who is told, for the channels that need an address.
    phone: str = ""  # SMS and calls, E.164
    email_to: str = ""
    email_from: str = ""
    # PagerDuty's acknowledgements, posted by a V3 webhook subscription to this
    # path on the [metrics] listener and signed with this secret; unset: off.
    pagerduty_webhook_secret: SecretRef | None = None
    pagerduty_webhook_path: HttpPath = HttpPath("/pagerduty/webhook")

    def chain_entries(self) -> list[tuple[str, str]]:
        """Every entry of both chains, as ``(key path, target)``: ``("chain[0]", "slack")``."""
        return [
            (f"{key}[{index}]", name)
            for key in ("chain", "wedding_day_chain")
            for index, name in enumerate(getattr(self, key))
        ]

    def unset_email_keys(self) -> tuple[str, ...]:
        """The addresses an email alert needs (``EMAIL_KEYS``) that are left empty."""
        return tuple(key for key in EMAIL_KEYS if not getattr(self, key).strip())
