"""What a simulated provider took: the emails and texts it reports on and shows.

A provider's logic hands these back with its answer (``Outcome.sent``); the
stats count them per recipient and keep the last emails for ``/_sim/mail``,
and the event relay turns them into the provider's delivery events. They
are small and built from what the provider already parsed, so the hot path
pays for a record, not for a parse.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from email.utils import getaddresses
from types import MappingProxyType
from typing import TypeAlias

import attrs

_NONE: Mapping[str, str] = MappingProxyType({})  # shared: a default costs no allocation


@attrs.frozen
class SentMail:
    """One email a provider took, as it will be delivered."""

    provider_id: str  # what the provider answered: Resend's id, Mailgun's <id>, SMTP's queue id
    sender: str
    to: tuple[str, ...]  # bare addresses, lower case
    subject: str
    headers: Mapping[str, str] = _NONE  # as sent: JSON, h: fields, DATA's
    variables: Mapping[str, str] = _NONE  # Mailgun's v: fields
    copies: tuple[str, ...] = ()  # cc and bcc, bare and lower case

    @property
    def recipients(self) -> tuple[str, ...]:
        """Everyone the email goes to."""
        return self.to + self.copies

    def header(self, name: str) -> str | None:
        """A header's value by its name in any case, or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@attrs.frozen
class SentSms:
    """One text Twilio took, and where its status callbacks go."""

    sid: str
    account: str
    to: str
    sender: str  # its From, or the Messaging Service that picks one
    callback: str | None  # the request's StatusCallback
    # The Basic password the request authenticated with: Twilio signs callbacks with it.
    auth_token: str = attrs.field(repr=False)

    @property
    def recipients(self) -> tuple[str, ...]:
        return (self.to,)


Sent: TypeAlias = SentMail | SentSms


@functools.lru_cache(maxsize=4096)
def bare(text: str) -> tuple[str, ...]:
    """The addresses in one field value (``a@b, Name <c@d>``): bare, trimmed, lower case."""
    # The standard parser is slow; the same few recipients recur in a benchmark.
    return tuple(address.strip().lower() for _, address in getaddresses([text]) if address)


def bare_all(values: Sequence[str]) -> tuple[str, ...]:
    """Every address in ``values``, each of which may list several."""
    if len(values) == 1:  # the usual case, kept cheap: one field, often one address
        return bare(values[0])
    return tuple(address for value in values for address in bare(value))
