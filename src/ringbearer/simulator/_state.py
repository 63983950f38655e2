"""The simulator's state: one endpoint per HTTP provider, and SMTP's slot."""

from __future__ import annotations

import attrs

from . import _analytics, _crm, _mailgun, _pagerduty, _resend, _slack, _social, _twilio
from ._endpoint import Endpoint
from ._provider import ProviderSpec
from ._slot import ProviderSlot

SMTP = "smtp"


def provider_specs() -> tuple[ProviderSpec, ...]:
    """Every simulated HTTP provider, named as its integration kind with ``-`` for ``_``.

    Adding one is a module and a line here (or in its family's ``SPECS``).
    """
    return (
        _resend.SPEC,
        _mailgun.SPEC,
        _slack.SPEC,
        _slack.CHAT_SPEC,
        _pagerduty.SPEC,
        *_twilio.SPECS,
        *_analytics.SPECS,
        *_crm.SPECS,
        *_social.SPECS,
    )


def _endpoints(seed: int) -> dict[str, Endpoint]:
    return {spec.name: Endpoint(spec, ProviderSlot(spec.name, seed)) for spec in provider_specs()}


@attrs.define
class SimulatorState:
    """Everything the simulator remembers; ``seed`` makes faults and ids repeatable."""

    seed: int = 0
    endpoints: dict[str, Endpoint] = attrs.field(init=False)
    smtp: ProviderSlot = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.endpoints = _endpoints(self.seed)
        self.smtp = ProviderSlot(SMTP, self.seed)

    def slots(self) -> dict[str, ProviderSlot]:
        """Every provider's faults and stats, SMTP included, by provider name."""
        slots = {name: endpoint.slot for name, endpoint in self.endpoints.items()}
        slots[SMTP] = self.smtp
        return slots

    def reset(self) -> None:
        """Clear stats, idempotency and dedup tables, and faults, of every provider."""
        for endpoint in self.endpoints.values():
            endpoint.reset()
        self.smtp.reset()
