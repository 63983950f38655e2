"""Delivery through actors and dispatchers: retries, failover, breakers, dead letters."""

from __future__ import annotations

from pathlib import Path

import trio

from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from ringbearer.control import MessageIn
from ringbearer.store import MessageStatus

from .harness import FAKE_CONFIG, running_core


def msg(target: str, n: int = 0, priority: str = "normal") -> MessageIn:
    return MessageIn(target=target, payload={"n": n}, priority=priority)


async def test_direct_target_delivers_each_message_once(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Messages sent to one integration are each delivered exactly once."""
    async with running_core(tmp_path) as core:
        await core.daemon.submit([msg("alpha", i) for i in range(20)])
        await core.daemon.wait_idle(60)
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 20
        ids = [e.id for e in core.adapters["alpha"].calls]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 20


async def test_retry_waits_for_the_provider_requested_time(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A 429-style retry with a wait is not attempted again before that wait."""
    times: list[float] = []

    async def behaviour(env: Envelope) -> Outcome:
        times.append(trio.current_time())
        if len(times) < 3:
            return Retry(reason="429", taken=Taken.NO, after=30.0)
        return Delivered("ok")

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", behaviour)
    ) as core:
        (accepted,) = await core.daemon.submit([msg("alpha")])
        await core.daemon.wait_idle(600)
        assert core.store.rows[accepted["id"]].status is MessageStatus.DELIVERED
        assert core.store.rows[accepted["id"]].attempts == 3
        assert times[1] - times[0] >= 30.0 and times[2] - times[1] >= 30.0


async def test_group_fails_over_at_once_when_not_taken(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A failure the provider certainly did not take moves the message to the next member now."""

    async def refuse(env: Envelope) -> Outcome:
        return Retry(reason="connection refused", taken=Taken.NO)

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", refuse)
    ) as core:
        start = trio.current_time()
        (accepted,) = await core.daemon.submit([msg("trio")])
        await core.daemon.wait_idle(60)
        row = core.store.rows[accepted["id"]]
        assert row.status is MessageStatus.DELIVERED and row.integration == "beta"
        assert trio.current_time() - start < 1.0
        assert [e.integration for e in core.adapters["beta"].calls] == ["beta"]


async def test_ambiguous_failure_retries_same_member_with_same_key(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A timeout after sending is retried on the same provider with the same key before failover."""
    seen: list[tuple[str, str]] = []

    async def flaky(env: Envelope) -> Outcome:
        seen.append((env.integration, env.idempotency_key))
        if len(seen) == 1:
            return Retry(reason="read timeout", taken=Taken.MAYBE)
        return Delivered("ok")

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", flaky)
    ) as core:
        (accepted,) = await core.daemon.submit([msg("trio")])
        await core.daemon.wait_idle(600)
        assert [s[0] for s in seen] == ["alpha", "alpha"]
        assert seen[0][1] == seen[1][1] == accepted["key"]


async def test_permanent_failure_is_dead_lettered_not_failed_over(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A request the provider refuses as wrong becomes a dead letter with the reason."""

    async def reject(env: Envelope) -> Outcome:
        return Permanent(reason="422 invalid_from_address", status=422)

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", reject)
    ) as core:
        (accepted,) = await core.daemon.submit([msg("trio")])
        await core.daemon.wait_idle(60)
        row = core.store.rows[accepted["id"]]
        assert row.status is MessageStatus.DEAD and row.last_error == "422 invalid_from_address"
        assert core.adapters["beta"].calls == []


async def test_exhausted_retries_become_a_dead_letter(
    tmp_path: Path, autojump_clock: object
) -> None:
    """After max_attempts ambiguous failures the message is dead-lettered with why."""

    async def fail(env: Envelope) -> Outcome:
        return Retry(reason="503", taken=Taken.MAYBE, status=503)

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", fail)
    ) as core:
        (accepted,) = await core.daemon.submit([msg("alpha")])
        await core.daemon.wait_idle(3600)
        row = core.store.rows[accepted["id"]]
        assert row.status is MessageStatus.DEAD
        assert row.attempts == 5
        assert "gave up after 5 attempts" in (row.last_error or "")


async def test_breaker_opens_routes_around_and_closes_through_half_open(
    tmp_path: Path, autojump_clock: object
) -> None:
    """An outage opens alpha's breaker; the group uses beta; alpha recovers via half-open."""
    outage = True

    async def alpha(env: Envelope) -> Outcome:
        return Retry(reason="503", taken=Taken.NO, status=503) if outage else Delivered("a")

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", alpha)
    ) as core:
        await core.daemon.submit([msg("trio", i) for i in range(10)])
        await core.daemon.wait_idle(60)
        actor = core.daemon.actors["alpha"]
        assert actor.breaker.state.value == "open"
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 10
        outage = False
        await trio.sleep(25)  # past open_seconds: the next message is alpha's probe
        await core.daemon.submit([msg("trio", 99)])
        await core.daemon.wait_idle(60)
        assert actor.breaker.state.value == "closed"
        kinds = [
            (e.kind, (e.detail or {}).get("new"))
            for e in core.store.event_log
            if e.kind == "breaker_changed"
        ]
        assert kinds == [
            ("breaker_changed", "open"),
            ("breaker_changed", "half_open"),
            ("breaker_changed", "closed"),
        ]


async def test_priority_orders_ready_messages(tmp_path: Path, autojump_clock: object) -> None:
    """Critical messages queued behind bulk ones are delivered first (one lane: strict order)."""
    one_lane = FAKE_CONFIG.replace(
        '[integrations.alpha]\nkind = "fake"', '[integrations.alpha]\nkind = "fake"\nlanes = 1'
    )
    assert one_lane != FAKE_CONFIG
    async with running_core(tmp_path, one_lane) as core:
        await core.daemon.set_paused("alpha", True)
        await core.daemon.submit([msg("alpha", i, "bulk") for i in range(5)])
        await core.daemon.submit([msg("alpha", 100 + i, "critical") for i in range(3)])
        await core.daemon.set_paused("alpha", False)
        await core.daemon.wait_idle(60)
        order = [e.payload["n"] for e in core.adapters["alpha"].calls]
        assert order == [100, 101, 102, 0, 1, 2, 3, 4]


async def test_breaker_state_survives_a_restart(tmp_path: Path, autojump_clock: object) -> None:
    """An open breaker is still open, with its remaining time, after the daemon restarts."""

    async def down(env: Envelope) -> Outcome:
        return Retry(reason="503", taken=Taken.NO, status=503)

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", down)
    ) as core:
        await core.daemon.submit([msg("alpha", i) for i in range(6)])
        await core.daemon.wait_idle(5)
        assert core.daemon.actors["alpha"].breaker.state.value == "open"
        store = core.store
    async with running_core(tmp_path, store=store) as again:
        breaker = again.daemon.actors["alpha"].breaker
        assert breaker.state.value == "open"
        assert 0 < breaker.snapshot().open_remaining <= 20
        assert again.daemon.actors["beta"].breaker.state.value == "closed"
