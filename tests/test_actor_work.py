"""How an actor takes work: batches, quota budgets, message-scoped retries, saved steps."""

from __future__ import annotations

from pathlib import Path

import trio
from prometheus_client import generate_latest

from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Scope, Taken
from ringbearer.control import MessageIn
from ringbearer.integrations import BatchLimits, FakeAdapter
from ringbearer.resilience import BreakerState
from ringbearer.store import MemoryStore, MessageStatus

from .harness import FAKE_CONFIG, running_core, wall

BATCHING = FAKE_CONFIG.replace(
    '[integrations.alpha]\nkind = "fake"',
    '[integrations.alpha]\nkind = "fake"\nbatch_size = 10\nbatch_wait_seconds = 0.5',
)
BUDGETED = FAKE_CONFIG.replace(
    '[integrations.alpha]\nkind = "fake"',
    '[integrations.alpha]\nkind = "fake"\n'
    'budgets = [{ limit = 5, per = "minute", critical_reserve = 0.4 }]',
)


def msg(target: str, n: int = 0, priority: str = "normal") -> MessageIn:
    return MessageIn(target=target, payload={"n": n}, priority=priority)


async def test_a_batching_actor_gathers_batches_and_settles_each_message(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Batches hold at most batch_size messages; each message ends by its own outcome."""

    async def odd_refused(env: Envelope) -> Outcome:
        return Permanent("refused record", status=400) if env.payload["n"] % 2 else Delivered()

    async with running_core(
        tmp_path, BATCHING, setup=lambda a: setattr(a["alpha"], "behaviour", odd_refused)
    ) as core:
        accepted = await core.daemon.submit([msg("alpha", i) for i in range(45)])
        await core.daemon.wait_idle(60)
        batches = core.adapters["alpha"].batches
        assert max(map(len, batches)) == 10 and sum(map(len, batches)) == 45
        assert len(batches) < 10  # gathered, not one request a message
        for a in accepted:
            row = core.store.rows[a["id"]]
            expected = MessageStatus.DEAD if row.payload["n"] % 2 else MessageStatus.DELIVERED
            assert row.status is expected
        # A partly refused batch is a provider that answered: the breaker stays closed.
        assert core.daemon.actors["alpha"].breaker.state is BreakerState.CLOSED


async def test_a_lone_message_waits_no_longer_than_the_batch_wait(
    tmp_path: Path, autojump_clock: object
) -> None:
    """With nothing else to gather, a batch of one goes out once batch_wait_seconds pass."""
    async with running_core(tmp_path, BATCHING) as core:
        start = trio.current_time()
        (accepted,) = await core.daemon.submit([msg("alpha")])
        await core.daemon.wait_idle(60)
        assert core.store.rows[accepted["id"]].status is MessageStatus.DELIVERED
        assert core.adapters["alpha"].batches == [[accepted["id"]]]
        assert 0.5 <= trio.current_time() - start < 1.0


async def test_message_scoped_retries_leave_the_breaker_closed(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Retries about one message (a throttled user) are not an outage of the integration."""
    seen: dict[int, int] = {}

    async def throttled_once(env: Envelope) -> Outcome:
        seen[env.id] = seen.get(env.id, 0) + 1
        if seen[env.id] == 1:
            return Retry("user throttled", taken=Taken.NO, after=30.0, scope=Scope.MESSAGE)
        return Delivered()

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", throttled_once)
    ) as core:
        await core.daemon.submit([msg("alpha", i) for i in range(20)])
        await core.daemon.wait_idle(600)
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 20
        actor = core.daemon.actors["alpha"]
        assert actor.breaker.state is BreakerState.CLOSED
        assert not [e for e in core.store.event_log if e.kind == "breaker_opened"]


async def test_a_spent_budget_holds_back_other_work_and_lets_critical_through(
    tmp_path: Path, autojump_clock: object
) -> None:
    """5 a minute with 40% for critical: 3 normal, then 2 critical, in the first minute."""
    async with running_core(tmp_path, BUDGETED) as core:
        start = trio.current_time()
        await core.daemon.submit([msg("alpha", i) for i in range(6)])
        await trio.sleep(5)
        calls = core.adapters["alpha"].calls
        assert len(calls) == 3
        await core.daemon.submit([msg("alpha", 100 + i, "critical") for i in range(3)])
        await trio.sleep(5)
        assert sorted(c.payload["n"] for c in calls[3:]) == [100, 101]
        await core.daemon.wait_idle(600)
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 9
        # Nothing went out faster than five in any minute.
        times = [e.at for e in core.store.event_log if e.kind == "attempted"]
        assert all(b - a >= 60 for a, b in zip(times, times[5:], strict=False))
        assert trio.current_time() - start >= 60
        returned = [e for e in core.store.event_log if e.kind == "returned"]
        assert returned and all(e.detail is None or "budget" in str(e.detail) for e in returned)


