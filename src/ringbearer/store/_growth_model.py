"""What the store keeps for growth: versioned templates, growth events, experiments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class TemplateRecord:
    """One version of a template: its parts (a payload field -> its source), as put."""

    name: str
    version: int  # 1, 2, ...: a put makes the next one; a version never changes
    parts: Mapping[str, str]
    created_at: float  # wall clock
    by: str


@attrs.frozen
class GrowthRow:
    """One growth event as kept (append-only), its personal fields pseudonymised or sealed."""

    id: int  # ascending in the order kept
    kind: str  # signup | invite_sent | invite_accepted | vendor_booked
    at: float  # the event's own time (Unix seconds)
    body: Mapping[str, Any] = attrs.field(repr=False)  # a JSON object, kept as given
    recorded_at: float  # the store clock when kept


@attrs.frozen
class ExperimentRecord:
    """One phase of an experiment: each put of a name starts its next phase."""

    name: str
    phase: int  # 1, 2, ...
    spec: Mapping[str, Any]  # a JSON object, kept as given
    created_at: float  # the store clock
    by: str
    stopped_at: float | None = None
    stop_reason: str | None = None


@attrs.frozen
class Exposure:
    """A message that shows a unit its variant; exposed once the message is delivered."""

    message_id: int
    experiment: str
    phase: int
    unit: str  # an opaque unit id (a subject id)
    variant: int
    exposed_at: float | None  # None until the message is delivered


@attrs.frozen
class VariantCounts:
    """One variant of a phase: distinct units assigned, exposed and converted."""

    variant: int
    assigned: int
    exposed: int  # with at least one exposure whose message was delivered
    converted: int


def json_object(value: object, field: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a JSON object to be); a ValueError naming ``field`` if not."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a JSON object")
    return value


def not_json(field: str, exc: Exception) -> ValueError:
    """The error for a ``field`` that holds something JSON cannot (its value is not echoed)."""
    return ValueError(f"{field} holds a value JSON cannot represent ({type(exc).__name__})")
