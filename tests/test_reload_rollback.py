"""A reload is all or nothing: a failure at any step rolls back to the running set.

Each test injects one failure (after a step has done its work, or in the middle
of it) under a steady flow of messages, and checks what an operator relies on:
the reload answers ``reload_failed`` naming the step, the old config is in
force with a running actor per integration and a running dispatcher per target,
systemd heard READY=1 after RELOADING=1, and every message is delivered exactly
once, then and after a reload that succeeds.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from ringbearer import _config, _reload
from ringbearer._actor import ActorState
from ringbearer._delivery import Delivered, Envelope, Outcome
from ringbearer._dispatcher import Dispatcher
from ringbearer._errors import ErrorCode, RequestError
from ringbearer._fleet import restore_budgets
from ringbearer._mode import ModeController
from ringbearer._reload import Reloader
from ringbearer._supervisor import Supervisor
from ringbearer._systemd import Notifier
from ringbearer.control import MessageIn
from ringbearer.integrations import FakeAdapter, fake_kinds
from ringbearer.store import MessageStatus

from .harness import EPOCH, FAKE_CONFIG, Core, running_core

TODAY = dt.datetime.fromtimestamp(EPOCH, dt.UTC).date().isoformat()
# beta goes, delta comes, alpha's breaker changes, gamma stays as it is; today is a wedding day.
RELOADED = (
    FAKE_CONFIG.replace('[integrations.beta]\nkind = "fake"\n', "")
    .replace('trio = ["alpha", "beta", "gamma"]', 'trio = ["alpha", "gamma"]')
    .replace("weekdays = []", f'weekdays = []\ndates = ["{TODAY}"]')
    .replace(
        '[integrations.alpha]\nkind = "fake"',
        '[integrations.alpha]\nkind = "fake"\n[integrations.alpha.breaker]\n'
        "window_seconds = 10\nminimum_calls = 2\nfailure_rate = 0.9\nopen_seconds = 5\n"
        'half_open_probes = 2\n[integrations.delta]\nkind = "fake"',
    )
)
FLOW_TARGETS = ("alpha", "gamma", "trio")


class RecordingNotifier(Notifier):
    """Keeps what it would have sent to systemd."""

    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[dict[str, str]] = []

    def send(self, **fields: str) -> None:
        self.sent.append(fields)


async def slow(env: Envelope) -> Outcome:
    await trio.sleep(0.5)  # attempts are in flight when the reload comes
    return Delivered(f"d-{env.id}")


def slow_everywhere(adapters: dict[str, FakeAdapter]) -> None:
    for adapter in adapters.values():
        adapter.behaviour = slow


class Injected(Exception):
    """The failure a test puts into one step."""


def after_first_call(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, then a failure; the first call only (the rollback may call it again)."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        result = real(*args, **kwargs)
        if calls != 1:
            return result
        if isinstance(result, Awaitable):

            async def then_fail() -> Any:
                await result
                raise Injected("after the step")

            return then_fail()
        raise Injected("after the step")

    return wrapper


def at_call(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, except that its ``n``-th call fails before doing anything."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Injected(f"in the middle of the step (call {n})")
        return real(*args, **kwargs)

    return wrapper


def at_call_async(n: int, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    calls = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            await trio.lowlevel.checkpoint()
            raise Injected(f"in the middle of the step (call {n})")
        return await real(*args, **kwargs)

    return wrapper


Inject = Callable[[pytest.MonkeyPatch], None]


def after(step: str) -> Inject:
    return lambda mp: mp.setattr(Reloader, step, after_first_call(getattr(Reloader, step)))


# (the step named in the answer, how to break it)
CASES: dict[str, tuple[str, Inject]] = {
    "build adapters": ("building adapters", after("_build")),
    "stop dispatchers": ("stopping dispatchers", after("_stop_dispatchers")),
    "stop dispatchers, midway": (
        "stopping dispatchers",
        lambda mp: mp.setattr(Dispatcher, "stop", at_call_async(2, Dispatcher.stop)),
    ),
    "stop actors": ("stopping actors", after("_stop_actors")),
    "stop actors, midway": (
        "stopping actors",
        lambda mp: mp.setattr(
            Supervisor, "wait_stopped", at_call_async(1, Supervisor.wait_stopped)
        ),
    ),
    "switch": ("switching", after("_switch")),
    "re-read the calendar": ("re-reading the calendar", after("_use_calendar")),
    "re-read the calendar, midway": (
        "re-reading the calendar",
        lambda mp: mp.setattr(ModeController, "use", at_call(1, ModeController.use)),
    ),
    "start actors": ("starting", after("_start_actors")),
    "start actors, midway": (
        "starting",
        lambda mp: mp.setattr(_reload, "restore_budgets", at_call_async(2, restore_budgets)),
    ),
    "start dispatchers": ("starting", after("_start_dispatchers")),
    "start dispatchers, midway": (
        "starting",
        lambda mp: mp.setattr(Dispatcher, "run", at_call_async(3, Dispatcher.run)),
    ),
}


def parse(core: Core, text: str) -> _config.Config:
    return _config.parse(text, core.daemon.config.source, fake_kinds(core.adapters))


async def flow(core: Core, ids: list[int], rounds: int) -> None:
    for n in range(rounds):
        for target in FLOW_TARGETS:
            (accepted,) = await core.daemon.submit([MessageIn(target, {"n": n})])
            ids.append(int(accepted["id"]))
        await trio.sleep(0.1)


def every_dispatcher_runs(core: Core) -> bool:
    """Each target's dispatcher is one the reloader started and has not stopped."""
    running = {id(d) for d in core.parts.reloader._running}
    return all(id(d) in running for d in core.daemon.dispatchers.values()) and len(running) == len(
        core.daemon.dispatchers
    )


