"""Wedding-day mode and alerting: the calendar, the Saturday protocol, escalation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import trio

from ringbearer import _config
from ringbearer._delivery import Delivered, Envelope, Outcome, Retry, Taken
from ringbearer._errors import ConfigError, RequestError, StoreError
from ringbearer._wedding import Calendar, Cause, Mode, Override, WeddingDaySettings
from ringbearer.control import MessageIn
from ringbearer.integrations import FakeAdapter
from ringbearer.store import MemoryStore, MessageStatus, OverrideRecord

from .harness import EPOCH, running_core, wall

HOUR = 3600.0
# The harness clock starts on Friday 2027-01-15 at 08:00 UTC.
SATURDAY = dt.datetime(2027, 1, 16, tzinfo=dt.UTC).timestamp()
SUNDAY = SATURDAY + 24 * HOUR

BASE = """
[daemon]
grace_seconds = 5
[defaults]
lanes = 4
mailbox = 8
timeout_seconds = 10
[defaults.retry]
initial_seconds = 1
max_seconds = 30
max_attempts = 6
[defaults.breaker]
window_seconds = 30
minimum_calls = 4
failure_rate = 0.5
open_seconds = 60
half_open_probes = 1
[integrations.resend]
kind = "fake"
[integrations.mailgun]
kind = "fake"
[integrations.slack]
kind = "fake"
[integrations.sms]
kind = "fake"
[integrations.phone]
kind = "fake"
[groups]
email = ["resend", "mailgun"]
"""

WEDDING = """
[wedding_day]
timezone = "UTC"
weekdays = ["saturday"]
release_per_second = 5
critical_lanes = 2
"""

ALERTING = """
[alerting]
chain = ["slack", "sms", "phone"]
wedding_day_chain = ["slack", "phone"]
escalate_after_seconds = 300
channel_timeout_seconds = 60
breaker_open_seconds = 0
deadline_warning_seconds = 600
tick_seconds = 5
phone = "+15558675310"
"""


def at(wall_time: float) -> float:
    """Trio clock time at which the harness's wall clock shows ``wall_time``."""
    return wall_time - EPOCH


# --- the calendar ------------------------------------------------------------------------


def cal(**settings: Any) -> Calendar:
    return Calendar(WeddingDaySettings(**settings))


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_saturday_is_on_in_the_configured_time_zone() -> None:
    """Late Friday UTC is already Saturday in Auckland; the cause says which weekday."""
    friday_late = stamp("2027-01-15T20:00:00+00:00")
    assert not cal(timezone="UTC").mode_at(friday_late).on
    mode = cal(timezone="Pacific/Auckland").mode_at(friday_late)
    assert (mode.on, mode.cause, mode.detail) == (True, Cause.WEEKDAY, "saturday")


def test_dates_and_ranges_turn_it_on() -> None:
    """An explicit date (a Friday wedding) and a range (a bank-holiday weekend) count."""
    calendar = cal(timezone="UTC", weekdays=(), dates=("2027-01-15", "2027-05-02..2027-05-03"))
    assert calendar.mode_at(stamp("2027-01-15T12:00:00+00:00")).detail == "2027-01-15"
    assert calendar.mode_at(stamp("2027-05-03T23:59:00+00:00")).on
    assert not calendar.mode_at(stamp("2027-05-04T00:00:00+00:00")).on
    assert not calendar.mode_at(stamp("2027-01-16T12:00:00+00:00")).on


def test_an_override_wins_until_it_ends() -> None:
    """on/off by the operator holds until its end; then the calendar decides again."""
    calendar = cal(timezone="UTC")
    tuesday = stamp("2027-01-12T10:00:00+00:00")
    override = Override(True, until=tuesday + HOUR)
    mode = calendar.mode_at(tuesday, override)
    assert (mode.on, mode.cause) == (True, Cause.OPERATOR)
    assert "until 2027-01-12T11:00" in mode.detail
    assert not calendar.mode_at(tuesday + HOUR, override).on
    saturday = stamp("2027-01-16T10:00:00+00:00")
    assert not calendar.mode_at(saturday, Override(False)).on
    assert calendar.next_change(tuesday, override) == tuesday + HOUR


