"""Supervision: a crashed actor restarts alone, loses nothing, and a crash loop stops."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from ringbearer._actor import ActorState
from ringbearer._config import SupervisorSettings
from ringbearer._converter import PositiveFloat
from ringbearer._delivery import Delivered, Envelope, Outcome
from ringbearer._supervisor import RestartIntensity, backoff_seconds
from ringbearer.control import MessageIn
from ringbearer.integrations import FakeAdapter
from ringbearer.store import MessageStatus

from .harness import Core, running_core


def msg(target: str, n: int = 0) -> MessageIn:
    return MessageIn(target=target, payload={"n": n})


def test_intensity_counts_only_crashes_inside_the_window() -> None:
    """N crashes within T trip the limit; older crashes slide out of the window."""
    intensity = RestartIntensity(max_restarts=2, within_seconds=10)
    assert not intensity.crash(0.0)
    assert not intensity.crash(1.0)
    assert intensity.crash(2.0)
    fresh = RestartIntensity(max_restarts=2, within_seconds=10)
    assert not any(fresh.crash(t) for t in (0.0, 11.0, 22.0, 33.0))


def test_backoff_grows_is_capped_and_jittered() -> None:
    """Backoff doubles per recent crash up to the cap, jittered within [50%, 100%]."""
    settings = SupervisorSettings(
        backoff_initial_seconds=PositiveFloat(1), backoff_max_seconds=PositiveFloat(8)
    )
    rng = random.Random(7)
    for recent, ceiling in ((1, 1), (2, 2), (3, 4), (4, 8), (9, 8)):
        draws = [backoff_seconds(settings, recent, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling / 4  # jitter is real, not a constant


async def test_crashed_actor_restarts_alone_and_loses_nothing(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A crash in alpha restarts alpha only; its message is delivered after the restart."""
    async with running_core(tmp_path) as core:
        beta_before = core.adapters["beta"].lanes_opened
        core.daemon.actors["alpha"].request_crash()
        (first,) = await core.daemon.submit([msg("alpha", 1)])
        await core.daemon.submit([msg("beta", i) for i in range(5)])
        await core.daemon.wait_idle(60)
        alpha = core.daemon.actors["alpha"]
        assert alpha.restarts == 1 and alpha.state is ActorState.RUNNING
        assert core.daemon.actors["beta"].restarts == 0
        assert core.adapters["beta"].lanes_opened == beta_before  # beta never restarted
        row = core.store.rows[first["id"]]
        assert row.status is MessageStatus.DELIVERED
        assert row.attempts == 2  # the interrupted attempt counts, then the redelivery
        kinds = [e.kind for e in core.store.event_log if e.integration == "alpha"]
        assert "actor_crashed" in kinds and "actor_restarted" in kinds
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 6


async def test_crash_loop_trips_the_intensity_limit(tmp_path: Path, autojump_clock: object) -> None:
    """An actor that crashes on every message is marked failed; the others run on."""

    async with running_core(tmp_path, setup=_alpha_explodes) as core:
        # One poisoned message is quarantined after two crashes (see test_containment);
        # a bug that crashes on every message still trips the limit.
        accepted = await core.daemon.submit([msg("alpha", n) for n in range(8)])
        await _until_alpha_fails(core)
        alpha = core.daemon.actors["alpha"]
        assert alpha.state is ActorState.FAILED
        assert alpha.restarts == 4  # max_restarts = 3 within the window, the 4th gives up
        assert any(e.kind == "actor_failed" for e in core.store.event_log)
        statuses = [core.store.rows[a["id"]].status for a in accepted]
        assert statuses.count(MessageStatus.QUEUED) >= 6  # kept, not lost (<= 2 quarantined)
        await core.daemon.submit([msg("beta", 1)])
        await core.daemon.wait_idle(5)
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 1


async def test_group_skips_a_failed_member(tmp_path: Path, autojump_clock: object) -> None:
    """Once alpha has failed, messages to the group go to the next member."""

    async with running_core(tmp_path, setup=_alpha_explodes) as core:
        await core.daemon.submit([msg("alpha", n) for n in range(8)])
        await _until_alpha_fails(core)
        core.adapters["alpha"].behaviour = lambda env: _delivered()
        (accepted,) = await core.daemon.submit([msg("trio")])
        await core.daemon.wait_idle(10)
        assert core.store.rows[accepted["id"]].status is MessageStatus.DELIVERED
        assert core.store.rows[accepted["id"]].integration == "beta"


async def _delivered() -> Outcome:
    return Delivered("x")


async def _explode(env: Envelope) -> Outcome:
    raise RuntimeError("adapter bug")


def _alpha_explodes(adapters: dict[str, FakeAdapter]) -> None:
    adapters["alpha"].behaviour = _explode


async def _until_alpha_fails(core: Core) -> None:
    with trio.fail_after(120):
        await core.store.wait_for_event("actor_failed")
