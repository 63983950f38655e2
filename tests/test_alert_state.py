"""Alerts survive a restart: open alerts, where their escalation stood, and acknowledgements.

First the alert manager on its own, its state in each store (a restart is a new
manager; for SQLite, the file opened again); then the daemon's core on the
harness, stopped and started again on the same in-memory store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio_asyncio

from ringbearer._actor import ActorSnapshot, ActorState
from ringbearer._alerting import AlertManager
from ringbearer._delivery import Envelope, Outcome, Permanent, Retry, Taken
from ringbearer._duty import Duty
from ringbearer._errors import StoreError
from ringbearer.control import Alerts, AlertsAck, MessageIn
from ringbearer.control._replies import AlertView, Severity
from ringbearer.integrations import FakeAdapter
from ringbearer.resilience import BreakerState, HealthState
from ringbearer.store import (
    AlertRecord,
    AlertState,
    MemoryStore,
    Settle,
    SettleKind,
    SqliteStore,
)

from .harness import Core, running_core, wall
from .test_alerting import Host, manager, run_for

HOUR = 3600.0
Stores = Callable[[Callable[[], float]], AbstractAsyncContextManager[AlertState]]


@attrs.define
class StoredHost(Host):
    """The fake daemon, its alerts in a real store."""

    state: AlertState | None = None
    snaps: list[ActorSnapshot] = attrs.Factory(list)
    refuse: bool = False  # the store refuses writes

    async def save_alert(self, alert: AlertRecord) -> None:
        assert self.state is not None
        if self.refuse:
            raise StoreError("store error: disk I/O error")
        await self.state.save_alert(alert)

    async def open_alerts(self) -> list[AlertRecord]:
        assert self.state is not None
        return await self.state.open_alerts()

    async def last_alert_id(self) -> int:
        assert self.state is not None
        return await self.state.last_alert_id()

    def snapshots(self) -> list[ActorSnapshot]:
        return self.snaps


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    """Opens the store a run keeps its alerts in: the same one again for each run."""
    memory: list[MemoryStore] = []

    @asynccontextmanager
    async def opened(clock: Callable[[], float]) -> AsyncIterator[AlertState]:
        if request.param == "memory":
            memory[:] = memory or [MemoryStore(clock)]
            yield memory[0]
            return
        async with SqliteStore.open(tmp_path / "rb.db", clock=clock) as db:
            yield db

    return opened


async def restarted(host: StoredHost, **settings: Any) -> AlertManager:
    """A new alert manager that took up what the store kept."""
    alerts = manager(host, **settings)
    await alerts.restore()
    return alerts


def dead_letter(message_id: int, target: str) -> Settle:
    return Settle(message_id, target, SettleKind.DEAD_LETTERED, target, 1, 0.0, reason="422")


def snapshot(name: str, **changes: Any) -> ActorSnapshot:
    """An actor as the alert manager reads it: running, closed, healthy, idle."""
    base = ActorSnapshot(
        name, "fake", ActorState.RUNNING, False, BreakerState.CLOSED, False, 0.0,
        HealthState.HEALTHY, 1.0, 0.0, 0.0, 0.0, 1, 0, 0, 0, 0, 0, 0, None,
    )  # fmt: skip
    return attrs.evolve(base, **changes)


# -- the alert manager, its state in each store ----------------------------------------------


async def test_an_acknowledged_alert_is_not_paged_again_after_a_restart(stores: Stores) -> None:
    """Acked, stopped, started: no notification for hours; listed acked; cleared, it resolves."""
    host = StoredHost()
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host, chain=("slack", "sms"), escalate_after_seconds=60.0)
            alerts.found("preflight", Severity.CRITICAL, "preflight: not ready (resend)")
            await alerts.tick()
            view = await alerts.ack(1, by="operator")
        sent = len(host.sent)
        async with stores(host.wall) as host.state:
            again = await restarted(host, chain=("slack", "sms"), escalate_after_seconds=60.0)
            await run_for(again, host, 4 * HOUR)
            assert len(host.sent) == sent  # no repeat, no escalation to sms
            assert again.views() == [view]
            again.cleared("preflight")  # the preflight passes
            await run_for(again, host, 5)
            assert again.views() == []
            assert await host.state.open_alerts() == []
    (resolved,) = host.sent[sent:]
    assert (resolved.target, resolved.payload["text"][:21]) == ("slack", "[ringbearer RESOLVED]")


async def test_an_unacknowledged_alert_goes_on_where_it_stood(stores: Stores) -> None:
    """Its next step is the next channel, no sooner than its escalation time; ids go on."""
    host = StoredHost()
    settings: dict[str, Any] = {
        "chain": ("slack", "sms"),
        "escalate_after_seconds": 300.0,
        "repeat_seconds": 1800.0,
    }
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host, **settings)
            alerts.found("preflight", Severity.CRITICAL, "down")
            await alerts.tick()
            raised = host.now
            await run_for(alerts, host, 100)
        host.now += 60  # down for a minute
        async with stores(host.wall) as host.state:
            again = await restarted(host, **settings)
            await run_for(again, host, 135)
            assert [m.target for m in host.sent] == ["slack"]  # not yet: 295 s since raised
            await run_for(again, host, 10)
            assert [m.target for m in host.sent] == ["slack", "sms"]
            assert host.now - raised >= 300
            await run_for(again, host, 1790)
            assert [m.target for m in host.sent] == ["slack", "sms"]
            await run_for(again, host, 10)
            assert [m.target for m in host.sent] == ["slack", "sms", "sms"]  # its repeat
            again.found("boom", Severity.WARNING, "another cause")
            await run_for(again, host, 5)
            assert [v.id for v in again.views()] == [1, 2]


async def test_a_channel_gets_its_full_time_to_deliver_after_a_restart(stores: Stores) -> None:
    """Its message still queued across a long stop: the next channel only after the timeout."""
    host = StoredHost()
    settings: dict[str, Any] = {
        "escalate_after_seconds": 7200.0,
        "repeat_seconds": 7200.0,
        "channel_timeout_seconds": 60.0,
    }
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host, **settings)
            alerts.found("boom", Severity.CRITICAL, "down")
            await alerts.tick()
            host.states[1] = "queued"  # slack has not delivered it
            await run_for(alerts, host, 30)
        host.now += HOUR  # a long stop: longer than the channel's time
        async with stores(host.wall) as host.state:
            again = await restarted(host, **settings)
            await run_for(again, host, 55)
            assert [m.target for m in host.sent] == ["slack"]
            await run_for(again, host, 10)
            assert [m.target for m in host.sent] == ["slack", "sms"]


async def no_step() -> float:
    return 1.0


async def test_conditions_of_the_last_process_resolve_and_a_preflight_verdict_holds(
    stores: Stores,
) -> None:
    """A failing duty or a stall was the last run's; a failed preflight stands till cleared."""
    host = StoredHost()
    duty_key = Duty("mode", step=no_step, alerts=manager(host)).alert_key
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host)
            for key in (duty_key, "stalled:slack", "preflight"):
                alerts.found(key, Severity.CRITICAL, f"{key} holds")
            await alerts.tick()
            for view in alerts.views():
                await alerts.ack(view.id)
        async with stores(host.wall) as host.state:
            again = await restarted(host)
            await run_for(again, host, 5)
            assert [(v.key, v.acked) for v in again.views()] == [("preflight", True)]
            assert [a.key for a in await host.state.open_alerts()] == ["preflight"]


