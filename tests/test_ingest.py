"""Ingest: provider events kept once, their suppressions in force, counted by guard and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import prometheus_client
import trio

from ringbearer._delivery import Priority
from ringbearer._errors import RingbearerError
from ringbearer._journal import Journal
from ringbearer.deliverability import (
    Channel,
    DeliverabilityMetrics,
    EventType,
    Ingest,
    MailEventRow,
    ProviderEvent,
    Reason,
    ReputationGuard,
    SuppressionBook,
    Unsubscriber,
)
from ringbearer.deliverability._ingest import ONE_CLICK
from ringbearer.deliverability._rules import DAY
from ringbearer.deliverability._settings import ReputationSettings, SuppressionRules
from ringbearer.store import MemoryStore, NewMessage, Settle, SettleKind

T0 = 1_700_000_000.0
ANN = "ann@example.com"
DOMAIN = "example.com"
RULES = SuppressionRules()


def wall() -> float:
    return T0 + trio.current_time()


@attrs.define
class Alerts:
    open: set[str] = attrs.Factory(set)

    def found(self, key: str, severity: object, summary: str) -> None:
        self.open.add(key)

    def cleared(self, key: str) -> None:
        self.open.discard(key)


@attrs.frozen
class Rig:
    ingest: Ingest
    store: MemoryStore
    book: SuppressionBook
    guard: ReputationGuard
    metrics: DeliverabilityMetrics
    alerts: Alerts

    def counted(self, integration: str, event: EventType) -> float:
        labels = {"integration": integration, "event": event.value}
        found = self.metrics.registry.get_sample_value("ringbearer_email_events_total", labels)
        return found or 0.0

    async def state(self) -> tuple[int, list[object]]:
        """What an ingest may change: the audit log's length and the suppressions kept."""
        return len(self.store.event_log), list(await self.store.suppressions())


async def rig() -> Rig:
    store, alerts = MemoryStore(wall), Alerts()
    metrics = DeliverabilityMetrics(prometheus_client.CollectorRegistry())
    book = await SuppressionBook.load(store, RULES, wall())
    guard = await ReputationGuard.load(
        ReputationSettings(), store, Journal(store, wall), alerts, wall, metrics
    )
    return Rig(
        Ingest(store, book, guard, RULES, wall, metrics), store, book, guard, metrics, alerts
    )


async def sent(store: MemoryStore, recipient: str = ANN, *, provider_id: str = "re_1") -> int:
    """A marketing email delivered to its provider, which answered ``provider_id``."""
    new = NewMessage(
        "email", {}, category="marketing", recipient=recipient, domain=DOMAIN,
        idempotency_key=provider_id,
    )  # fmt: skip
    await store.submit([new])
    (claimed,) = await store.claim("email", 1)
    done = Settle(
        claimed.id, "email", SettleKind.DELIVERED, "resend", 1, wall(), provider_id=provider_id
    )
    await store.record([done])
    return claimed.id


def event(
    type: EventType, event_id: str, *, provider_id: str | None = "re_1", **changes: Any
) -> ProviderEvent:
    return attrs.evolve(
        ProviderEvent("resend", event_id, type, wall(), provider_id=provider_id), **changes
    )


async def test_a_hard_bounce_suppresses_its_recipient(autojump_clock: object) -> None:
    """Matched by the provider's id: the recipient is suppressed, in the store and at once."""
    r = await rig()
    await sent(r.store)
    assert await r.ingest.ingest([event(EventType.HARD_BOUNCE, "ev-1")]) == [True]
    (kept,) = await r.store.suppressions(address=ANN)
    assert (kept.reason, kept.scope, kept.by) == (Reason.HARD_BOUNCE, "*", "resend")
    found = r.book.blocking(ANN, "transactional", Priority.NORMAL, wall())
    assert found is not None and found.reason is Reason.HARD_BOUNCE
    assert r.counted("resend", EventType.HARD_BOUNCE) == 1.0


async def test_a_second_ingest_of_the_same_events_changes_nothing(autojump_clock: object) -> None:
    """A provider's redelivery: every event comes back False, and nothing is written or
    counted again."""
    r = await rig()
    await sent(r.store)
    events = [
        event(EventType.DELIVERED, "ev-1"),
        event(EventType.COMPLAINED, "ev-2"),
        event(EventType.OPENED, "ev-3"),
    ]
    assert await r.ingest.ingest(events) == [True, True, True]
    before = await r.state()
    await trio.sleep(60)
    assert await r.ingest.ingest(events) == [False, False, False]
    assert await r.state() == before
    assert r.counted("resend", EventType.COMPLAINED) == 1.0
    assert r.guard.domains(wall())[0].complaints == 1


async def test_a_repeat_within_one_batch_is_kept_once(autojump_clock: object) -> None:
    r = await rig()
    await sent(r.store)
    bounce = event(EventType.HARD_BOUNCE, "ev-1")
    assert await r.ingest.ingest([bounce, bounce]) == [True, False]
    assert r.counted("resend", EventType.HARD_BOUNCE) == 1.0
    assert len(await r.store.suppressions()) == 1


