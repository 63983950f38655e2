"""Live reload: integrations added, removed and re-tuned under a steady flow, losing nothing."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from ringbearer import _config
from ringbearer._actor import ActorState
from ringbearer._delivery import Delivered, Envelope, Outcome
from ringbearer._errors import ConfigError, RequestError, RingbearerError
from ringbearer._reload import Reloader, ReloadPlan
from ringbearer._systemd import Notifier
from ringbearer._wedding import Cause
from ringbearer.control import MessageIn
from ringbearer.integrations import FakeAdapter, ProviderKind, fake_kinds
from ringbearer.store import MessageStatus

from .harness import FAKE_CONFIG, Core, running_core, wall, wire

# beta goes, delta comes, alpha's breaker changes, gamma stays as it is.
RELOADED = (
    FAKE_CONFIG.replace('[integrations.beta]\nkind = "fake"\n', "")
    .replace('trio = ["alpha", "beta", "gamma"]', 'trio = ["alpha", "gamma"]')
    .replace(
        '[integrations.alpha]\nkind = "fake"',
        '[integrations.alpha]\nkind = "fake"\n[integrations.alpha.breaker]\n'
        "window_seconds = 10\nminimum_calls = 2\nfailure_rate = 0.9\nopen_seconds = 5\n"
        'half_open_probes = 2\n[integrations.delta]\nkind = "fake"',
    )
)


def msg(target: str, n: int) -> MessageIn:
    return MessageIn(target=target, payload={"n": n})


async def slow(env: Envelope) -> Outcome:
    await trio.sleep(0.5)  # attempts are in flight when the reload comes
    return Delivered(f"d-{env.id}")


def slow_everywhere(adapters: dict[str, FakeAdapter]) -> None:
    for adapter in adapters.values():
        adapter.behaviour = slow


async def test_reload_adds_removes_and_retunes_without_losing_or_repeating(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Under a steady flow, a reload changes three integrations; every message ends once."""
    async with running_core(tmp_path, setup=slow_everywhere) as core:
        daemon = core.daemon
        ids: list[int] = []

        async def flow(targets: list[str], rounds: int) -> None:
            for n in range(rounds):
                for target in targets:
                    (a,) = await daemon.submit([msg(target, n)])
                    ids.append(a["id"])
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flow, ["alpha", "gamma", "trio"], 40)
            await trio.sleep(2)
            (beta_id,) = [a["id"] for a in await daemon.submit([msg("beta", 0)])]
            new = _config.parse(RELOADED, daemon.config.source, kinds(core))
            # beta still holds its message: only a reload told to drop such work goes on.
            summary = wire(await daemon.parts.reloader.reload(new, drop_queued=True))
        (delta,) = await daemon.submit([msg("delta", 1)])
        ids.append(delta["id"])
        await until(lambda: all(core.store.rows[i].status is MessageStatus.DELIVERED for i in ids))

        assert summary["added"] == ["delta"] and summary["removed"] == ["beta"]
        assert summary["changed"] == ["alpha"] and summary["groups_changed"]
        assert daemon.actors["alpha"].settings.breaker.open_seconds == 5
        assert set(daemon.actors) == {"alpha", "gamma", "delta"}
        delivered = core.store.by_status(MessageStatus.DELIVERED)
        assert set(delivered) >= set(ids)
        # Exactly once: no message was attempted twice, not even the ones moved by the reload.
        calls = Counter(e.id for a in core.adapters.values() for e in a.calls)
        assert max(calls.values()) == 1
        assert len(core.store.by_status(MessageStatus.INFLIGHT)) == 0
        # beta's own message: delivered by beta on its way out, or a dead letter saying why.
        assert core.store.rows[beta_id].status in (MessageStatus.DEAD, MessageStatus.DELIVERED)
        with pytest.raises(RequestError, match="unknown target 'beta'"):
            await daemon.submit([msg("beta", 2)])
        assert any(e.kind == "reloaded" for e in core.store.event_log)


async def until(condition: Callable[[], bool], seconds: float = 600) -> None:
    """Wait (in virtual time) until ``condition`` holds; fail after ``seconds``."""
    with trio.fail_after(seconds):
        # Polling in virtual time: these conditions have no event of their own.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.5)


def kinds(core: Core) -> dict[str, ProviderKind]:
    return fake_kinds(core.adapters)