async def test_an_ack_the_store_cannot_keep_is_refused_and_not_taken(stores: Stores) -> None:
    """The store refusing the write: the ack raises, the alert stays unacknowledged and pages."""
    host = StoredHost()
    async with trio_asyncio.open_loop(), stores(host.wall) as host.state:
        alerts = manager(host, chain=("slack",), repeat_seconds=600.0)
        alerts.found("boom", Severity.CRITICAL, "down")
        await alerts.tick()
        host.refuse = True
        with pytest.raises(StoreError, match="disk I/O"):
            await alerts.ack(1)
        assert not await alerts.ack_key("nothing", "pagerduty")
        host.refuse = False
        assert not alerts.views()[0].acked
        assert not any(kind == "alert_acked" for kind, _ in host.events)
        await run_for(alerts, host, 600)
        assert len(host.to("slack")) == 2  # it repeats: it was never acknowledged
        (kept,) = await host.state.open_alerts()
        assert kept.acked_by is None and len(kept.sent) == 1


async def test_a_breaker_still_open_keeps_its_alert_and_a_closed_one_resolves(
    stores: Stores,
) -> None:
    """The breaker open across the restart: the acked alert holds; closed, it resolves."""
    host = StoredHost(snaps=[snapshot("resend", breaker=BreakerState.OPEN)])
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host, breaker_open_seconds=300.0)
            await run_for(alerts, host, 305)
            (view,) = alerts.views()
            assert view.key == "breaker_open:resend"
            await alerts.ack(view.id)
        async with stores(host.wall) as host.state:
            again = await restarted(host, breaker_open_seconds=300.0)
            await run_for(again, host, 2 * HOUR)
            assert [v.key for v in again.views()] == ["breaker_open:resend"]
            assert len(host.sent) == 1
            host.snaps = [snapshot("resend")]
            await run_for(again, host, 5)
            assert again.views() == []


