"""What the store keeps for privacy: erasure jobs, consent, the messages of a subject.

Every subject is named by its opaque id (``s_…``, a keyed hash): the store
never holds the address, phone number or user id it stands for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

ERASED_PAYLOAD: dict[str, Any] = {"erased": 1}  # what an erased message's payload becomes
SHREDDED_PAYLOAD: dict[str, Any] = {"shredded": 1}  # what retention leaves of a payload


@attrs.frozen
class ErasureRecord:
    """One erasure job: which steps are done (step name -> when and what), and when it ended."""

    subject: str
    requested_by: str
    requested_at: float  # wall clock
    steps: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    finished_at: float | None = None
    id: int | None = None  # given by the store when first saved

    def done(self, step: str) -> bool:
        return step in self.steps

    def with_step(self, step: str, at: float, **detail: Any) -> ErasureRecord:
        return attrs.evolve(self, steps={**self.steps, step: {"at": at, **detail}})


@attrs.frozen
class ConsentRecord:
    """A subject's consent to one purpose given (``granted``) or withdrawn, and by what."""

    subject: str
    purpose: str  # "marketing" | "analytics"
    granted: bool
    source: str  # where it was given or withdrawn: "signup-form", "unsubscribe", ...
    at: float  # wall clock
    by: str  # who recorded it: an operator, "unsubscribe"
    id: int | None = None


@attrs.frozen
class SubjectMessage:
    """One message about a subject, its payload as stored (sealed, or erased/shredded)."""

    id: int
    target: str
    status: str
    payload: Mapping[str, Any]
    created_at: float
    delivered_at: float | None
    category: str | None


@attrs.frozen
class ErasedMessages:
    """What ending a subject's messages did: queued and dead ones ended as erased, payloads
    wiped (every one not in flight), and how many are still in flight (to wait for)."""

    ended: int
    wiped: int
    in_flight: int


@attrs.frozen
class MailEvent:
    """A provider event kept about a subject, as an export shows it."""

    at: float
    source: str
    event: str
    channel: str
    message_id: int | None
    integration: str | None
    domain: str | None
    detail: Mapping[str, Any]


def erased_reason(job: int) -> str:
    """The reason an erased message keeps (and its ``erased`` audit event shows)."""
    return f"erased at its subject's request (erasure {job})"


def consent_detail(record: ConsentRecord) -> dict[str, Any]:
    """A ``consent`` audit event's detail: whose (by id), which purpose, given or not, how."""
    return {
        "subject": record.subject,
        "purpose": record.purpose,
        "granted": record.granted,
        "source": record.source,
        "by": record.by,
    }
