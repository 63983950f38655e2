"""What travels between the parts: priorities, envelopes and delivery outcomes.

An adapter turns an :class:`Envelope` into an :class:`Outcome`:

* :class:`Delivered` — the provider took the message (its own id, if any);
* :class:`Retry` — it did not, for now; ``taken`` says whether the provider
  may nevertheless have taken it (a timeout after the request was sent), and
  ``after`` is the wait the provider asked for, if it asked;
* :class:`Permanent` — the request itself is wrong; retrying cannot help.

A :class:`Retry` whose ``scope`` is :attr:`Scope.MESSAGE` says the provider
is well and only this message must wait (Amplitude throttling one user, a
budget spent): it does not count against the integration's breaker or health.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs


class Priority(enum.IntEnum):
    """Lower sorts first: critical work goes before normal, normal before bulk."""

    CRITICAL = 0
    NORMAL = 1
    BULK = 2

    @classmethod
    def parse(cls, text: str) -> Priority:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown priority {text!r} (expected critical, normal or bulk)"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Taken(enum.Enum):
    """Whether a failed attempt may still have reached the provider."""

    NO = "no"  # certainly not: refused, rate limited, or the answer says so
    MAYBE = "maybe"  # ambiguous: sent, then no usable answer


class Scope(enum.Enum):
    """Whom a retryable failure is about."""

    INTEGRATION = "integration"  # the provider or the way to it is failing
    MESSAGE = "message"  # the provider is well; this message alone must wait


@attrs.frozen
class Envelope:
    """One claimed message, as an actor receives it."""

    id: int
    target: str
    integration: str
    priority: Priority
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int  # attempts made before this one
    created_at: float  # wall clock, seconds since the epoch
    route_index: int = 0
    member_attempts: int = 0  # attempts on the current group member
    # Steps of a multi-step delivery already done (e.g. a created container's
    # id), saved by the adapter as each one completes; empty for one-step work.
    progress: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Delivered:
    provider_id: str | None = None


@attrs.frozen
class Retry:
    reason: str
    taken: Taken = Taken.NO
    after: float | None = None  # seconds the provider asked us to wait
    status: int | None = None
    scope: Scope = Scope.INTEGRATION


@attrs.frozen
class Permanent:
    reason: str
    status: int | None = None


Outcome = Delivered | Retry | Permanent
