"""The journal: what happens to the daemon, as a log line and an audit event.

Parts report what happened here (a breaker moved, the supervisor restarted an
actor, a control peer was refused) and the journal writes both records, so
each part needs neither the logger's fields nor the store's audit role.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from ._logging import fields
from ._supervisor import SupervisorEvent, SupervisorEventKind
from .control import Refusal
from .resilience import BreakerTransition, HealthState
from .store import AuditLog, Event, EventKind

log = logging.getLogger("ringbearer.daemon")


@attrs.frozen
class Journal:
    store: AuditLog
    wall: Callable[[], float]

    def event(self, kind: EventKind, integration: str | None = None, **detail: object) -> None:
        """Append an audit event (committed with the store's next batch)."""
        self.store.append_event(
            Event(kind=kind.value, at=self.wall(), integration=integration, detail=detail or None)
        )

    def breaker_changed(self, name: str, t: BreakerTransition) -> None:
        log.warning(
            "breaker changed",
            extra=fields(integration=name, old=t.old.value, new=t.new.value, reason=t.reason),
        )
        self.event(
            EventKind.BREAKER_CHANGED, name, old=t.old.value, new=t.new.value, reason=t.reason
        )

    def health_changed(self, name: str, old: HealthState, new: HealthState, reason: str) -> None:
        log.warning(
            "health changed",
            extra=fields(integration=name, old=old.value, new=new.value, reason=reason),
        )
        self.event(EventKind.HEALTH_CHANGED, name, old=old.value, new=new.value, reason=reason)

    def supervisor_event(self, event: SupervisorEvent) -> None:
        restarted = event.kind is SupervisorEventKind.RESTARTED
        log.log(
            logging.INFO if restarted else logging.ERROR,
            event.kind.value.replace("_", " "),
            extra=fields(
                integration=event.integration, restarts=event.restarts, detail=event.detail
            ),
        )
        self.event(
            EventKind(event.kind.value),
            event.integration,
            detail=event.detail,
            restarts=event.restarts,
        )

    def refused(self, refusal: Refusal) -> None:
        """A control connection or request refused: credentials, limits or a stalled peer."""
        peer, reason = refusal.peer, refusal.reason.value
        log.warning(
            "control refused",
            extra=fields(
                reason=reason,
                refused=refusal.what,
                peer=peer.describe(),
                uid=peer.uid,
                detail=refusal.message,
            ),
        )
        self.event(
            EventKind.CONTROL_REFUSED,
            reason=reason,
            uid=peer.uid,
            pid=peer.pid,
            refused=refusal.what,
        )
