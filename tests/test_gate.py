"""The gate: suppressed mail is dropped, a paused domain's held, a capped recipient's deferred."""

from __future__ import annotations

from typing import Literal

import attrs
import prometheus_client
import pytest
import trio

from ringbearer._converter import PositiveFloat, PositiveInt
from ringbearer._delivery import Priority
from ringbearer._dispatcher import Gate as DispatcherGate
from ringbearer._journal import Journal
from ringbearer.deliverability import (
    PASS,
    Defer,
    DeliverabilityMetrics,
    Drop,
    EventType,
    FrequencyCaps,
    Gate,
    Hold,
    MailEventRow,
    Reason,
    ReputationGuard,
    Suppression,
    SuppressionBook,
)
from ringbearer.deliverability._caps import DAY
from ringbearer.deliverability._settings import FrequencyCap, ReputationSettings, SuppressionRules
from ringbearer.store import Claimed, MemoryStore

T0 = 1_700_000_000.0
ANN = "ann@example.com"
DOMAIN = "example.com"


def cap(
    limit: int, per_days: float, over: Literal["wait", "drop"] = "wait", category: str = "marketing"
) -> FrequencyCap:
    return FrequencyCap(category, PositiveInt(limit), PositiveFloat(per_days), over)


def wall() -> float:
    return T0 + trio.current_time()


@attrs.define
class Alerts:
    def found(self, key: str, severity: object, summary: str) -> None:
        pass

    def cleared(self, key: str) -> None:
        pass


@attrs.frozen
class Rig:
    gate: Gate
    store: MemoryStore
    book: SuppressionBook
    guard: ReputationGuard
    registry: prometheus_client.CollectorRegistry

    def dropped(self, reason: str) -> float | None:
        return self.registry.get_sample_value("ringbearer_suppressed_total", {"reason": reason})


async def rig(*caps: FrequencyCap) -> Rig:
    store, registry = MemoryStore(wall), prometheus_client.CollectorRegistry()
    metrics = DeliverabilityMetrics(registry)
    book = await SuppressionBook.load(store, SuppressionRules(), wall())
    guard = await ReputationGuard.load(
        ReputationSettings(), store, Journal(store, wall), Alerts(), wall
    )
    capped = await FrequencyCaps.load(caps or (FrequencyCap(),), store, wall())
    gate = Gate(book, guard, capped, "transactional", metrics)
    return Rig(gate, store, book, guard, registry)


def email(
    id: int = 1,
    *,
    category: str | None = "marketing",
    priority: Priority = Priority.NORMAL,
    recipient: str | None = ANN,
) -> Claimed:
    return Claimed(
        id, "email", priority, {}, f"k{id}", 0, T0, 0, 0,
        category=category, recipient=recipient, domain=DOMAIN,
    )  # fmt: skip


async def pause_domain(guard: ReputationGuard) -> None:
    delivered = [MailEventRow(wall(), EventType.DELIVERED, "resend", DOMAIN, None)] * 1000
    guard.note(delivered + [MailEventRow(wall(), EventType.COMPLAINED, "resend", DOMAIN, None)] * 4)
    await guard.evaluate(wall())


async def test_the_gate_fits_the_dispatcher(autojump_clock: object) -> None:
    """The dispatcher's Gate protocol is what the deliverability gate provides."""
    gate: DispatcherGate = (await rig()).gate
    assert await gate.check(email(), wall()) is PASS


async def test_work_that_is_not_email_always_goes(autojump_clock: object) -> None:
    r = await rig()
    await r.book.add(Suppression(ANN, "*", Reason.MANUAL, wall()))
    await pause_domain(r.guard)
    assert await r.gate.check(email(recipient=None, priority=Priority.BULK), wall()) is PASS


async def test_a_suppressed_recipient_is_dropped_and_counted(autojump_clock: object) -> None:
    """Dropped with the suppression's reason and scope; counted under its reason."""
    r = await rig()
    await r.book.add(Suppression(ANN, "marketing", Reason.UNSUBSCRIBE, wall()))
    verdict = await r.gate.check(email(), wall())
    assert verdict == Drop("suppressed: unsubscribe (marketing)", counted_as="unsubscribe")
    assert r.dropped("unsubscribe") == 1.0
    assert await r.gate.check(email(category="transactional"), wall()) is PASS