async def test_a_spent_budget_is_remembered_across_a_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    """After a restart, the sends of the last window still count against the budget."""
    store = MemoryStore(wall)
    async with running_core(tmp_path, BUDGETED, store=store) as core:
        await core.daemon.submit([msg("alpha", i) for i in range(3)])
        await core.daemon.wait_idle(60)
    async with running_core(tmp_path, BUDGETED, store=store) as core:
        (budget,) = core.daemon.actors["alpha"].budgets.snapshot()
        assert (budget.used, budget.left_for_others, budget.left_for_critical) == (3, 0, 2)
        (alpha,) = [i for i in core.daemon.status()["integrations"] if i["name"] == "alpha"]
        assert alpha["budgets"] == [
            {"limit": 5, "per": "minute", "used": 3, "left_for_critical": 2, "left_for_others": 0}
        ]
        scrape = generate_latest(core.parts.base.metrics.registry).decode()
        assert (
            'ringbearer_budget_remaining{integration="alpha",per="minute",work="critical"} 2.0'
            in scrape
        )
        assert (
            'ringbearer_budget_remaining{integration="alpha",per="minute",work="other"} 0.0'
            in scrape
        )
        await core.daemon.submit([msg("alpha", 9)])
        await trio.sleep(10)
        assert core.adapters["alpha"].calls == []


async def test_saved_steps_come_back_with_the_message_on_its_next_attempt(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A step saved through the checkpoint is in the envelope of the retry, and audited."""
    progress_seen: list[dict[str, object]] = []

    async def two_steps(env: Envelope) -> Outcome:
        progress_seen.append(dict(env.progress))
        if not env.progress:
            await core.adapters["alpha"].checkpoint(env.id, {"container": "c-1"})
            return Retry("publish failed", taken=Taken.NO, after=1.0)
        return Delivered(f"published {env.progress['container']}")

    async with running_core(
        tmp_path, setup=lambda a: setattr(a["alpha"], "behaviour", two_steps)
    ) as core:
        (accepted,) = await core.daemon.submit([msg("alpha")])
        await core.daemon.wait_idle(60)
        row = core.store.rows[accepted["id"]]
        assert (row.status, row.provider_id) == (MessageStatus.DELIVERED, "published c-1")
        assert progress_seen == [{}, {"container": "c-1"}]
        kinds = [e.kind for e in core.store.event_log if e.message_id == accepted["id"]]
        assert "progressed" in kinds


async def test_a_message_that_must_go_alone_never_rides_in_a_batch(
    tmp_path: Path, autojump_clock: object
) -> None:
    """With an 'alone' rule (retries, for Resend), retried messages go as batches of one."""
    tries: dict[int, int] = {}

    async def fail_first(env: Envelope) -> Outcome:
        tries[env.id] = tries.get(env.id, 0) + 1
        if tries[env.id] == 1:
            return Retry("HTTP 503", taken=Taken.NO, after=1.0, status=503)
        return Delivered()

    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters["alpha"].behaviour = fail_first
        adapters["alpha"].batching = BatchLimits(10, 0.5, alone=lambda e: e.attempts > 0)

    async with running_core(tmp_path, BATCHING, setup=setup) as core:
        ids = {a["id"] for a in await core.daemon.submit([msg("alpha", i) for i in range(12)])}
        await core.daemon.wait_idle(600)
        batches = core.adapters["alpha"].batches
        calls = iter(core.adapters["alpha"].calls)  # the batches' envelopes, in order
        attempts = [[next(calls).attempts for _ in batch] for batch in batches]
        retried = [a for a in attempts if any(n > 0 for n in a)]
        assert len(retried) == 12 and all(len(a) == 1 for a in retried)
        assert max(map(len, batches)) > 1  # first attempts were still gathered
        assert all(core.store.rows[i].status is MessageStatus.DELIVERED for i in ids)
