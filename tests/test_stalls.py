"""No silent stalls, in-process: the stall detector, stranded work on reload, config checks."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from ringbearer import _config, _views
from ringbearer._delivery import Envelope, Outcome, Retry, Taken
from ringbearer._errors import ConfigError, ErrorCode, RequestError
from ringbearer._stalls import StallDetector
from ringbearer.control import Alerts, MessageIn, OverrideState, Status
from ringbearer.control._replies import ReloadReply, StallView
from ringbearer.handlers import StatusHandler
from ringbearer.integrations import FakeAdapter, fake_kinds
from ringbearer.store import MemoryStore, MessageStatus

from .harness import EPOCH, FAKE_CONFIG, Core, running_core, wall

STALLS = "\n[stalls]\ncheck_seconds = 5\nafter_seconds = 60\n"
CONFIG = FAKE_CONFIG + STALLS
# delta and the group "pair" (gamma, delta) come and go in these tests.
WITH_DELTA = CONFIG + '\n[integrations.delta]\nkind = "fake"\n'
WITH_PAIR = WITH_DELTA.replace(
    'trio = ["alpha", "beta", "gamma"]',
    'trio = ["alpha", "beta", "gamma"]\npair = ["gamma", "delta"]',
)


def msg(target: str, n: int, priority: str = "normal") -> MessageIn:
    return MessageIn(target=target, payload={"n": n}, priority=priority)


async def until(condition: Callable[[], bool], seconds: float = 900) -> None:
    """Wait (in virtual time) until ``condition`` holds; fail after ``seconds``."""
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 (virtual time: these have no event)
            await trio.sleep(0.5)


def stalls(core: Core) -> dict[str, dict[str, Any]]:
    return {s["target"]: s for s in core.daemon.status()["stalls"]}


async def alert_keys(core: Core) -> set[str]:
    return {a.key for a in (await core.daemon.handle(Alerts())).alerts}


def detector(core: Core) -> StallDetector:
    handler = core.parts.table[Status]
    assert isinstance(handler, StatusHandler)
    owner = getattr(handler.stalls, "__self__", None)
    assert isinstance(owner, StallDetector)
    return owner


def reparse(core: Core, text: str) -> _config.Config:
    return _config.parse(text, core.daemon.config.source, fake_kinds(core.adapters))


def status_of(core: Core, ids: list[int]) -> set[MessageStatus]:
    return {core.store.rows[i].status for i in ids}


async def ids_of(core: Core, messages: list[MessageIn]) -> list[int]:
    return [int(a["id"]) for a in await core.daemon.submit(messages)]


# -- symptom 0: pause, restart, resume ---------------------------------------------------


async def test_pause_restart_resume_delivers_the_integrations_queue(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Symptom 0: pause alpha, restart on the same store, resume: queued and new work is
    delivered, once each, and nothing is reported stalled."""
    store = MemoryStore(wall)
    async with running_core(tmp_path, CONFIG, store=store) as core:
        await core.daemon.set_paused("alpha", True)
        before = await ids_of(core, [msg("alpha", n) for n in range(3)])
        await trio.sleep(10)
        assert status_of(core, before) == {MessageStatus.QUEUED}
    async with running_core(tmp_path, CONFIG, store=store) as again:
        alpha = next(i for i in again.daemon.status()["integrations"] if i["name"] == "alpha")
        assert alpha["paused"] and all(not d.paused for d in again.daemon.dispatchers.values())
        await again.daemon.set_paused("alpha", False)
        after = await ids_of(again, [msg("alpha", 10)])
        assert (await again.daemon.wait_idle(120))["idle"]
        assert status_of(again, before + after) == {MessageStatus.DELIVERED}
        assert Counter(e.id for e in again.adapters["alpha"].calls) == dict.fromkeys(
            before + after, 1
        )
        await trio.sleep(120)  # past after_seconds: still nothing to report
        assert stalls(again) == {}


# -- the detector ---------------------------------------------------------------------------