def assert_exactly_once(core: Core, ids: list[int]) -> None:
    assert {core.store.rows[i].status for i in ids} == {MessageStatus.DELIVERED}
    calls = Counter(e.id for a in core.adapters.values() for e in a.calls)
    assert max(calls.values()) == 1, "a message was attempted twice"
    assert set(ids) <= set(calls)


@pytest.mark.parametrize("case", list(CASES))
async def test_a_failure_at_any_step_rolls_back_to_the_running_set(
    case: str, tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reload answers reload_failed naming the step; the old config, actors and a running
    dispatcher per target are back; READY=1 follows RELOADING=1; every message once."""
    step, inject = CASES[case]
    notifier = RecordingNotifier()
    async with running_core(tmp_path, setup=slow_everywhere, notifier=notifier) as core:
        before, names = core.daemon.config, set(core.daemon.actors)
        targets = set(core.daemon.dispatchers)
        ids: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flow, core, ids, 30)
            await trio.sleep(1.05)
            inject(monkeypatch)
            with pytest.raises(RequestError) as caught:
                await core.parts.reloader.reload(parse(core, RELOADED))
            monkeypatch.undo()
        error = caught.value
        assert error.code is ErrorCode.RELOAD_FAILED
        assert f"while {step}:" in error.message and "rolled back" in error.message
        assert core.daemon.config is before and set(core.daemon.actors) == names
        assert set(core.daemon.dispatchers) == targets and every_dispatcher_runs(core)
        assert not core.daemon.mode.on  # the new calendar's date was not kept
        assert [next(iter(sent)) for sent in notifier.sent] == ["RELOADING", "READY"]
        assert notifier.sent[-1]["STATUS"].startswith("reload failed (see the log)")
        assert any(e.kind == "reload_rolled_back" for e in core.store.event_log)
        ids += [int(a["id"]) for a in await core.daemon.submit([MessageIn("beta", {"n": -1})])]
        await core.daemon.wait_idle(120)
        assert all(a.state is ActorState.RUNNING for a in core.daemon.actors.values())
        assert_exactly_once(core, ids)

        summary = await core.parts.reloader.reload(parse(core, RELOADED))
        assert summary.added == ["delta"] and summary.removed == ["beta"]
        mode = core.daemon.mode  # read afresh: the reload has changed it
        assert every_dispatcher_runs(core) and mode.on
        later = [int(a["id"]) for a in await core.daemon.submit([MessageIn("delta", {})])]
        await core.daemon.wait_idle(120)
        assert_exactly_once(core, ids + later)


async def test_a_failure_after_dropping_names_the_dead_letters(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forced reload that fails after dead-lettering beta's work rolls back and says which
    messages it dead-lettered (they stay dead letters, replayable); beta runs again."""
    async with running_core(tmp_path, setup=slow_everywhere) as core:
        await core.daemon.set_paused("beta", True)
        ids = [int(a["id"]) for a in await core.daemon.submit([MessageIn("beta", {})] * 2)]
        monkeypatch.setattr(Reloader, "_drop", after_first_call(Reloader._drop))
        with pytest.raises(RequestError) as caught:
            await core.parts.reloader.reload(parse(core, RELOADED), drop_queued=True)
        monkeypatch.undo()
        assert caught.value.code is ErrorCode.RELOAD_FAILED
        assert "while dropping stranded work" in caught.value.message
        assert "dead-lettered before the failure (replayable): beta 2" in caught.value.message
        assert {core.store.rows[i].status for i in ids} == {MessageStatus.DEAD}
        assert "beta" in core.daemon.actors and every_dispatcher_runs(core)
        await core.daemon.set_paused("beta", False)
        assert sorted(await core.store.replay_dead(target="beta")) == sorted(ids)
        await core.daemon.wait_idle(60)
        assert {core.store.rows[i].status for i in ids} == {MessageStatus.DELIVERED}


async def test_work_submitted_to_a_removed_target_mid_reload_is_refused_and_rolled_back(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message for beta accepted after the plan (beta then had nothing) would be stranded:
    the reload is refused as would_strand at the switch, and rolled back; beta delivers it."""
    async with running_core(tmp_path, setup=slow_everywhere) as core:
        real = Reloader._stop_actors
        late: list[int] = []

        async def submit_then_stop(self: Reloader, actors: Any) -> None:
            late.extend(int(a["id"]) for a in await core.daemon.submit([MessageIn("beta", {})]))
            await real(self, actors)

        monkeypatch.setattr(Reloader, "_stop_actors", submit_then_stop)
        with pytest.raises(RequestError) as caught:
            await core.parts.reloader.reload(parse(core, RELOADED))
        monkeypatch.undo()
        assert caught.value.code is ErrorCode.WOULD_STRAND
        assert "beta (1 queued)" in caught.value.message
        assert "beta" in core.daemon.actors and every_dispatcher_runs(core)
        await core.daemon.wait_idle(60)
        assert core.store.rows[late[0]].status is MessageStatus.DELIVERED