async def test_an_invalid_config_file_changes_nothing(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A reload from a broken file is refused with every problem named; the daemon runs on."""
    async with running_core(tmp_path) as core:
        daemon = core.daemon
        source = daemon.config.source
        source.write_text(FAKE_CONFIG.replace("lanes = 2", "lanes = -1") + "\n[bogus]\n")
        before = daemon.config
        with pytest.raises(RequestError, match="invalid_config") as caught:
            await daemon.reload_file()
        problems = caught.value.__cause__
        assert isinstance(problems, ConfigError)
        assert {p.path for p in problems.problems} >= {"defaults.lanes", "bogus"}
        assert daemon.config is before
        refused = [e for e in core.store.event_log if e.kind == "reload_refused"]
        assert len(refused) == 1
        await daemon.submit([msg("alpha", 1)])
        await daemon.wait_idle(60)
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 1


async def test_a_failed_actor_gets_a_fresh_start_on_reload(
    tmp_path: Path, autojump_clock: object
) -> None:
    """An integration the supervisor gave up on is rebuilt by a reload of the same file."""

    async def crash(env: Envelope) -> Outcome:
        raise RuntimeError("provider library bug")

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["gamma"], "behaviour", crash)
    ) as core:
        daemon = core.daemon
        daemon.config.source.write_text(FAKE_CONFIG)
        accepted = await daemon.submit([msg("gamma", n) for n in range(8)])
        await until(lambda: daemon.actors["gamma"].state is ActorState.FAILED)
        core.adapters["gamma"].behaviour = slow
        summary = await daemon.reload_file()
        assert summary["changed"] == ["gamma"] and not summary["added"]
        await daemon.wait_idle(60)
        assert daemon.actors["gamma"].state is ActorState.RUNNING
        statuses = [core.store.rows[a["id"]].status for a in accepted]
        assert statuses.count(MessageStatus.DELIVERED) >= 6  # at most 2 were quarantined
        assert set(statuses) <= {MessageStatus.DELIVERED, MessageStatus.DEAD}


class RecordingNotifier(Notifier):
    """A notifier that keeps what it would have sent to systemd."""

    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[dict[str, str]] = []

    def send(self, **fields: str) -> None:
        self.sent.append(fields)


async def test_a_reload_that_fails_midway_still_tells_systemd_it_is_ready(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELOADING=1 is always followed by READY=1, with a STATUS saying the reload failed."""
    start = Reloader._start

    async def start_then_fail(self: Reloader, plan: ReloadPlan) -> None:
        await start(self, plan)
        raise RingbearerError("the store refuses writes")

    notifier = RecordingNotifier()
    async with running_core(tmp_path, notifier=notifier) as core:
        daemon = core.daemon
        monkeypatch.setattr(Reloader, "_start", start_then_fail)
        with pytest.raises(RingbearerError, match="refuses writes"):
            await daemon.reload(_config.parse(RELOADED, daemon.config.source, kinds(core)))
        monkeypatch.undo()
        assert [next(iter(sent)) for sent in notifier.sent] == ["RELOADING", "READY"]
        assert notifier.sent[-1]["STATUS"].startswith("reload failed (see the log); running on: ")
        await daemon.reload(_config.parse(FAKE_CONFIG, daemon.config.source, kinds(core)))
        assert notifier.sent[-1]["READY"] == "1"
        assert "failed" not in notifier.sent[-1]["STATUS"]


async def test_a_reload_that_adds_today_to_the_calendar_turns_the_mode_on_at_once(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A date added by a reload applies when the reload returns, not at the next hourly look."""
    today = dt.datetime.fromtimestamp(wall(), dt.UTC).date().isoformat()
    text = FAKE_CONFIG.replace("weekdays = []", f'weekdays = []\ndates = ["{today}"]')
    async with running_core(tmp_path) as core:
        daemon = core.daemon
        assert not daemon.mode.on
        await daemon.reload(_config.parse(text, daemon.config.source, kinds(core)))
        mode = daemon.mode  # read afresh: the reload has changed it
        assert mode.on and mode.cause is Cause.DATE and mode.detail == today
        assert all(a.wedding == daemon.config.wedding_day for a in daemon.actors.values())
        assert all(d.defer_bulk for d in daemon.dispatchers.values())
        assert [e.kind for e in core.store.event_log if e.kind.startswith("wedding_day")] == [
            "wedding_day_on"
        ]