async def test_a_health_alert_holds_until_the_integration_shows_how_it_does(
    stores: Stores,
) -> None:
    """After a restart health starts blank: the alert holds until an attempt settles."""
    host = StoredHost(snaps=[snapshot("sms", health=HealthState.DOWN)])
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host)
            await run_for(alerts, host, 5)
            await alerts.ack(1)
        host.snaps = [snapshot("sms")]  # a new run: healthy, for want of any call
        async with stores(host.wall) as host.state:
            again = await restarted(host)
            await run_for(again, host, HOUR)
            assert [(v.key, v.acked) for v in again.views()] == [("health_down:sms", True)]
            host.snaps = [snapshot("sms", delivered=3)]
            await run_for(again, host, 5)
            assert again.views() == []


async def test_dead_letters_hold_their_alert_across_a_restart_until_the_window_passes(
    stores: Stores,
) -> None:
    """The store's dead letters in the window keep the alert; past the window it resolves."""
    host = StoredHost()
    window: dict[str, Any] = {"dead_letter_window_seconds": 900.0}
    async with trio_asyncio.open_loop():
        async with stores(host.wall) as host.state:
            alerts = manager(host, **window)
            host.dead.append((host.now, "crm"))
            alerts.observe_settles([dead_letter(99, "crm")], host.now)
            await run_for(alerts, host, 5)
            (view,) = alerts.views()
            await alerts.ack(view.id)
        async with stores(host.wall) as host.state:
            again = await restarted(host, **window)
            await run_for(again, host, 600)
            assert [(v.key, v.acked) for v in again.views()] == [("dead_letters:crm", True)]
            assert len(host.sent) == 1
            await run_for(again, host, 400)
            assert again.views() == []
    assert "RESOLVED" in host.sent[-1].payload["text"]


# -- the daemon's core, stopped and started again on the same store ---------------------------

FAKES = """
[daemon]
grace_seconds = 5
[defaults]
lanes = 2
mailbox = 4
[defaults.retry]
initial_seconds = 1
max_seconds = 30
max_attempts = 1000
[defaults.breaker]
window_seconds = 30
minimum_calls = 4
failure_rate = 0.5
open_seconds = 60
half_open_probes = 1
[integrations.resend]
kind = "fake"
[integrations.crm]
kind = "fake"
[integrations.slack]
kind = "fake"
[integrations.sms]
kind = "fake"
[integrations.phone]
kind = "fake"
[alerting]
chain = ["slack", "sms", "phone"]
escalate_after_seconds = 300
repeat_seconds = 900
channel_timeout_seconds = 60
breaker_open_seconds = 0
dead_letter_window_seconds = 1800
deadline_warning_seconds = 600
tick_seconds = 5
phone = "+15558675310"
"""


async def down(env: Envelope) -> Outcome:
    return Retry("HTTP 503", taken=Taken.NO, status=503)


async def refused(env: Envelope) -> Outcome:
    return Permanent("HTTP 422: refused", status=422)


def resend_down(adapters: dict[str, FakeAdapter]) -> None:
    adapters["resend"].behaviour = down


async def open_alerts(core: Core) -> list[AlertView]:
    return (await core.daemon.handle(Alerts())).alerts


async def raised(core: Core, key: str, seconds: float = 600) -> AlertView:
    """Wait (virtual time) for the alert of ``key``."""
    with trio.fail_after(seconds):
        while True:
            found = [a for a in await open_alerts(core) if a.key == key]
            if found:
                return found[0]
            await trio.sleep(1)  # virtual time: alerts come on a tick


def alert_messages(core: Core, alert_id: int) -> list[tuple[str, str]]:
    """(channel, text) of every alert message the channels took that names ``alert_id``."""
    return [
        (name, str(call.payload.get("text") or call.payload.get("say")))
        for name in ("slack", "sms", "phone")
        for call in core.adapters[name].calls
        if f"alerts ack {alert_id})" in str(call.payload)
    ]


def events_of(store: MemoryStore, kind: str, key: str) -> list[dict[str, Any]]:
    return [
        e.detail or {}
        for e in store.event_log
        if e.kind == kind and (e.detail or {}).get("key") == key
    ]


