"""The reputation guard: complaint and bounce rates per sending domain, its pauses and resumes."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import prometheus_client
import trio

from ringbearer._audit_kinds import EventKind
from ringbearer._delivery import Priority
from ringbearer._journal import Journal
from ringbearer.control._replies import Severity
from ringbearer.deliverability import (
    DeliverabilityMetrics,
    EventRecord,
    EventType,
    MailEventRow,
    MatchedEvent,
    MessageFacts,
    ProviderEvent,
    ReputationGuard,
)
from ringbearer.deliverability._guard import BUCKETS, GUARD, GuardStore
from ringbearer.deliverability._settings import ReputationSettings
from ringbearer.store import MemoryStore, NewMessage, Settle, SettleKind

T0 = 1_700_000_000.0
DOMAIN = "mail.example.com"
HOLD = f"domain:{DOMAIN}"
PAUSED, WARNING = f"reputation_paused:{DOMAIN}", f"reputation_warning:{DOMAIN}"
SETTINGS = ReputationSettings()
_ids = itertools.count()


def wall() -> float:
    return T0 + trio.current_time()


@attrs.define
class Alerts:
    """The AlertManager's two calls, kept as conditions are (level-triggered)."""

    open: dict[str, tuple[Severity, str]] = attrs.Factory(dict)

    def found(self, key: str, severity: Severity, summary: str) -> None:
        self.open[key] = (severity, summary)

    def cleared(self, key: str) -> None:
        self.open.pop(key, None)


async def guard_on(
    store: MemoryStore, alerts: Alerts | None = None, **settings: Any
) -> ReputationGuard:
    checked: GuardStore = store  # the store's roles are what the guard asks for
    return await ReputationGuard.load(
        attrs.evolve(SETTINGS, **settings), checked, Journal(store, wall), alerts or Alerts(), wall
    )


def rows(event: EventType, count: int, domain: str = DOMAIN) -> list[MailEventRow]:
    return [MailEventRow(wall(), event, "resend", domain, None) for _ in range(count)]


def burst(guard: ReputationGuard, delivered: int, complaints: int) -> None:
    guard.note(rows(EventType.DELIVERED, delivered) + rows(EventType.COMPLAINED, complaints))


async def keep(store: MemoryStore, event: EventType, count: int) -> None:
    """Kept by the store as the ingest keeps them: what a restarted guard reads back."""
    facts = MessageFacts(1, "email", "resend", "marketing", "a@b.example", DOMAIN, "normal")
    records = [
        EventRecord(
            MatchedEvent(ProviderEvent("resend", f"ev-{next(_ids)}", event, wall()), facts, False)
        )
        for _ in range(count)
    ]
    assert all(await store.commit_events(records))


async def held_mail(store: MemoryStore, count: int) -> list[int]:
    """Marketing messages of the domain, claimed and held under its pause as the gate holds."""
    new = NewMessage("email", {}, category="marketing", recipient="a@b.example", domain=DOMAIN)
    await store.submit([attrs.evolve(new, idempotency_key=f"k{next(_ids)}") for _ in range(count)])
    claimed = await store.claim("email", count)
    settles = [
        Settle(c.id, "email", SettleKind.HELD, "resend", 0, wall(), held=HOLD) for c in claimed
    ]
    await store.record(settles)
    return [c.id for c in claimed]


def kinds(store: MemoryStore, kind: EventKind) -> list[dict[str, object]]:
    return [e.detail or {} for e in store.event_log if e.kind == kind.value]


async def test_a_complaint_burst_pauses_marketing_and_bulk(autojump_clock: object) -> None:
    """1,000 delivered and 4 complaints (0.4% > 0.3%): marketing and bulk wait; transactional
    and critical mail goes on; an alert, an audit event and a durable pause."""
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    burst(guard, 1000, 4)
    await guard.evaluate(wall())
    assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert guard.is_held(DOMAIN, "transactional", Priority.BULK)
    assert not guard.is_held(DOMAIN, "transactional", Priority.NORMAL)
    assert not guard.is_held(DOMAIN, "marketing", Priority.CRITICAL)
    assert not guard.is_held("other.example.com", "marketing", Priority.NORMAL)
    assert not guard.is_held(None, "marketing", Priority.BULK)
    assert alerts.open[PAUSED][0] is Severity.CRITICAL
    assert "4/1000" in alerts.open[PAUSED][1]
    assert WARNING not in alerts.open
    assert HOLD in await store.paused()
    (paused,) = kinds(store, EventKind.REPUTATION_PAUSED)
    assert paused["domain"] == DOMAIN and paused["complaints"] == 4
    (standing,) = guard.domains(wall())
    assert (standing.state, standing.delivered, standing.complaints) == ("paused", 1000, 4)
    assert standing.complaint_rate == 0.004 and standing.paused_since == wall()