def test_next_midnight_follows_the_local_day_across_a_clock_change() -> None:
    """The mode changes at local midnight, also on the night summer time starts."""
    calendar = cal(timezone="Europe/London")
    before = stamp("2027-03-27T12:00:00+00:00")  # the clocks go forward that night
    assert calendar.next_midnight(before) == stamp("2027-03-28T00:00:00+00:00")
    after = stamp("2027-03-28T12:00:00+01:00")
    assert calendar.next_midnight(after) == stamp("2027-03-29T00:00:00+01:00")
    assert calendar.next_day_on(before) == stamp("2027-04-03T00:00:00+01:00")


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('timezone = "Mars/Olympus"', "unknown time zone"),
        ('weekdays = ["caturday"]', "unknown weekday"),
        ('dates = ["2027-13-01"]', "is not a date"),
        ('dates = ["2027-06-02..2027-06-01"]', "ends before it starts"),
    ],
)
def test_bad_calendar_settings_are_config_errors(
    tmp_path: Path, section: str, problem: str
) -> None:
    """Each bad calendar value is reported with its key path."""
    from ringbearer.integrations import fake_kinds

    text = BASE + f"[wedding_day]\n{section}\n"
    with pytest.raises(ConfigError, match=problem) as caught:
        _config.parse(text, tmp_path / "c.toml", fake_kinds({}))
    assert caught.value.problems[0].path == "wedding_day"


def test_an_alert_chain_must_name_known_targets(tmp_path: Path) -> None:
    """A chain member that is no integration or group is a config error."""
    from ringbearer.integrations import fake_kinds

    text = BASE + '[alerting]\nchain = ["slack", "pager"]\n'
    with pytest.raises(ConfigError, match="no integration or group 'pager'"):
        _config.parse(text, tmp_path / "c.toml", fake_kinds({}))


# --- the Saturday protocol --------------------------------------------------------------