async def test_an_acked_breaker_alert_stays_quiet_across_a_restart_of_the_core(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Resend down through a restart: the acked alert is listed acked, pages no one for 4 h."""
    async with running_core(tmp_path, FAKES, setup=resend_down) as core:
        store = core.store
        await core.daemon.submit([MessageIn("resend", {"n": n}) for n in range(6)])
        alert = await raised(core, "breaker_open:resend")
        await trio.sleep(10)
        assert alert_messages(core, alert.id)[0][0] == "slack"
        acked = await core.daemon.handle(AlertsAck(alert.id))
        assert acked.acked
    async with running_core(tmp_path, FAKES, setup=resend_down, store=store) as core:
        await trio.sleep(4 * HOUR)
        (still,) = [a for a in await open_alerts(core) if a.key == alert.key]
        assert (still.id, still.acked, still.channels) == (alert.id, True, ["slack"])
        assert alert_messages(core, alert.id) == []
        assert len(events_of(store, "alert_raised", "breaker_open:resend")) == 1
        assert (await core.daemon.handle(AlertsAck(alert.id))).acked  # a second ack: no change


async def test_an_unacked_alert_escalates_from_where_it_stood_after_a_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Raised to slack, stopped for a while: next comes sms (not slack again), at 300 s."""
    async with running_core(tmp_path, FAKES, setup=resend_down) as core:
        store = core.store
        await core.daemon.submit([MessageIn("resend", {"n": n}) for n in range(6)])
        alert = await raised(core, "breaker_open:resend")
        raised_at = alert.opened_at
        await trio.sleep(10)
    # Back within the breaker's 60 s open time: the harness makes resend fail only once the
    # core is up, and a probe let through before that would close the breaker.
    await trio.sleep(30)
    async with running_core(tmp_path, FAKES, setup=resend_down, store=store) as core:
        with trio.fail_after(600):
            while not alert_messages(core, alert.id):  # noqa: ASYNC110 - virtual time
                await trio.sleep(1)
        assert [channel for channel, _ in alert_messages(core, alert.id)] == ["sms"]
        assert wall() - raised_at >= 300
        (still,) = [a for a in await open_alerts(core) if a.key == alert.key]
        assert (still.id, still.channels, still.acked) == (alert.id, ["slack", "sms"], False)


async def test_an_acked_deadline_alert_stays_quiet_across_a_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A deadline at risk with its target down, acked: quiet after the restart; the id holds."""
    async with running_core(tmp_path, FAKES, setup=resend_down) as core:
        store = core.store
        await core.daemon.submit([MessageIn("resend", {"n": n}) for n in range(6)])
        await core.daemon.submit([MessageIn("resend", {"due": 1}, deliver_by=wall() + 1200)])
        alert = await raised(core, "deadline:resend", 900)
        await core.daemon.handle(AlertsAck(alert.id))
    async with running_core(tmp_path, FAKES, setup=resend_down, store=store) as core:
        await trio.sleep(2 * HOUR)  # the deadline passes meanwhile: still the one alert
        (deadline,) = [a for a in await open_alerts(core) if a.key == "deadline:resend"]
        assert (deadline.id, deadline.acked) == (alert.id, True)
        assert "missed" in deadline.summary
        assert alert_messages(core, alert.id) == []


async def test_dead_letters_from_before_a_restart_resolve_once_their_window_passed(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Stored dead letters keep the acked alert; a stop past the window resolves it at start."""

    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["crm"].behaviour = refused
        adapters["slack"].behaviour = refused  # alert messages to slack die too

    async with running_core(tmp_path, FAKES, setup=setup) as core:
        store = core.store
        await core.daemon.submit([MessageIn("crm", {"n": 1})])
        alert = await raised(core, "dead_letters:crm")
        await trio.sleep(120)  # slack refused it: sms took it
        await core.daemon.handle(AlertsAck(alert.id))
    async with running_core(tmp_path, FAKES, setup=setup, store=store) as core:
        await trio.sleep(600)
        assert [(a.key, a.acked) for a in await open_alerts(core)] == [("dead_letters:crm", True)]
        assert alert_messages(core, alert.id) == []
    await trio.sleep(1800)  # down for longer than the window
    async with running_core(tmp_path, FAKES, setup=setup, store=store) as core:
        await trio.sleep(30)
        assert await open_alerts(core) == []
        notices = alert_messages(core, alert.id)
        assert notices and all("RESOLVED" in text for _, text in notices)
        assert {"sms"} <= {channel for channel, _ in notices}
    assert events_of(store, "alert_raised", "dead_letters:slack") == []