async def test_two_complaints_in_a_thousand_only_warn(autojump_clock: object) -> None:
    """0.2%: over complaint_warn, under complaint_pause: a warning alert, nothing held; it
    clears once more delivered mail brings the rate down."""
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    burst(guard, 1000, 2)
    await guard.evaluate(wall())
    assert not guard.is_held(DOMAIN, "marketing", Priority.BULK)
    assert alerts.open[WARNING][0] is Severity.WARNING
    assert PAUSED not in alerts.open
    assert guard.domains(wall())[0].state == "warning"
    assert kinds(store, EventKind.REPUTATION_PAUSED) == []
    burst(guard, 1000, 0)
    await guard.evaluate(wall())
    assert alerts.open == {}
    assert guard.domains(wall())[0].state == "ok"


async def test_few_deliveries_are_not_judged(autojump_clock: object) -> None:
    """Five complaints over 99 delivered emails are noise, not a reputation."""
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    burst(guard, 99, 5)
    await guard.evaluate(wall())
    assert not guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert alerts.open == {}


async def test_hard_bounces_over_four_percent_pause(autojump_clock: object) -> None:
    """41 of 1,001 (4.1%) pause; 39 of 999 (3.9%) do not."""
    for bounced, paused in ((39, False), (41, True)):
        guard = await guard_on(MemoryStore(wall))
        guard.note(rows(EventType.DELIVERED, 960) + rows(EventType.HARD_BOUNCE, bounced))
        await guard.evaluate(wall())
        assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL) is paused


async def test_resume_releases_held_mail_and_is_not_undone_by_old_complaints(
    autojump_clock: object,
) -> None:
    """A resume by hand: the held mail is due now, the alert clears, and the complaints that
    paused the domain do not pause it again; new ones after it do."""
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    burst(guard, 1000, 4)
    await guard.evaluate(wall())
    ids = await held_mail(store, 3)
    assert await store.held_keys() == {HOLD: 3}
    assert await guard.resume(DOMAIN.upper(), by="ann") == 3
    assert await store.held_keys() == {}
    assert [m.id for m in await store.claim("email", 10)] == ids
    assert not guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert HOLD not in await store.paused()
    assert alerts.open == {}
    (resumed,) = kinds(store, EventKind.REPUTATION_RESUMED)
    assert resumed == {"domain": DOMAIN, "by": "ann", "released": 3}
    guard.note(rows(EventType.COMPLAINED, 1))  # a late report of the old burst
    await guard.evaluate(wall())
    assert not guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    await trio.sleep(60)
    burst(guard, 1000, 4)
    await guard.evaluate(wall())
    assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)


async def test_a_pause_ends_by_itself_after_the_quiet_time(autojump_clock: object) -> None:
    """Diluted under complaint_warn, the domain stays paused for resume_after_minutes, then
    resumes by itself and its mail is released; a fresh rise restarts the quiet time."""
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    burst(guard, 1000, 4)
    await guard.evaluate(wall())
    await held_mail(store, 2)
    burst(guard, 4000, 0)  # 4 in 5,000: 0.08%
    await guard.evaluate(wall())
    await trio.sleep(59 * 60)
    await guard.evaluate(wall())
    assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    await trio.sleep(60)
    await guard.evaluate(wall())
    assert not guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert await store.held_keys() == {}
    assert PAUSED not in alerts.open
    (resumed,) = kinds(store, EventKind.REPUTATION_RESUMED)
    assert resumed["by"] == GUARD and resumed["released"] == 2


