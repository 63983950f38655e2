"""A provider simulator: a real network server that answers like the real providers.

``/<provider>/<the provider's real path>`` over HTTP — ``resend``,
``mailgun``, ``slack_webhook``, ``pagerduty`` — plus an SMTP server, each with
its own success bodies, errors, rate-limit signals and idempotency rules, and
with faults that can be switched on at run time through ``/_sim/faults``.
A provider is named by its kind as the config spells it, or by its path
segment (``slack-webhook``): the same provider either way.

It also sends events back, signed as each provider signs them: Resend's and
Mailgun's to the URL registered for them (``/_sim/webhooks``, or
``SimulatorState(webhooks={"resend": WebhookTarget(url, secret)})``),
Twilio's to each text's ``StatusCallback``. Mail to ``bounce@``,
``softbounce@``, ``complaint@`` and ``unsubscribe@simulator.test`` meets
those fates; a seeded share of everyone else's is opened and clicked; a text
to ``+15005550001`` is undelivered.
"""

from ._fates import Fates as Fates
from ._fates import MailEvent as MailEvent
from ._faults import FaultKind as FaultKind
from ._faults import Faults as Faults
from ._outbox import EventTiming as EventTiming
from ._provider import kind_of as kind_of
from ._server import SimulatorAddress as SimulatorAddress
from ._server import run_simulator as run_simulator
from ._server import serve_simulator as serve_simulator
from ._state import SimulatorState as SimulatorState
from ._state import provider_specs as provider_specs
from ._stats import StatsSnapshot as StatsSnapshot
from ._targets import WebhookTarget as WebhookTarget

__all__ = [
    "EventTiming",
    "Fates",
    "FaultKind",
    "Faults",
    "MailEvent",
    "SimulatorAddress",
    "SimulatorState",
    "StatsSnapshot",
    "WebhookTarget",
    "kind_of",
    "provider_specs",
    "run_simulator",
    "serve_simulator",
]
