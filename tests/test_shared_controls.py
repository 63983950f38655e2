"""What one node sets, another follows at its heartbeat: the operator's pauses, the
leader's holds on sending domains and the wedding-day override, read from the shared
store (here the in-memory store, written as another node would write it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ringbearer._delivery import Priority
from ringbearer._shared_controls import SharedControls
from ringbearer.control import MessageIn
from ringbearer.deliverability._guard import hold_key
from ringbearer.store import MessageStatus, OverrideRecord

from .harness import Core, running_core, wall


def follower(core: Core) -> SharedControls:
    parts = core.parts
    return SharedControls(
        core.store, parts.fleet, core.store, parts.wakeups, parts.events.guard, parts.mode
    )


async def test_a_pause_kept_by_another_node_stops_this_ones_sending(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Paused in the store: this node's actor stops at the next follow, and starts again
    when the store says resumed; what waited is then sent."""
    async with running_core(tmp_path) as core:
        actors = core.daemon.actors
        await core.store.set_paused("alpha", True)
        await follower(core).follow()
        assert actors["alpha"].paused and not actors["beta"].paused
        await core.daemon.submit([MessageIn("alpha", {"n": 1})])
        await trio.sleep(5)
        assert core.store.by_status(MessageStatus.QUEUED) == [1]
        await core.store.set_paused("alpha", False)
        await follower(core).follow()
        assert [n for n, a in actors.items() if a.paused] == []
        await trio.sleep(5)
        assert core.store.by_status(MessageStatus.DELIVERED) == [1]


async def test_a_group_paused_elsewhere_is_paused_here_and_a_hold_is_not_a_part(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A group's dispatcher follows too; a domain's hold in the same table pauses no part."""
    async with running_core(tmp_path) as core:
        await core.store.set_paused("trio", True)
        await core.store.set_paused(hold_key("example.com"), True)
        await follower(core).follow()
        assert core.daemon.dispatchers["trio"].paused
        assert not any(a.paused for a in core.daemon.actors.values())


async def test_the_leaders_hold_on_a_domain_holds_this_nodes_marketing(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Only the leader's guard pauses a domain; every node's gate holds its mail."""
    async with running_core(tmp_path) as core:
        guard = core.parts.events.guard
        assert not guard.is_held("example.com", "marketing", Priority.NORMAL)
        await core.store.set_paused(hold_key("example.com"), True)
        await follower(core).follow()
        assert guard.is_held("example.com", "marketing", Priority.NORMAL)
        assert not guard.is_held("example.com", "marketing", Priority.CRITICAL)
        assert await guard.follow() == []  # followed already: nothing changes
        await core.store.set_paused(hold_key("example.com"), False)
        assert await guard.follow() == ["example.com"]
        assert not guard.is_held("example.com", "marketing", Priority.NORMAL)


async def test_the_override_kept_elsewhere_is_followed_and_nothing_changes_twice(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with running_core(tmp_path) as core:
        await core.store.set_mode_override(OverrideRecord(True, None, wall()))
        await follower(core).follow()
        assert core.daemon.mode.on
        await follower(core).follow()
        kinds = [e.kind for e in core.store.event_log]
        assert kinds.count("wedding_day_on") == 1


async def test_a_pause_being_made_here_is_not_undone_by_a_follow(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's pause is applied, then kept: a follow reading the store in between
    would see no pause. It waits for the pause to be kept instead."""
    async with running_core(tmp_path) as core:
        keeping, kept = trio.Event(), trio.Event()
        set_paused = core.store.set_paused

        async def slow(name: str, paused: bool) -> None:
            keeping.set()
            await kept.wait()
            await set_paused(name, paused)

        monkeypatch.setattr(core.store, "set_paused", slow)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(core.daemon.set_paused, "alpha", True)
            await keeping.wait()
            nursery.start_soon(follower(core).follow)
            await trio.sleep(1)
            kept.set()
        assert core.daemon.actors["alpha"].paused


async def test_a_follow_that_read_before_a_pause_was_kept_leaves_it_be(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow's read of the store is answered before the operator's pause is kept, and
    returns after: it applies nothing this beat, and the next beat finds the pause kept."""
    async with running_core(tmp_path) as core:
        read, answer = trio.Event(), trio.Event()
        paused = core.store.paused

        async def slow_read() -> set[str]:
            found = await paused()  # the store as it was: nothing paused
            read.set()
            await answer.wait()
            return found

        monkeypatch.setattr(core.store, "paused", slow_read)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower(core).follow)
            await read.wait()
            await core.daemon.set_paused("alpha", True)  # applied and kept meanwhile
            answer.set()
        assert core.daemon.actors["alpha"].paused
        monkeypatch.setattr(core.store, "paused", paused)
        await follower(core).follow()
        assert core.daemon.actors["alpha"].paused