async def test_no_resume_by_itself_when_the_quiet_time_is_zero(autojump_clock: object) -> None:
    guard = await guard_on(MemoryStore(wall), resume_after_minutes=0.0)
    burst(guard, 1000, 4)
    await guard.evaluate(wall())
    burst(guard, 9000, 0)
    for _ in range(3):
        await trio.sleep(24 * 3600)
        await guard.evaluate(wall())
    assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)


async def test_the_duty_resumes_once_the_burst_leaves_the_window(autojump_clock: object) -> None:
    """Run as a duty: the burst's day passes, the window empties, an hour's quiet, resumed."""
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    burst(guard, 1000, 4)
    async with trio.open_nursery() as nursery:
        await nursery.start(guard.run, 30.0)
        await trio.sleep(1)
        assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
        await trio.sleep(24 * 3600)
        assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
        await trio.sleep(3600 + 120)
        assert not guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
        assert alerts.open == {}
        nursery.cancel_scope.cancel()


async def test_a_pause_and_a_resume_survive_a_restart(autojump_clock: object) -> None:
    """Restarted, a paused domain is still paused (and alerted); after a manual resume and a
    restart, the events kept from before the resume still do not count."""
    store = MemoryStore(wall)
    await keep(store, EventType.DELIVERED, 1000)
    await keep(store, EventType.COMPLAINED, 4)
    guard = await guard_on(store)
    await guard.evaluate(wall())
    assert guard.is_held(DOMAIN, "marketing", Priority.NORMAL)
    paused_at = wall()
    await trio.sleep(600)
    alerts = Alerts()
    again = await guard_on(store, alerts)
    assert again.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert again.domains(wall())[0].paused_since == paused_at
    await again.evaluate(wall())
    assert PAUSED in alerts.open
    await again.resume(DOMAIN, by="ann")
    await trio.sleep(600)
    third = await guard_on(store)
    await third.evaluate(wall())
    assert not third.is_held(DOMAIN, "marketing", Priority.NORMAL)
    assert third.domains(wall())[0].complaints == 0


async def test_mail_held_under_no_pause_is_released(autojump_clock: object) -> None:
    """A stop between un-pausing and releasing leaves mail held: the next tick releases it."""
    store = MemoryStore(wall)
    await held_mail(store, 2)
    await store.set_paused(HOLD, True)
    guard = await guard_on(store)
    await guard.step()
    assert await store.held_keys() == {HOLD: 2}  # paused: it waits
    await store.set_paused(HOLD, False)
    guard = await guard_on(store)
    await guard.step()
    assert await store.held_keys() == {}


async def test_a_disabled_guard_holds_nothing(autojump_clock: object) -> None:
    store = MemoryStore(wall)
    await store.set_paused(HOLD, True)
    await held_mail(store, 1)
    guard = await guard_on(store, enabled=False)
    burst(guard, 1000, 40)
    await guard.evaluate(wall())
    assert not guard.is_held(DOMAIN, "marketing", Priority.BULK)
    await guard.step()
    assert await store.held_keys() == {}


async def test_memory_is_bounded_and_idle_domains_go(autojump_clock: object) -> None:
    """Events over three days keep at most a day of buckets; a domain with nothing left in
    its window is forgotten, its alerts and gauge with it."""
    registry = prometheus_client.CollectorRegistry()
    store, alerts = MemoryStore(wall), Alerts()
    guard = await guard_on(store, alerts)
    guard.metrics = DeliverabilityMetrics(registry)
    for _ in range(3 * 24 * 6):
        burst(guard, 10, 0)
        await trio.sleep(600)
        await guard.evaluate(wall())
    window = guard._domains[DOMAIN].window
    assert len(window.buckets) <= BUCKETS + 1
    assert window.totals[0] == sum(b[0] for b in window.buckets.values()) <= 24 * 6 * 10 + 10
    burst(guard, 1000, 5)  # 5 in about 2,450: a warning
    await guard.evaluate(wall())
    gauge = "ringbearer_email_complaint_ratio"
    assert registry.get_sample_value(gauge, {"domain": DOMAIN}) is not None
    assert WARNING in alerts.open
    await trio.sleep(25 * 3600)
    await guard.evaluate(wall())
    assert guard.domains(wall()) == []
    assert alerts.open == {}
    assert registry.get_sample_value(gauge, {"domain": DOMAIN}) is None
