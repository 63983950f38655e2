"""An alert as the store keeps it: where its escalation stands, so a restart neither
forgets it nor pages an acknowledged cause again (see ``ringbearer._alerting``)."""

from __future__ import annotations

import attrs

from ._safe import safe_text


def storable(text: str) -> str:
    """``text`` as a store can hold it (see ``_safe``): summaries quote providers' errors."""
    return safe_text(text)


def _storable_chain(chain: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(storable(target) for target in chain)


def _storable_or_none(text: str | None) -> str | None:
    return None if text is None else storable(text)


@attrs.frozen
class SentNotice:
    """The latest notification to one channel: the chain's index, its message, when."""

    level: int
    message_id: int
    at: float


@attrs.frozen
class AlertRecord:
    """One alert, open or resolved; ``sent`` is ordered by level."""

    id: int
    key: str = attrs.field(converter=storable)  # its cause: ``breaker_open:resend``
    severity: str = attrs.field(converter=storable)
    summary: str = attrs.field(converter=storable)
    opened_at: float
    chain: tuple[str, ...] = attrs.field(converter=_storable_chain)  # in force when raised
    escalated_at: float
    level: int = 0  # the furthest channel of the chain notified
    sent: tuple[SentNotice, ...] = ()
    last_sent_at: float = 0.0
    external: bool = False  # its cause was found elsewhere (a failed preflight)
    acked_by: str | None = attrs.field(default=None, converter=_storable_or_none)
    acked_at: float | None = None
    resolved_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
