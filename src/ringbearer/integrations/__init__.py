"""Integrations: one module per family, each provider a row of one table.

A provider is its settings class, a payload check, how to build its request
and how to classify its answer. :func:`provider_kinds` builds the table; the
daemon builds an :class:`Adapter` from a row, and each actor lane opens a
:class:`Lane` from the adapter.
"""

from __future__ import annotations

from ._base import Adapter as Adapter
from ._base import AdapterContext as AdapterContext
from ._base import HttpAdapter as HttpAdapter
from ._base import HttpCall as HttpCall
from ._base import HttpProvider as HttpProvider
from ._base import Lane as Lane
from ._base import ProviderKind as ProviderKind
from ._base import http_kind
from ._fake import FakeAdapter as FakeAdapter
from ._fake import FakeSettings as FakeSettings
from ._fake import fake_kinds as fake_kinds
from ._smtp import SmtpSettings as SmtpSettings
from ._smtp import build_smtp
from .alerts import PagerDuty, SlackWebhook
from .alerts import PagerDutySettings as PagerDutySettings
from .alerts import SlackWebhookSettings as SlackWebhookSettings
from .email import EmailPayload as EmailPayload
from .email import Mailgun, Resend
from .email import MailgunSettings as MailgunSettings
from .email import ResendSettings as ResendSettings


def provider_kinds() -> dict[str, ProviderKind]:
    """The provider table, keyed by the ``kind`` a config section names."""
    rows = [
        http_kind("resend", "email", ResendSettings, Resend.from_settings),
        http_kind("mailgun", "email", MailgunSettings, Mailgun.from_settings),
        ProviderKind(kind="smtp", settings_type=SmtpSettings, build=build_smtp, family="email"),
        http_kind("slack_webhook", "alerts", SlackWebhookSettings, SlackWebhook.from_settings),
        http_kind("pagerduty", "alerts", PagerDutySettings, PagerDuty.from_settings),
    ]
    return {row.kind: row for row in rows}