async def test_soft_bounces_hold_the_address_across_batches(autojump_clock: object) -> None:
    """The second soft bounce within 30 days holds the address for 3 days."""
    r = await rig()
    await sent(r.store)
    assert await r.ingest.ingest([event(EventType.SOFT_BOUNCE, "ev-1", address=ANN)]) == [True]
    assert await r.store.suppressions() == []
    await trio.sleep(DAY)
    await r.ingest.ingest([event(EventType.SOFT_BOUNCE, "ev-2", address=ANN)])
    (hold,) = await r.store.suppressions()
    assert (hold.reason, hold.until) == (Reason.SOFT_BOUNCE, wall() + 3 * DAY)
    assert r.book.blocking(ANN, "transactional", Priority.CRITICAL, wall()) is not None
    await trio.sleep(3 * DAY)
    assert r.book.blocking(ANN, "transactional", Priority.CRITICAL, wall()) is None


async def test_soft_bounces_in_one_batch_count_together(autojump_clock: object) -> None:
    r = await rig()
    await sent(r.store)
    soft = [event(EventType.SOFT_BOUNCE, f"ev-{n}", address=ANN) for n in (1, 2)]
    assert await r.ingest.ingest(soft) == [True, True]
    (hold,) = await r.store.suppressions()
    assert hold.reason is Reason.SOFT_BOUNCE


async def test_an_unmatched_event_is_kept_and_suppresses_its_address(
    autojump_clock: object,
) -> None:
    """No message of ours: kept all the same; its own address is suppressed; with no address,
    nothing is; neither counts for a domain."""
    r = await rig()
    complaint = event(EventType.COMPLAINED, "ev-1", provider_id="unknown", address="Bob@X.example")
    nobody = event(EventType.HARD_BOUNCE, "ev-2", provider_id="unknown")
    assert await r.ingest.ingest([complaint, nobody]) == [True, True]
    (kept,) = await r.store.suppressions()
    assert (kept.address, kept.reason) == ("bob@x.example", Reason.COMPLAINT)
    assert r.guard.domains(wall()) == []


async def test_email_events_feed_the_reputation_guard(autojump_clock: object) -> None:
    """1,000 delivered and 4 complaints through the ingest pause the sending domain."""
    r = await rig()
    await sent(r.store)
    delivered = [event(EventType.DELIVERED, f"d-{n}") for n in range(1000)]
    assert all(await r.ingest.ingest(delivered))
    complaints = [event(EventType.COMPLAINED, f"c-{n}") for n in range(4)]
    assert all(await r.ingest.ingest(complaints))
    assert r.guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert f"reputation_paused:{DOMAIN}" in r.alerts.open


async def test_sms_events_are_counted_but_not_judged(autojump_clock: object) -> None:
    r = await rig()
    await sent(r.store, provider_id="SM1")
    sms = event(EventType.UNDELIVERED, "ev-1", provider_id="SM1", channel=Channel.SMS)
    assert await r.ingest.ingest([attrs.evolve(sms, source="twilio")]) == [True]
    assert r.counted("twilio", EventType.UNDELIVERED) == 1.0
    assert r.guard.domains(wall()) == []
    assert await r.ingest.ingest([]) == []


async def test_a_guard_that_cannot_judge_does_not_fail_the_ingest(autojump_clock: object) -> None:
    """The events are committed, which is what the provider is answered for; the guard's
    next tick judges again."""

    @attrs.define
    class Failing:
        noted: list[MailEventRow] = attrs.Factory(list)

        def note(self, rows: Sequence[MailEventRow]) -> None:
            self.noted.extend(rows)

        async def evaluate(self, now: float) -> None:
            raise RingbearerError("store unavailable")

    r = await rig()
    await sent(r.store)
    failing = Failing()
    ingest = attrs.evolve(r.ingest, guard=failing)
    assert await ingest.ingest([event(EventType.DELIVERED, "ev-1")]) == [True]
    assert len(failing.noted) == 1


async def test_a_one_click_unsubscribe_is_durable_and_idempotent(autojump_clock: object) -> None:
    """Suppressed for its category when it returns; pressed twice, written once."""
    r = await rig()
    unsubscriber = Unsubscriber(r.book, wall, r.metrics)
    await unsubscriber.unsubscribe(" Ann@Example.com", "marketing", by="one-click")
    (kept,) = await r.store.suppressions(address=ANN)
    assert (kept.scope, kept.reason, kept.by) == ("marketing", Reason.UNSUBSCRIBE, "one-click")
    assert r.book.blocking(ANN, "marketing", Priority.NORMAL, wall()) is not None
    assert r.book.blocking(ANN, "transactional", Priority.NORMAL, wall()) is None
    before = await r.state()
    await unsubscriber.unsubscribe(ANN, "marketing", by="one-click")
    assert await r.state() == before
    assert r.counted(ONE_CLICK, EventType.UNSUBSCRIBED) == 1.0


async def test_on_a_shared_store_the_guard_is_not_fed_by_the_ingest(
    autojump_clock: object,
) -> None:
    """``counts=False``: the events and suppressions are kept and the book updated, but
    the guard counts nothing from here (it reads every node's events from the store)."""
    r = await rig()
    ingest = attrs.evolve(r.ingest, counts=False)
    await sent(r.store)
    complaints = [event(EventType.COMPLAINED, f"c-{n}") for n in range(4)]
    assert await ingest.ingest(complaints) == [True] * 4
    assert r.book.blocking(ANN, "marketing", Priority.NORMAL, wall()) is not None
    assert r.guard.domains(wall()) == []
    assert r.counted("resend", EventType.COMPLAINED) == 4.0