async def test_a_simulated_saturday_with_resend_down_and_mailgun_slow(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Critical mail meets its deadlines through Mailgun; bulk waits in the store all day
    and goes out, at the release rate, once the day ends; nothing is lost or repeated."""
    delivered_at: dict[int, float] = {}

    async def resend_down(env: Envelope) -> Outcome:
        return Retry("HTTP 503: service unavailable", taken=Taken.NO, status=503)

    async def mailgun_slow(env: Envelope) -> Outcome:
        await trio.sleep(4)
        delivered_at[env.id] = wall()
        return Delivered(f"mg-{env.id}")

    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["resend"].behaviour = resend_down
        adapters["mailgun"].behaviour = mailgun_slow

    async with running_core(tmp_path, BASE + WEDDING, setup=setup) as core:
        daemon = core.daemon
        await trio.sleep_until(at(SATURDAY) + 60)
        assert daemon.mode.on and daemon.mode.detail == "saturday"
        now = wall()
        bulk = await daemon.submit(
            [MessageIn("email", {"n": n}, priority="bulk") for n in range(40)]
        )
        normal = await daemon.submit([MessageIn("email", {"n": n}) for n in range(10)])
        critical = await daemon.submit(
            [
                MessageIn("email", {"n": n}, priority="critical", deliver_by=now + 600)
                for n in range(20)
            ]
        )
        await trio.sleep(2 * HOUR)
        for a in critical:
            assert a["id"] in delivered_at and delivered_at[a["id"]] <= now + 600
        assert all(a["id"] in delivered_at for a in normal)
        # Bulk waited in the store, not in memory, and nothing was attempted.
        for a in bulk:
            assert core.store.rows[a["id"]].status is MessageStatus.QUEUED
            assert core.store.rows[a["id"]].attempts == 0
        await trio.sleep_until(at(SUNDAY) + 1)
        mode = daemon.mode  # read afresh: the day has ended since the last look
        assert not mode.on
        released_from = wall()
        await daemon.wait_idle(600)
        times = sorted(delivered_at[a["id"]] for a in bulk)
        # 5 a second after a burst of 5: 40 messages take at least 7 s.
        assert times[-1] - released_from >= 6.0
    rows = core.store.rows
    assert all(r.status is MessageStatus.DELIVERED for r in rows.values())
    calls = [e.id for e in core.adapters["mailgun"].calls]
    assert len(calls) == len(set(calls)) == 70  # each delivered once, all through Mailgun
    kinds = [e.kind for e in core.store.event_log]
    assert kinds.count("wedding_day_on") == 1 and kinds.count("wedding_day_off") == 1


async def test_critical_work_keeps_lanes_while_others_are_slow(
    tmp_path: Path, autojump_clock: object
) -> None:
    """With normal work filling a slow provider, a critical message still starts at once."""
    started: dict[int, float] = {}

    async def slow(env: Envelope) -> Outcome:
        started[env.id] = trio.current_time()
        await trio.sleep(30)
        return Delivered()

    async with running_core(
        tmp_path,
        BASE + WEDDING,
        setup=lambda a: setattr(a["mailgun"], "behaviour", slow),
    ) as core:
        daemon = core.daemon
        await daemon.set_override("on", None)
        await daemon.submit([MessageIn("mailgun", {"n": n}) for n in range(20)])
        await trio.sleep(1)
        (urgent,) = await daemon.submit([MessageIn("mailgun", {"n": 99}, priority="critical")])
        submitted = trio.current_time()
        await trio.sleep(1)
        assert started[urgent["id"]] - submitted < 1.0
        # Of four lanes, two are held for critical work: normal work used only two.
        assert sum(1 for t in started.values() if t < submitted) == 2


async def test_critical_work_may_pass_an_open_breaker_a_few_times(
    tmp_path: Path, autojump_clock: object
) -> None:
    """The wedding-day bypass: an open breaker still lets bypass_probes critical messages try."""
    seen: list[tuple[int, str]] = []

    async def down(env: Envelope) -> Outcome:
        seen.append((env.id, env.priority.label))
        return Retry("HTTP 503", taken=Taken.NO, status=503)

    async with running_core(
        tmp_path, BASE + WEDDING, setup=lambda a: setattr(a["sms"], "behaviour", down)
    ) as core:
        daemon = core.daemon
        await daemon.set_override("on", None)
        await daemon.submit([MessageIn("sms", {"n": n}) for n in range(4)])
        await trio.sleep(0.5)
        assert daemon.actors["sms"].breaker.state.value == "open"
        seen.clear()
        await daemon.submit([MessageIn("sms", {"n": n}, priority="critical") for n in range(6)])
        await trio.sleep(5)  # well inside the (shortened) open period
        assert [p for _, p in seen] == ["critical"] * 3  # bypass_probes defaults to 3


async def test_the_override_turns_the_mode_on_until_its_end_and_says_why(
    tmp_path: Path, autojump_clock: object
) -> None:
    """wedding-day on --until: on now, off at the end, each change an event with its cause."""
    async with running_core(tmp_path, BASE + WEDDING) as core:
        daemon = core.daemon
        assert daemon.status()["mode"] == "normal"
        shown = await daemon.set_override("on", wall() + HOUR)
        assert shown["wedding_day"] and shown["cause"] == "operator"
        assert daemon.status()["mode"] == "wedding_day"
        assert daemon.actors["resend"].breaker.settings.open_seconds == 10
        await trio.sleep(HOUR + 1)
        assert not daemon.mode.on and daemon.override is None
        assert daemon.actors["resend"].breaker.settings.open_seconds == 60
        events = [(e.kind, (e.detail or {}).get("cause")) for e in core.store.event_log]
        assert ("wedding_day_on", "operator") in events and ("wedding_day_off", "none") in events
        with pytest.raises(Exception, match="on, off or auto"):
            await daemon.set_override("maybe", None)


async def test_the_override_outlives_a_restart_until_it_ends(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Kept in the store: a restart keeps it on; set back to auto, a restart follows the
    calendar; and one that ended while the daemon was stopped is not taken up."""
    store, until = MemoryStore(wall), wall() + HOUR
    async with running_core(tmp_path, BASE + WEDDING, store=store) as core:
        await core.daemon.set_override("on", until)
    async with running_core(tmp_path, BASE + WEDDING, store=store) as core:
        assert core.daemon.mode.on and core.daemon.mode.cause is Cause.OPERATOR
        assert core.daemon.override == Override(True, until)
        await core.daemon.set_override("auto", None)
    async with running_core(tmp_path, BASE + WEDDING, store=store) as core:
        assert not core.daemon.mode.on and core.daemon.override is None
        await core.daemon.set_override("off", wall() + HOUR)
    await trio.sleep(HOUR + 1)  # it ends while stopped
    async with running_core(tmp_path, BASE + WEDDING, store=store) as core:
        assert core.daemon.override is None and core.daemon.mode.cause is Cause.NONE


async def test_an_override_kept_by_another_node_is_followed(
    tmp_path: Path, autojump_clock: object
) -> None:
    """What another node kept in the shared store is taken up at ``follow`` (each beat):
    the mode changes, without a second audit of the operator's request."""
    async with running_core(tmp_path, BASE + WEDDING) as core:
        mode = core.parts.mode
        assert not await mode.follow()  # nothing kept, nothing changes
        await core.store.set_mode_override(OverrideRecord(True, wall() + HOUR, wall()))
        assert await mode.follow() and mode.mode.on
        assert core.daemon.actors["resend"].breaker.settings.open_seconds == 10
        assert not await mode.follow()  # the same override: nothing to do
        await core.store.set_mode_override(None)
        assert await mode.follow()
        assert mode.mode == Mode(False, Cause.NONE, "")
        kinds = [e.kind for e in core.store.event_log]
        assert "wedding_day_override" not in kinds
        assert kinds.count("wedding_day_on") == kinds.count("wedding_day_off") == 1


async def test_an_override_the_store_cannot_keep_is_not_applied(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is answered as done that a restart, or another node, would not see."""
    async with running_core(tmp_path, BASE + WEDDING) as core:

        async def fails(override: object) -> None:
            raise StoreError("disk full")

        monkeypatch.setattr(core.store, "set_mode_override", fails)
        with pytest.raises(StoreError, match="disk full"):
            await core.daemon.set_override("on", None)
        assert not core.daemon.mode.on and core.daemon.override is None


# --- alerting ---------------------------------------------------------------------------


async def test_an_alert_goes_to_slack_then_sms_when_slack_is_down_then_a_phone_until_acked(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Slack down: the alert reaches SMS; unacknowledged it escalates to a call; ack stops it."""

    async def down(env: Envelope) -> Outcome:
        return Retry("HTTP 503", taken=Taken.NO, status=503)

    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["resend"].behaviour = down
        adapters["slack"].behaviour = down

    async with running_core(tmp_path, BASE + ALERTING, setup=setup) as core:
        daemon = core.daemon
        await daemon.submit([MessageIn("resend", {"n": n}) for n in range(4)])
        await core.store.wait_for_event("alert_raised")
        raised = trio.current_time()
        (alert,) = [a for a in daemon.alerts.views() if a.key == "breaker_open:resend"]
        await core.store.wait_for_event("alert_channel_failed")
        sms = core.adapters["sms"].calls

        def texted() -> list[Envelope]:
            return [c for c in sms if "resend: breaker open" in c.payload["text"]]

        with trio.fail_after(120):
            while not texted():  # noqa: ASYNC110 - virtual time; the SMS arrives on a tick
                await trio.sleep(1)
        assert texted()[0].priority.label == "critical"
        await core.store.wait_for_event("alert_escalated")
        assert trio.current_time() - raised >= 300
        phone = core.adapters["phone"].calls

        def called() -> list[Envelope]:
            return [c for c in phone if f"alerts ack {alert.id}" in c.payload["text"]]

        with trio.fail_after(60):
            while not called():  # noqa: ASYNC110
                await trio.sleep(1)
        await daemon.alerts.ack(alert.id)

        def sent_for_it() -> int:
            return sum(
                1
                for e in core.store.event_log
                if e.kind in ("alert_sent", "alert_escalated")
                and (e.detail or {}).get("alert") == alert.id
            )

        before = sent_for_it()
        await trio.sleep(4 * HOUR)  # longer than the repeat interval
        assert sent_for_it() == before  # acknowledged: no new notification, no escalation
        raised_keys = [
            (e.detail or {}).get("key") for e in core.store.event_log if e.kind == "alert_raised"
        ]
        assert raised_keys.count("breaker_open:resend") == 1  # de-duplicated, never re-raised


async def test_a_deadline_whose_whole_group_is_down_raises_an_alert_before_it_passes(
    tmp_path: Path, autojump_clock: object
) -> None:
    """deliver_by with every member of the group down: an alert comes before the deadline."""

    async def down(env: Envelope) -> Outcome:
        return Retry("HTTP 503", taken=Taken.NO, status=503)

    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["resend"].behaviour = down
        adapters["mailgun"].behaviour = down

    text = BASE.replace("max_attempts = 6", "max_attempts = 100") + ALERTING
    async with running_core(tmp_path, text, setup=setup) as core:
        daemon = core.daemon
        deadline = wall() + 900
        (a,) = await daemon.submit(
            [MessageIn("email", {"n": 1}, priority="critical", deliver_by=deadline)]
        )

        def deadline_alert() -> bool:
            return any(
                e.kind == "alert_raised" and (e.detail or {}).get("key") == "deadline:email"
                for e in core.store.event_log
            )

        with trio.fail_after(900):
            while not deadline_alert():  # noqa: ASYNC110 - virtual time, checked each tick
                await trio.sleep(1)
        assert wall() < deadline
        assert core.store.rows[a["id"]].status is MessageStatus.QUEUED  # not yet given up
        with trio.fail_after(60):
            while not core.adapters["slack"].calls:  # noqa: ASYNC110
                await trio.sleep(1)
        texts = [c.payload["text"] for c in core.adapters["slack"].calls]
        assert any("email: 1 message(s)" in t and f"nearest: message {a['id']}" in t for t in texts)


async def test_the_change_freeze_needs_force_and_logs_it(
    tmp_path: Path, autojump_clock: object
) -> None:
    """While the mode is on, pause, breaker commands and reload need --force; each forced
    change is an event."""
    async with running_core(tmp_path, BASE + WEDDING) as core:
        daemon = core.daemon
        daemon.config.source.write_text(BASE + WEDDING)
        await daemon.set_override("on", None)
        with pytest.raises(RequestError, match=r"freeze.*pause needs --force"):
            await daemon.set_paused("slack", True)
        with pytest.raises(RequestError, match="breaker open needs --force"):
            await daemon.breaker("slack", "open")
        with pytest.raises(RequestError, match="reload needs --force"):
            await daemon.reload_file()
        assert not daemon.actors["slack"].paused
        await daemon.set_paused("slack", True, force=True)
        await daemon.breaker("slack", "open", force=True)
        await daemon.reload_file(force=True)
        forced = [
            (e.detail or {}).get("command") for e in core.store.event_log if e.kind == "forced"
        ]
        assert forced == ["pause", "breaker open", "reload"]
        await daemon.set_override("off", None)
        await daemon.set_paused("slack", False)  # no freeze with the mode off


async def test_the_preflight_runs_twelve_hours_before_the_wedding_day(
    tmp_path: Path, autojump_clock: object
) -> None:
    """12 hours before Saturday the daemon checks every integration and records the verdict."""
    text = BASE + WEDDING + ALERTING
    async with running_core(tmp_path, text) as core:
        await trio.sleep_until(at(SATURDAY - 12 * HOUR) - 60)
        assert not [e for e in core.store.event_log if e.kind == "preflight"]
        await trio.sleep(120)
        (event,) = [e for e in core.store.event_log if e.kind == "preflight"]
        assert SATURDAY - 12 * HOUR <= event.at < SATURDAY - 12 * HOUR + 60
        # Fake integrations have nothing to probe: warnings, nothing failing, no alert.
        assert (event.detail or {}) == {"verdict": "ready with warnings", "failing": []}
        assert "preflight" not in core.daemon.alerts.alerts
        await trio.sleep_until(at(SATURDAY) + 3 * HOUR)
        assert len([e for e in core.store.event_log if e.kind == "preflight"]) == 1


async def test_a_node_that_does_not_lead_follows_the_mode_without_telling_of_it(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Several nodes all follow the mode; only the leader writes its changes' audit events."""
    async with running_core(tmp_path, BASE + WEDDING) as core:
        daemon = core.daemon
        daemon.parts.mode.announces = lambda: False  # another node leads
        await daemon.set_override("on", wall() + HOUR)
        assert daemon.status()["mode"] == "wedding_day"  # followed all the same
        await trio.sleep(HOUR + 1)
        assert not daemon.mode.on
        kinds = {e.kind for e in core.store.event_log}
        assert not kinds & {"wedding_day_on", "wedding_day_off"}
        assert "wedding_day_override" in kinds  # the operator's own request is still audited
