"""The simulator's state: one endpoint per HTTP provider, and SMTP's slot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from . import (
    _analytics,
    _crm,
    _deletions,
    _mailgun,
    _pagerduty,
    _resend,
    _slack,
    _social,
    _twilio,
)
from ._deletions import Deletion
from ._endpoint import Endpoint, Report
from ._fates import Fates
from ._outbox import EventTiming
from ._provider import ProviderSpec
from ._relay import EventRelay
from ._slot import ProviderSlot
from ._targets import WebhookTarget

SMTP = "smtp"


def provider_specs() -> tuple[ProviderSpec, ...]:
    """Every simulated HTTP provider, named as its integration kind with ``-`` for ``_``.

    Each is found by that name or by its kind as the config spells it
    (:meth:`SimulatorState.name_of`). Adding one is a module and a line here
    (or in its family's ``SPECS``).
    """
    return (
        _resend.SPEC,
        _mailgun.SPEC,
        _slack.SPEC,
        _slack.CHAT_SPEC,
        _pagerduty.SPEC,
        *_twilio.SPECS,
        *_analytics.SPECS,
        *_deletions.SPECS,
        *_crm.SPECS,
        *_social.SPECS,
    )


def _endpoints(seed: int, report: Report) -> dict[str, Endpoint]:
    return {
        spec.name: Endpoint(spec, ProviderSlot(spec.name, seed), report)
        for spec in provider_specs()
    }


def _table(targets: Mapping[str, WebhookTarget]) -> dict[str, WebhookTarget]:
    return dict(targets)


@attrs.define
class SimulatorState:
    """Everything the simulator remembers; ``seed`` makes faults, ids and opens repeatable.

    ``webhooks`` is where Resend's and Mailgun's events go, by kind; it is
    the relay's own table, which ``/_sim/webhooks`` changes at run time.
    ``timing`` paces the events.
    """

    seed: int = 0
    webhooks: dict[str, WebhookTarget] = attrs.field(factory=dict, converter=_table)
    timing: EventTiming = EventTiming()
    endpoints: dict[str, Endpoint] = attrs.field(init=False)
    smtp: ProviderSlot = attrs.field(init=False)
    events: EventRelay = attrs.field(init=False)
    _names: dict[str, str] = attrs.field(init=False)  # name or kind -> name

    def __attrs_post_init__(self) -> None:
        for kind, target in self.webhooks.items():
            problem = target.problem(kind)
            if problem is not None:
                raise ValueError(f"webhook target for {kind!r}: {problem}")
        self.events = EventRelay(Fates(self.seed), self.webhooks, self.timing)
        self.endpoints = _endpoints(self.seed, self.events.report)
        self.smtp = ProviderSlot(SMTP, self.seed)
        self._names = {SMTP: SMTP}
        for endpoint in self.endpoints.values():
            spec = endpoint.spec
            self._names[spec.name] = self._names[spec.kind] = spec.name

    def name_of(self, name: str) -> str | None:
        """A provider's name, given it (``slack-webhook``) or its kind (``slack_webhook``)."""
        return self._names.get(name)

    def endpoint(self, name: str) -> Endpoint | None:
        """The HTTP provider of that name or kind, if there is one."""
        found = self.name_of(name)
        return None if found is None else self.endpoints.get(found)

    def deletions(self, provider: str) -> Sequence[Deletion]:
        """The deletions a privacy provider accepted, oldest first (``mixpanel``, ``amplitude``,
        or either one's name or kind); KeyError for any other provider."""
        endpoint = self.endpoint(_deletions.ALIASES.get(provider, provider))
        return _deletions.recorded(endpoint.logic if endpoint else None, provider)

    def slots(self) -> dict[str, ProviderSlot]:
        """Every provider's faults and stats, SMTP included, by provider name."""
        slots = {name: endpoint.slot for name, endpoint in self.endpoints.items()}
        slots[SMTP] = self.smtp
        return slots

    def reset(self) -> None:
        """Clear stats, idempotency and dedup tables, and faults, of every provider.

        Webhook targets stay: they are where events go, not what happened.
        """
        for endpoint in self.endpoints.values():
            endpoint.reset()
        self.smtp.reset()
