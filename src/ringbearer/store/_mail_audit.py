"""What the deliverability role keeps and audits, built the same way for either store.

An address is personal data: the audit log never holds one in clear. It names
an address by :func:`address_hash`, a short SHA-256 prefix of its normalised
form, which an operator's tools compute from the address they are given to
find its history. ``mail_events`` keeps the address itself (normalised): the
soft-bounce rule counts by it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

from ..deliverability import (
    EventRecord,
    MatchedEvent,
    ProviderEvent,
    Suppression,
    normalise_address,
)
from ._safe import PROVIDER_ID_MAX, safe_event, safe_text

ADDRESS_HASH_CHARS = 12


def address_hash(address: str) -> str:
    """The name the audit log gives an address: a short SHA-256 prefix of its normal form."""
    digest = hashlib.sha256(normalise_address(address).encode("utf-8", "backslashreplace"))
    return digest.hexdigest()[:ADDRESS_HASH_CHARS]


def provider_ids(provider_id: str) -> tuple[str, str]:
    """Both forms of a provider's message id: Mailgun answers ``<x@d>``, its events say ``x@d``."""
    if len(provider_id) > 1 and provider_id.startswith("<") and provider_id.endswith(">"):
        return provider_id, provider_id[1:-1]
    return provider_id, f"<{provider_id}>"


@attrs.frozen
class KeptEvent:
    """One ``mail_events`` row: a provider event as kept, with what its message tells of it."""

    at: float
    source: str
    event_id: str
    event: str
    channel: str
    message_id: int | None
    integration: str | None
    domain: str | None
    address: str | None  # normalised: the event's, else its message's first recipient
    detail: dict[str, Any]


def kept(matched: MatchedEvent) -> KeptEvent:
    """The ``mail_events`` row of a matched event."""
    e, m = matched.event, matched.message
    address = e.address if e.address is not None else None if m is None else m.recipient
    return KeptEvent(
        at=e.at,
        source=e.source,
        event_id=e.event_id,
        event=e.type.value,
        channel=e.channel.value,
        message_id=None if m is None else m.message_id,
        integration=None if m is None else m.integration,
        domain=None if m is None else m.domain,
        address=None if address is None else normalise_address(address),
        detail=_kept_detail(e),
    )


def _kept_detail(e: ProviderEvent) -> dict[str, Any]:
    found = {"provider_id": e.provider_id, "key": e.key, "category": e.category}
    return {**{k: v for k, v in found.items() if v is not None}, **e.detail}


def provider_event_detail(e: ProviderEvent) -> dict[str, Any]:
    """A ``provider_event`` audit event's detail: which event, never whose address."""
    return {
        "event": e.type.value,
        "source": e.source,
        "event_id": e.event_id,
        "provider_id": e.provider_id,
    }


def suppressed_detail(s: Suppression) -> dict[str, Any]:
    """A ``suppressed`` audit event's detail: who and why, the address only as its hash."""
    return {
        "scope": s.scope,
        "reason": s.reason.value,
        "by": s.by,
        "note": s.note,
        "until": s.until,
        "address_hash": address_hash(s.address),
    }


def unsuppressed_detail(s: Suppression, by: str, note: str) -> dict[str, Any]:
    """An ``unsuppressed`` audit event's detail: what was removed, by whom and why."""
    return {
        "scope": s.scope,
        "reason": s.reason.value,
        "by": by,
        "note": note,
        "address_hash": address_hash(s.address),
    }


def released_detail(key: str, by: str) -> dict[str, Any]:
    """A ``released`` audit event's detail: the hold that ended, and who ended it."""
    return {"key": key, "by": by}


def stored_suppression(s: Suppression) -> Suppression:
    """A suppression as kept: its address normalised, its texts ones a store can hold."""
    return attrs.evolve(
        s,
        address=safe_text(normalise_address(s.address), PROVIDER_ID_MAX),
        scope=safe_text(s.scope, PROVIDER_ID_MAX),
        by=safe_text(s.by, PROVIDER_ID_MAX),
        note=safe_text(s.note),
    )


def stored_record(record: EventRecord, now: float) -> EventRecord:
    """An event record as kept: its event and suppressions as a store can hold them."""
    matched = record.matched
    event = safe_event(matched.event, now)
    if event is not matched.event:
        matched = attrs.evolve(matched, event=event)
    suppressions = tuple(stored_suppression(s) for s in record.suppressions)
    return EventRecord(matched, suppressions)