async def test_a_dispatcher_paused_behind_a_running_actor_is_caught_as_no_progress(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Symptom 0's cause, put back by hand: status says running and not paused, the queue does
    not move; after after_seconds it is a critical stall alert and a status line, cleared
    once the work moves again."""
    async with running_core(tmp_path, CONFIG) as core:
        core.daemon.dispatchers["alpha"].paused = True  # the old restore's flag
        core.store.unpark_claim("alpha")  # as at a start: no claim parked with the store
        ids = await ids_of(core, [msg("alpha", n) for n in range(4)])
        await trio.sleep(30)
        assert "alpha" not in stalls(core)  # not yet: after_seconds is 60
        await until(lambda: "alpha" in stalls(core))
        found = stalls(core)["alpha"]
        assert found["why"] == "no_progress" and found["queued"] == 4
        assert found["since"] >= EPOCH
        await trio.sleep(10)  # an alerting tick
        assert "stalled:alpha" in await alert_keys(core)
        alerts = (await core.daemon.handle(Alerts())).alerts
        (alert,) = [a for a in alerts if a.key == "stalled:alpha"]
        assert alert.severity.value == "critical" and "no progress" in alert.summary
        text = _views.format_status(await core.daemon.handle(Status()))
        assert "STALLS" in text and "stalled: no progress" in text and "4 queued" in text

        core.daemon.dispatchers["alpha"].paused = False
        core.daemon.dispatchers["alpha"].kick()
        await core.daemon.wait_idle(60)
        assert status_of(core, ids) == {MessageStatus.DELIVERED}
        await until(lambda: stalls(core) == {})
        await trio.sleep(10)
        assert "stalled:alpha" not in await alert_keys(core)


async def test_a_paused_integration_is_shown_paused_not_stalled(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A paused integration is no "no progress" stall; once the pause has lasted after_seconds
    with work waiting it is shown "paused with N queued" (a warning), gone on resume."""
    async with running_core(tmp_path, CONFIG) as core:
        await core.daemon.set_paused("beta", True)
        await ids_of(core, [msg("beta", n) for n in range(2)])
        await trio.sleep(30)
        assert stalls(core) == {}
        await trio.sleep(60)
        shown = stalls(core)["beta"]
        assert shown["why"] == "paused" and shown["queued"] == 2
        assert "beta paused" in shown["detail"]
        await trio.sleep(10)
        (alert,) = [
            a for a in (await core.daemon.handle(Alerts())).alerts if a.key == "stalled:beta"
        ]
        assert alert.severity.value == "warning" and "paused with 2 queued" in alert.summary
        await core.daemon.set_paused("beta", False)
        await core.daemon.wait_idle(60)
        await until(lambda: stalls(core) == {})


async def test_a_group_paused_or_every_member_held_is_shown_paused(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A paused group, or one whose members are all paused or forced open, is "paused"."""
    async with running_core(tmp_path, CONFIG) as core:
        await core.daemon.set_paused("trio", True)
        await ids_of(core, [msg("trio", 1)])
        await until(lambda: "trio" in stalls(core))
        assert stalls(core)["trio"]["detail"] == "the group is paused"
        await core.daemon.set_paused("trio", False)
        await core.daemon.wait_idle(60)
        await until(lambda: stalls(core) == {})
        for name in ("alpha", "beta"):
            await core.daemon.set_paused(name, True)
        await core.daemon.breaker("gamma", "open")
        await ids_of(core, [msg("trio", 2)])
        await until(lambda: "trio" in stalls(core))
        detail = stalls(core)["trio"]["detail"]
        assert stalls(core)["trio"]["why"] == "paused"
        assert "alpha paused" in detail and "gamma breaker forced open" in detail


async def test_deferred_bulk_on_a_wedding_day_is_no_stall(
    tmp_path: Path, autojump_clock: object
) -> None:
    """On a wedding day bulk waits by policy: hours of it queued is not a stall."""
    text = CONFIG.replace("weekdays = []", "weekdays = []\nfreeze = false")
    async with running_core(tmp_path, text) as core:
        await core.daemon.set_override("on", None)
        ids = await ids_of(core, [msg("alpha", n, "bulk") for n in range(3)])
        await trio.sleep(3600)
        assert status_of(core, ids) == {MessageStatus.QUEUED}
        assert stalls(core) == {}
        await core.daemon.set_override("auto", None)
        await core.daemon.wait_idle(120)
        assert status_of(core, ids) == {MessageStatus.DELIVERED}


async def test_a_failing_look_is_logged_alerted_and_retried_with_backoff(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector's own failure stops nothing: delivery goes on, it alerts, it recovers."""
    async with running_core(tmp_path, CONFIG) as core:
        found = detector(core)
        real = StallDetector.check
        failures: list[float] = []

        async def broken(self: StallDetector) -> float:
            if len(failures) < 3:
                failures.append(trio.current_time())
                raise RuntimeError("the detector has a bug")
            return await real(self)

        monkeypatch.setattr(StallDetector, "check", broken)
        found.duty.step = found.check  # the duty holds the bound method
        ids = await ids_of(core, [msg("alpha", n) for n in range(5)])
        await core.daemon.wait_idle(60)
        assert status_of(core, ids) == {MessageStatus.DELIVERED}
        await until(lambda: len(failures) == 3)
        gaps = [b - a for a, b in itertools.pairwise(failures)]
        assert all(0.5 <= gap <= 4.0 for gap in gaps)  # backoff: 1 s, then 2 s, with jitter
        await trio.sleep(10)
        assert found.duty.failures == 0
        assert "duty_failed:stall_detector" not in await alert_keys(core)


# -- symptom 5: an until the calendar cannot show ------------------------------------------


async def test_the_mode_controller_refuses_an_until_it_cannot_show_before_storing(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Symptom 5 behind the wire's own check: the controller refuses a milliseconds until as
    bad_args with nothing stored; a reload then works and every dispatcher delivers."""
    async with running_core(tmp_path, CONFIG) as core:
        with pytest.raises(RequestError) as caught:
            await core.parts.mode.set_override(OverrideState.ON, 1796603207684.0)
        assert caught.value.code is ErrorCode.BAD_ARGS and "until" in caught.value.message
        assert core.daemon.override is None and not core.daemon.mode.on
        assert not [e for e in core.store.event_log if e.kind == "wedding_day_override"]
        await core.parts.reloader.reload(reparse(core, CONFIG))
        ids = await ids_of(core, [msg(t, 1) for t in ("alpha", "beta", "gamma", "trio")])
        await core.daemon.wait_idle(60)
        assert status_of(core, ids) == {MessageStatus.DELIVERED}


# -- symptom 9: a group with no enabled member ---------------------------------------------


def test_a_group_whose_every_member_is_disabled_is_refused_naming_it(tmp_path: Path) -> None:
    """`config check` (the loader) refuses it, naming the group and its members."""
    text = WITH_PAIR.replace(
        '[integrations.gamma]\nkind = "fake"',
        '[integrations.gamma]\nkind = "fake"\nenabled = false',
    )
    text = text.replace(
        '[integrations.delta]\nkind = "fake"',
        '[integrations.delta]\nkind = "fake"\nenabled = false',
    )
    with pytest.raises(ConfigError) as caught:
        _config.parse(text, tmp_path / "config.toml", fake_kinds({}))
    (problem,) = [p for p in caught.value.problems if p.path == "groups.pair"]
    assert "every member is disabled (gamma, delta)" in problem.message
    assert "groups.trio" not in {p.path for p in caught.value.problems}  # alpha, beta enabled


async def test_a_reload_to_a_group_with_no_enabled_member_changes_nothing(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Symptom 9 on reload: invalid_config naming the group; the running config delivers."""
    async with running_core(tmp_path, WITH_PAIR) as core:
        before = core.daemon.config
        bad = WITH_PAIR.replace(
            '[integrations.delta]\nkind = "fake"',
            '[integrations.delta]\nkind = "fake"\nenabled = false',
        )
        bad = bad.replace(
            '[integrations.gamma]\nkind = "fake"',
            '[integrations.gamma]\nkind = "fake"\nenabled = false',
        )
        before.source.write_text(bad)
        with pytest.raises(RequestError, match=r"groups\.pair: every member is disabled") as caught:
            await core.daemon.reload_file()
        assert caught.value.code is ErrorCode.INVALID_CONFIG
        assert core.daemon.config is before
        ids = await ids_of(core, [msg("pair", 1), msg("alpha", 2)])
        await core.daemon.wait_idle(60)
        assert status_of(core, ids) == {MessageStatus.DELIVERED}


# -- symptom 10: stranded work ------------------------------------------------------------


async def test_a_reload_that_would_strand_queued_work_is_refused_naming_it(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Removing delta (5 queued) and the group pair (2 queued) is refused with each named and
    counted; nothing changes, and everything is delivered once delta is resumed."""
    async with running_core(tmp_path, WITH_PAIR) as core:
        await core.daemon.set_paused("delta", True)
        await core.daemon.set_paused("pair", True)
        ids = await ids_of(
            core, [msg("delta", n) for n in range(5)] + [msg("pair", 7), msg("pair", 8)]
        )
        before, actors = core.daemon.config, dict(core.daemon.actors)
        with pytest.raises(RequestError) as caught:
            await core.parts.reloader.reload(reparse(core, CONFIG))
        error = caught.value
        assert error.code is ErrorCode.WOULD_STRAND
        assert "delta (5 queued)" in error.message and "pair (2 queued)" in error.message
        assert "--drop-queued" in error.message
        assert core.daemon.config is before and core.daemon.actors == actors
        refused = [e for e in core.store.event_log if e.kind == "reload_refused"]
        assert refused and refused[-1].detail == {"stranded": {"delta": [5, 0], "pair": [2, 0]}}
        await core.daemon.set_paused("delta", False)
        await core.daemon.set_paused("pair", False)
        await core.daemon.wait_idle(60)
        assert status_of(core, ids) == {MessageStatus.DELIVERED}


async def retry_later(env: Envelope) -> Outcome:
    return Retry(reason="try later", after=120.0, taken=Taken.NO)


async def test_a_forced_reload_dead_letters_stranded_work_with_the_reason(
    tmp_path: Path, autojump_clock: object
) -> None:
    """--drop-queued: what is due becomes dead letters at once, what waits for a retry when it
    comes due (shown as "dropping" meanwhile), each with the reason; a replay once delta is
    back delivers them; innocents elsewhere are delivered throughout."""

    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["delta"].behaviour = retry_later

    async with running_core(tmp_path, WITH_DELTA, setup=setup) as core:
        (waiting,) = await ids_of(core, [msg("delta", 0)])
        await until(lambda: core.store.rows[waiting].attempts == 1)  # retry in 120 s
        await core.daemon.set_paused("delta", True)
        due = await ids_of(core, [msg("delta", n) for n in range(1, 4)])
        reply = await core.parts.reloader.reload(reparse(core, CONFIG), drop_queued=True)
        assert reply.dropped == {"delta": 3} and reply.removed == ["delta"]
        assert status_of(core, due) == {MessageStatus.DEAD}
        assert core.store.rows[waiting].status is MessageStatus.QUEUED
        await until(lambda: "delta" in stalls(core), 10)
        assert stalls(core)["delta"]["why"] == "dropping"
        innocent = await ids_of(core, [msg("alpha", 5)])
        await until(lambda: core.store.rows[waiting].status is MessageStatus.DEAD, 300)
        assert status_of(core, innocent) == {MessageStatus.DELIVERED}
        dead = {d.message_id: d for d in await core.store.dead_letters(target="delta")}
        assert set(dead) == {waiting, *due}
        assert {d.reason for d in dead.values()} == {"integration delta removed by a forced reload"}
        await until(lambda: stalls(core) == {})

        core.adapters["delta"].behaviour = FakeAdapter("x").behaviour
        await core.parts.reloader.reload(reparse(core, WITH_DELTA))
        await core.daemon.set_paused("delta", False)
        assert sorted(await core.store.replay_dead(target="delta")) == sorted([waiting, *due])
        await core.daemon.wait_idle(60)
        assert status_of(core, [waiting, *due]) == {MessageStatus.DELIVERED}


async def test_work_left_from_before_a_restart_is_a_no_route_stall_until_dropped(
    tmp_path: Path, autojump_clock: object
) -> None:
    """delta removed while the daemon was down: its queue is a "no route" stall (critical
    alert, status line) from the second look; `reload --drop-queued` makes it dead letters."""
    store = MemoryStore(wall)
    async with running_core(tmp_path, WITH_DELTA, store=store) as core:
        await core.daemon.set_paused("delta", True)
        ids = await ids_of(core, [msg("delta", n) for n in range(2)])
    async with running_core(tmp_path, CONFIG, store=store) as again:
        await until(lambda: "delta" in stalls(again), 30)
        shown = stalls(again)["delta"]
        assert shown["why"] == "no_route" and shown["queued"] == 2
        assert shown["detail"] == "not in the config in force"
        await trio.sleep(10)
        assert "stalled:delta" in await alert_keys(again)
        # An unrelated reload goes on: only a reload that removes a target refuses for it.
        assert (await again.parts.reloader.reload(reparse(again, CONFIG))).dropped == {}
        assert stalls(again)["delta"]["why"] == "no_route"
        reply = await again.parts.reloader.reload(reparse(again, CONFIG), drop_queued=True)
        assert reply.dropped == {"delta": 2}
        assert status_of(again, ids) == {MessageStatus.DEAD}
        reasons = {d.reason for d in await again.store.dead_letters(target="delta")}
        assert reasons == {"delta: no route in the config; dropped by a forced reload"}
        await until(lambda: stalls(again) == {}, 30)
        await trio.sleep(10)
        assert "stalled:delta" not in await alert_keys(again)


# -- views ----------------------------------------------------------------------------------


def test_the_reload_view_names_what_was_dead_lettered() -> None:
    """`ringbearer reload` prints the dropped counts and that they are replayable."""
    reply = ReloadReply([], ["delta"], [], ["alpha"], False, [], dropped={"delta": 3})
    assert _views.format_reload(reply).splitlines() == [
        "removed: delta",
        "dead-lettered (replayable): delta 3; what waits for a retry follows when due",
    ]


def test_stall_view_lines_are_aligned_under_the_table() -> None:
    """Each stall is one line: target, why, since (UTC), counts, detail."""
    lines = _views._stall_lines(
        [
            StallView("alpha", "no_progress", EPOCH, 4, 1, "work due, no settle"),
            StallView("news", "paused", EPOCH, 2, 0, "the group is paused"),
        ]
    )
    assert lines[:2] == ["", "STALLS"]
    assert lines[2].split()[:4] == ["alpha", "stalled:", "no", "progress"]
    assert "4 queued, 1 in flight" in lines[2] and "2 queued " in lines[3]
    assert lines[2].index("(work") == lines[3].index("(the group")
