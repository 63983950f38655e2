"""Integrations: one module per family, each provider a row of one table.

A provider is its settings class, a payload check, how to build its request
and how to classify its answer, and the probe preflight runs to check it
sending nothing (:class:`ReadOnly`, :class:`Connect` or :class:`InThread`,
each coming to a :class:`Finding`). Each family module lists its rows in
``KINDS``; :func:`provider_kinds` gathers them; the daemon builds an
:class:`Adapter` from a row, and each actor lane opens a :class:`Lane` from
the adapter.
"""

from __future__ import annotations

from . import _smtp, alerts, analytics, crm, email, privacy, social
from ._base import Adapter as Adapter
from ._base import AdapterContext as AdapterContext
from ._base import BatchingLane as BatchingLane
from ._base import BatchLimits as BatchLimits
from ._base import Connect as Connect
from ._base import Finding as Finding
from ._base import HttpAdapter as HttpAdapter
from ._base import HttpCall as HttpCall
from ._base import HttpProvider as HttpProvider
from ._base import InThread as InThread
from ._base import Lane as Lane
from ._base import Probe as Probe
from ._base import ProviderKind as ProviderKind
from ._base import ReadOnly as ReadOnly
from ._base import Verdict as Verdict
from ._fake import FakeAdapter as FakeAdapter
from ._fake import FakeSettings as FakeSettings
from ._fake import fake_kinds as fake_kinds
from ._smtp import SmtpSettings as SmtpSettings
from .alerts import PagerDutySettings as PagerDutySettings
from .alerts import SlackWebhookSettings as SlackWebhookSettings
from .email import EmailPayload as EmailPayload
from .email import MailgunSettings as MailgunSettings
from .email import ResendSettings as ResendSettings


def provider_kinds() -> dict[str, ProviderKind]:
    """The provider table, keyed by the ``kind`` a config section names."""
    rows = (
        *email.KINDS,
        _smtp.KIND,
        *alerts.KINDS,
        *analytics.KINDS,
        *privacy.KINDS,
        *crm.KINDS,
        *social.KINDS,
    )
    return {row.kind: row for row in rows}
