"""Retention: payloads of delivered messages and dead letters are shredded once old enough.

The rows stay (their audit history holds ids and hashes only); the payload is
replaced, a ``shredded`` audit event counts each sweep, and the WAL is
truncated after one that shredded anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from .._audit_kinds import EventKind
from ..store import AuditLog, Event, Privacy
from ._settings import PrivacySettings

log = logging.getLogger("ringbearer.privacy")
DAY = 86_400.0
BATCH = 1000  # payloads a transaction: the writer's other work waits no longer than this


class RetentionStore(Privacy, AuditLog, Protocol):
    """The store, as retention uses it."""


@attrs.frozen
class Retention:
    store: RetentionStore
    settings: PrivacySettings
    wall: Callable[[], float]

    async def sweep(self) -> int:
        """Shred every payload past its time; how many."""
        now, total = self.wall(), 0
        delivered_before = now - self.settings.keep_delivered_days * DAY
        dead_before = now - self.settings.keep_dead_days * DAY
        while True:
            count = await self.store.shred_payloads(
                delivered_before=delivered_before, dead_before=dead_before, limit=BATCH
            )
            total += count
            if count < BATCH:
                break
        if total:
            detail = {"payloads": total, "delivered_before": delivered_before,
                      "dead_before": dead_before}  # fmt: skip
            self.store.append_event(Event(EventKind.SHREDDED.value, now, detail=detail))
            await self.store.scrub()
            log.info("retention: %d payloads shredded", total)
        return total

    async def run(self) -> None:
        """Sweep now and then every ``retention_every_minutes``."""
        while True:
            await self.sweep()
            await trio.sleep(self.settings.retention_every_minutes * 60)
