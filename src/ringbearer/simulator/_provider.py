"""What a simulated HTTP provider module supplies, and what it hands back.

A provider module holds only what is truly its own: its routes, validation,
success bodies and error shapes. Faults, latency and stats are applied around
it by :class:`~._endpoint.Endpoint`, the same way for every provider. To add
a provider, write a module that defines a class with ``handle`` and a
:class:`FaultReplies`, and add its :class:`ProviderSpec` to the table in
``_state.provider_specs``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._mail import Sent


@attrs.frozen
class Outcome:
    """A provider's answer to one request, and the idempotency key it counts under."""

    response: HttpResponse
    key: str | None = None
    accepted: bool = attrs.field()  # the provider did the work (sent, queued, recorded)
    # The emails or texts it took, for per-recipient counts and delivery events;
    # empty for a replayed request, which sends nothing again.
    sent: tuple[Sent, ...] = ()

    @accepted.default
    def _accepted_when_successful(self) -> bool:
        return 200 <= self.response.status < 300


@attrs.frozen
class FaultReplies:
    """How one provider answers when a fault strikes: each is its own real error."""

    error: HttpResponse  # its transient 5xx
    permanent: HttpResponse  # its 4xx validation or auth error
    outage: HttpResponse  # what every request gets while it is down
    rate_limited: Callable[[int], HttpResponse]  # its 429, given Retry-After seconds


class HttpProvider(Protocol):
    """The provider's own logic: a pure function of the request and its own state."""

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        """Answer ``request``; ``path`` is the provider's real path; ``rng`` makes ids."""
        ...


def kind_of(name: str) -> str:
    """The config's kind a simulated provider stands for (``slack-webhook``: ``slack_webhook``)."""
    return name.replace("-", "_")


@attrs.frozen
class ProviderSpec:
    """One row of the provider table: a name (the first path segment) and its parts.

    The name is the kind with ``-`` for ``_``; the kind itself is served too.
    """

    name: str
    make: Callable[[], HttpProvider]
    replies: FaultReplies

    @property
    def kind(self) -> str:
        return kind_of(self.name)
