"""``[alerting]``: where alerts go, when they escalate, and the thresholds (see ``_alerting``)."""

from __future__ import annotations

import attrs
from attrs import validators as v

from ._converter import HttpPath
from ._secrets import SecretRef


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
