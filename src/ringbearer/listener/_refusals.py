"""A refused delivery leaves a trace: an audit event and a log line, never a person's data.

Forged, stale, garbled and replayed webhooks, and unsubscribe links we did
not sign, change nothing; what they leave is a ``webhook_refused`` audit
event naming the source and why, so an operator can tell an attack, a
misconfigured secret and a provider's clock apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from .._audit_kinds import EventKind
from .._logging import fields
from ..store import AuditLog, Event
from ._http import Response
from ._signatures import Refused

log = logging.getLogger("ringbearer.webhooks")


@attrs.frozen
class Refusals:
    """Records each refusal, and gives the 401 that answers it."""

    audit: AuditLog
    wall: Callable[[], float]

    def record(self, source: str, refused: Refused, *, integration: str | None = None) -> None:
        """Audit and log one refusal of a delivery to ``source``."""
        self.audit.append_event(
            Event(
                kind=EventKind.WEBHOOK_REFUSED,
                at=self.wall(),
                integration=integration,
                detail={"source": source, "why": refused.why.value},
            )
        )
        log.warning(
            "webhook refused",
            extra=fields(source=source, why=refused.why.value, detail=refused.detail),
        )

    def unauthorised(self, source: str, refused: Refused, *, integration: str | None) -> Response:
        """Record the refusal and answer 401 (the delivery changed nothing)."""
        self.record(source, refused, integration=integration)
        return Response.text(401, f"refused: {refused.why.value}")
