"""Deliverability, wired: the parts built from ``[deliverability]`` and ``[webhooks]``.

Two steps, because the parts depend on each other in a fixed order: the
submit side (the suppression book, the caps, unsubscribe tokens) exists before
the submit handler, which the alert manager sends through; the reputation
guard raises alerts, so it comes after the alert manager, and the gate, the
ingest and the unsubscriber after it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
from prometheus_client import CollectorRegistry

from ._config import Config, resolve_secret
from ._journal import Journal
from ._logging import fields
from ._secrets import Secret
from .deliverability import normalise_address
from .deliverability._book import SuppressionBook
from .deliverability._caps import FrequencyCaps
from .deliverability._gate import Gate
from .deliverability._guard import AlertSink, ReputationGuard
from .deliverability._ingest import Ingest, MailEventHook, Unsubscriber
from .deliverability._intake import IntakeRules
from .deliverability._metrics import DeliverabilityMetrics
from .deliverability._unsubscribe import (
    SANDBOX_SECRET,
    UnsubscribeTokens,
    list_unsubscribe_headers,
)
from .store import Store

log = logging.getLogger("ringbearer.deliverability")
WallClock = Callable[[], float]


@attrs.define(eq=False)
class PublicAddress:
    """Where the public listener is reached from outside, once known (it may bind port 0)."""

    url: str | None = None

    def base(self) -> str | None:
        return self.url

    def webhook(self, integration: str) -> str | None:
        return None if self.url is None else f"{self.url.rstrip('/')}/webhooks/{integration}"


@attrs.frozen
class IntakeSide:
    """What exists before the submit handler: the book, the caps, the tokens, the rules."""

    book: SuppressionBook
    caps: FrequencyCaps
    tokens: UnsubscribeTokens
    metrics: DeliverabilityMetrics
    public: PublicAddress
    rules: IntakeRules

    @classmethod
    async def load(
        cls,
        config: Config,
        store: Store,
        wall: WallClock,
        registry: CollectorRegistry,
        name: Callable[[str], str] = normalise_address,
    ) -> IntakeSide:
        """``name``: an address as the book and the store keep it (with the vault, its
        subject id)."""
        settings, now = config.deliverability, wall()
        book = await SuppressionBook.load(store, settings.suppression, now)
        caps = await FrequencyCaps.load(settings.caps, store, now)
        tokens = UnsubscribeTokens(_token_secret(config))
        metrics = DeliverabilityMetrics(registry)
        public = PublicAddress(config.webhooks.public_url or None)
        rules = IntakeRules(
            settings, book, tokens, public.base, wall, metrics, list_unsubscribe_headers, name
        )
        if settings.unsubscribe.categories and not (config.webhooks.enabled or public.url):
            log.warning(
                "marketing email will carry no one-click unsubscribe: [webhooks] is off",
                extra=fields(categories=",".join(settings.unsubscribe.categories)),
            )
        log.info("suppression list loaded", extra=fields(addresses=len(book)))
        return cls(book, caps, tokens, metrics, public, rules)


@attrs.frozen
class EventSide:
    """What the guard, the gate, the listener and the operator commands use."""

    guard: ReputationGuard
    gate: Gate
    ingest: Ingest
    unsubscriber: Unsubscriber

    @classmethod
    async def load(
        cls,
        config: Config,
        intake: IntakeSide,
        store: Store,
        journal: Journal,
        alerts: AlertSink,
        wall: WallClock,
        name: Callable[[str], str] = normalise_address,
        on_unsubscribed: Callable[[str, str], Awaitable[None]] | None = None,
        on_events: MailEventHook | None = None,
        *,
        guard_reads_store: bool = False,
    ) -> EventSide:
        """``guard_reads_store``: on a shared store the guard counts every node's events,
        read from the store, not those this node's ingest keeps."""
        settings = config.deliverability
        guard = await ReputationGuard.load(
            settings.reputation, store, journal, alerts, wall, intake.metrics
        )
        gate = Gate(intake.book, guard, intake.caps, settings.default_category, intake.metrics)
        ingest = Ingest(
            store, intake.book, guard, settings.suppression, wall, intake.metrics, name,
            on_events, counts=not guard_reads_store,
        )  # fmt: skip
        unsubscriber = Unsubscriber(intake.book, wall, intake.metrics, name, on_unsubscribed)
        return cls(guard, gate, ingest, unsubscriber)


def _token_secret(config: Config) -> Secret:
    """The key that signs unsubscribe links; the config check requires one outside the
    sandbox when the listener is on (the stand-in is public: anyone could forge with it)."""
    ref = config.deliverability.unsubscribe.secret
    if ref is None:
        return SANDBOX_SECRET
    return resolve_secret(ref, sandbox=config.sandbox.enabled)