async def test_no_category_is_the_default_one(autojump_clock: object) -> None:
    """A message without a category is judged as the default (transactional) one."""
    r = await rig()
    await r.book.add(Suppression(ANN, "*", Reason.COMPLAINT, wall()))
    assert await r.gate.check(email(category=None), wall()) is PASS
    assert isinstance(await r.gate.check(email(category="marketing"), wall()), Drop)


async def test_a_paused_domain_holds_marketing_and_bulk(autojump_clock: object) -> None:
    r = await rig()
    await pause_domain(r.guard)
    verdict = await r.gate.check(email(), wall())
    assert isinstance(verdict, Hold) and verdict.key == f"domain:{DOMAIN}"
    bulk = email(category="transactional", priority=Priority.BULK)
    assert isinstance(await r.gate.check(bulk, wall()), Hold)
    assert await r.gate.check(email(category="transactional"), wall()) is PASS
    assert await r.gate.check(email(priority=Priority.CRITICAL), wall()) is PASS


async def test_the_order_is_suppression_then_pause_then_cap(autojump_clock: object) -> None:
    """All three apply: dropped; no suppression: held; nor a pause: deferred."""
    r = await rig(cap(1, 7.0))
    assert await r.gate.check(email(1), wall()) is PASS  # the cap's one send
    await pause_domain(r.guard)
    await r.book.add(Suppression(ANN, "*", Reason.MANUAL, wall()))
    assert isinstance(await r.gate.check(email(2), wall()), Drop)
    await r.book.remove(ANN, scope=None, by="op")
    assert isinstance(await r.gate.check(email(2), wall()), Hold)
    await r.guard.resume(DOMAIN, by="op")
    assert await r.gate.check(email(2), wall()) == Defer(
        T0 + 7 * DAY,
        "frequency cap: 1 marketing emails in 7 days (limit 1);"
        " waits until 2023-11-21T22:13:20+00:00",
    )


async def test_passing_mail_counts_towards_the_cap(autojump_clock: object) -> None:
    """Three pass, the fourth waits; a retried message passes again without counting twice."""
    r = await rig()
    for n in (1, 2, 3):
        assert await r.gate.check(email(n), wall()) is PASS
    assert await r.gate.check(email(3), wall()) is PASS
    verdict = await r.gate.check(email(4), wall())
    assert isinstance(verdict, Defer) and verdict.until == T0 + 7 * DAY
    await trio.sleep(7 * DAY)
    assert await r.gate.check(email(4), wall()) is PASS


async def test_a_dropping_cap_drops(autojump_clock: object) -> None:
    r = await rig(cap(1, 1.0, "drop"))
    assert await r.gate.check(email(1), wall()) is PASS
    verdict = await r.gate.check(email(2), wall())
    assert verdict == Drop(
        "frequency cap: 1 marketing emails in 1 days (limit 1)", counted_as="frequency_cap"
    )
    assert r.dropped("frequency_cap") == 1.0


@pytest.mark.parametrize("category", ["transactional", "marketing"])
async def test_critical_mail_passes_a_hard_bounce_once_a_day(
    autojump_clock: object, category: str
) -> None:
    """The first critical email goes (its try is kept); the next within 24 hours is dropped."""
    r = await rig()
    await r.book.add(Suppression(ANN, "*", Reason.HARD_BOUNCE, wall(), by="resend"))
    assert isinstance(await r.gate.check(email(1, category=category), wall()), Drop)
    critical = email(2, category=category, priority=Priority.CRITICAL)
    assert await r.gate.check(critical, wall()) is PASS
    (kept,) = await r.store.suppressions(address=ANN)
    assert kept.last_try_at == wall()
    again = email(3, category=category, priority=Priority.CRITICAL)
    assert isinstance(await r.gate.check(again, wall()), Drop)
    await trio.sleep(24 * 3600)
    assert await r.gate.check(again, wall()) is PASS
