"""Erasure jobs on the real SQLite store and key store files: every step, and a crash at each.

A crash is the job stopping with an exception either after a step's work
and before it is recorded, or just after it is recorded; the files are then
closed and opened again, as a restart finds them after SIGKILL (each step
awaits its own commits, so nothing a step did is only in memory). The job
must finish on the next start, the subject's data must be gone, and every
other subject's messages must be intact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio_asyncio

from ringbearer.control import MessageIn
from ringbearer.privacy import Kek
from ringbearer.privacy._books import ErasedBook
from ringbearer.privacy._erasure import STEPS, Erasure, ErasureJobs, job_identity, outcome_of
from ringbearer.privacy._keystore import SqliteKeyStore
from ringbearer.privacy._vault import Erased, Vault
from ringbearer.store import (
    ERASED_PAYLOAD,
    Attempt,
    ErasureRecord,
    NewMessage,
    Settle,
    SettleKind,
    SqliteStore,
    Store,
)

T0 = 1_800_000_000.0
ANN = "Ann.Canary@Example.org"
BEN = "ben@example.org"
DELETIONS = ["amplitude_deletion", "mixpanel_deletion"]
FAMILIES = {"email": "email", "mixpanel": "analytics", **dict.fromkeys(DELETIONS, "privacy")}


class Crash(Exception):
    """Where the test stops the job, as a SIGKILL would."""


def wall() -> float:
    return T0


@attrs.define
class World:
    """One start of the daemon's erasure parts over the files."""

    store: Store
    vault: Vault
    suppressed: list[str] = attrs.Factory(list)
    sent: list[MessageIn] = attrs.Factory(list)

    async def seal(self, target: str, payload: dict[str, Any], *who: str) -> int:
        subjects = await self.vault.ensure(list(who))
        sealed = await self.vault.seal_payload(subjects, payload)
        message = NewMessage(target, sealed, subjects=tuple(sorted(set(subjects))))
        (accepted,) = await self.store.submit([message])
        return accepted.id

    async def submit(self, messages: Sequence[MessageIn]) -> list[int]:
        ids = []
        for m in messages:
            assert m.subjects is not None
            self.sent.append(m)
            subjects = await self.vault.ensure(m.subjects)
            sealed = await self.vault.seal_payload(subjects, m.payload)
            new = NewMessage(m.target, sealed, idempotency_key=m.key, subjects=tuple(subjects))
            ids += [a.id for a in await self.store.submit([new])]
        return ids

    async def suppress(self, subject: str) -> None:
        self.suppressed.append(subject)

    def erasure(self) -> Erasure:
        return Erasure(
            self.store, self.vault, ErasedBook(), self.suppress, self.submit,
            lambda: list(DELETIONS), FAMILIES.__getitem__, wall, poll_seconds=0.01,
        )  # fmt: skip


@asynccontextmanager
async def started(folder: Path, kek: Kek) -> AsyncIterator[World]:
    async with trio_asyncio.open_loop(), SqliteStore.open(folder / "rb.db", clock=wall) as store:
        await store.recover_inflight()  # as the daemon does at each start
        keys = await SqliteKeyStore.open(folder / "keys.db")
        try:
            yield World(store, await Vault.open(keys, kek, wall=wall))
        finally:
            await keys.close()


async def deliver_everything(store: Store, target: str) -> None:
    """A provider that takes whatever is sent to ``target``."""
    while True:
        for c in await store.claim(target, 100):
            attempt = Attempt(target, T0, 0.01, "delivered")
            await store.record([Settle(c.id, target, SettleKind.DELIVERED, target, 1, T0,
                                       attempt=attempt, priority=c.priority)])  # fmt: skip
        await trio.sleep(0.01)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    for _ in range(int(seconds * 100)):
        if await check():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"not done in {seconds} s")


async def finished(store: Store, subject: str) -> bool:
    return (await store.erasures(subject=subject))[0].finished_at is not None


async def all_finished(store: Store, jobs: ErasureJobs) -> bool:
    return not (await store.erasures(unfinished=True) or jobs.running)


@asynccontextmanager
async def providers(store: Store) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for target in DELETIONS:
            nursery.start_soon(deliver_everything, store, target)
        yield
        nursery.cancel_scope.cancel()


async def seed(world: World) -> dict[str, int]:
    """Ann: a delivered email, a queued one, a dead one, an analytics event; Ben: one email."""
    ids = {
        "delivered": await world.seal("email", {"to": ANN, "text": "canary one"}, ANN),
        "queued": await world.seal("email", {"to": ANN, "text": "canary two"}, ANN),
        "dead": await world.seal("email", {"to": ANN, "text": "canary three"}, ANN),
        # the vault keeps the identity normalised; Mixpanel's id is the exact one sent
        "event": await world.seal("mixpanel", {"event": "x", "distinct_id": ANN}, ANN),
        "ben": await world.seal("email", {"to": BEN, "text": "for ben"}, BEN),
    }
    claimed = {c.id: c for c in await world.store.claim("email", 10)}
    delivered, dead = claimed[ids["delivered"]], claimed[ids["dead"]]
    back = [claimed[i] for i in claimed if i not in (ids["delivered"], ids["dead"])]
    await world.store.record(
        [
            Settle(delivered.id, "email", SettleKind.DELIVERED, "resend", 1, T0),
            Settle(dead.id, "email", SettleKind.DEAD_LETTERED, "resend", 1, T0, reason="no"),
            *[Settle(c.id, "email", SettleKind.RETURNED, "resend", 0, T0) for c in back],
        ]
    )
    await world.store.flush()
    return ids


async def check_erased(world: World, ids: dict[str, int]) -> None:
    store, vault = world.store, world.vault
    subject = vault.subject_id(ANN)
    (job,) = await store.erasures(subject=subject)
    assert job.finished_at is not None and all(job.done(step) for step in STEPS)
    assert outcome_of(job) == "completed"
    states = await store.states(list(ids.values()))
    assert states[ids["queued"]] == states[ids["dead"]] == "erased"
    assert states[ids["delivered"]] == "delivered" and states[ids["ben"]] == "queued"
    for m in await store.subject_messages(subject):
        assert m.payload == ERASED_PAYLOAD
    assert await vault.identity(subject) is None
    assert await store.erased_subjects() >= {subject}
    (ben,) = await store.subject_messages(vault.subject_id(BEN))
    assert (await vault.open_payload(ben.payload))["text"] == "for ben"
    # One deletion per provider and id (the identity, the event's exact id), whatever the
    # restarts: a resubmit after a crash carries the same keys, and is the same message.
    assert len({m.key for m in world.sent}) == len(DELETIONS) * 2
    assert {m.payload["id"] for m in world.sent} == {ANN.lower(), ANN}
    job_subject = vault.subject_id(job_identity(job.id or 0))
    deletions = await store.subject_messages(job_subject)
    assert len(deletions) == len(DELETIONS) * 2
    assert {m.status for m in deletions} == {"delivered"}
    assert await vault.identity(job_subject) is None  # the job's own key is gone too


async def test_an_erasure_runs_every_step(tmp_path: Path) -> None:
    kek = Kek.generate()
    async with started(tmp_path, kek) as world:
        ids = await seed(world)
        jobs = ErasureJobs(world.erasure())
        async with trio.open_nursery() as nursery, providers(world.store):
            await nursery.start(jobs.run)
            record = await jobs.start(world.vault.subject_id(ANN), "operator")
            again = await jobs.start(world.vault.subject_id(ANN), "someone else")
            assert again.id == record.id  # one open job per subject
            await until(lambda: finished(world.store, record.subject))
            nursery.cancel_scope.cancel()
        await check_erased(world, ids)
        assert world.suppressed == [record.subject]


@attrs.define
class CrashAt:
    """Raise as the job records ``step`` (before the store has it, or just after)."""

    store: Store
    step: str
    after: bool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        if record.done(self.step) and not self.after:
            raise Crash(f"before recording {self.step}")
        saved = await self.store.save_erasure(record)
        if record.done(self.step):
            raise Crash(f"after recording {self.step}")
        return saved


@pytest.mark.parametrize("after", [False, True], ids=["before-record", "after-record"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_crash_at_any_step_resumes_and_finishes(
    tmp_path: Path, step: str, after: bool
) -> None:
    kek = Kek.generate()
    async with started(tmp_path, kek) as world:
        ids = await seed(world)
        subject = world.vault.subject_id(ANN)
        record = await world.store.save_erasure(ErasureRecord(subject, "operator", T0))
        crashing = attrs.evolve(world.erasure(), store=CrashAt(world.store, step, after))
        async with providers(world.store):
            with pytest.raises(Crash):
                await crashing.run(record)
        sent = list(world.sent)
    async with started(tmp_path, kek) as world:  # the restart
        world.sent = sent
        jobs = ErasureJobs(world.erasure())
        async with trio.open_nursery() as nursery, providers(world.store):
            await nursery.start(jobs.run)  # resumes the unfinished job
            await until(lambda: all_finished(world.store, jobs))
            nursery.cancel_scope.cancel()
        await check_erased(world, ids)


async def test_a_sealed_copy_is_unreadable_once_the_key_is_destroyed(tmp_path: Path) -> None:
    """What erasure's ``destroy_key`` gives: the same sealed bytes no longer open."""
    async with started(tmp_path, Kek.generate()) as world:
        await world.seal("email", {"to": ANN, "text": "canary"}, ANN)
        (kept,) = await world.store.subject_messages(world.vault.subject_id(ANN))
        assert (await world.vault.open_payload(kept.payload))["text"] == "canary"
        await world.vault.destroy(world.vault.subject_id(ANN))
        with pytest.raises(Erased):
            await world.vault.open_payload(kept.payload)


@attrs.define
class FailsOnce:
    """A store whose erasure saves fail once at ``step``, as a full disk would."""

    store: Store
    step: str
    failed: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        if record.done(self.step) and not self.failed:
            self.failed = True
            raise OSError("disk full")
        return await self.store.save_erasure(record)


async def test_a_failed_step_is_tried_again_later_and_nothing_else_stops(
    autojump_clock: trio.abc.Clock,
) -> None:
    from ringbearer.privacy._keystore import MemoryKeyStore
    from ringbearer.store import MemoryStore

    world = World(MemoryStore(wall), await Vault.open(MemoryKeyStore(), Kek.generate(), wall=wall))
    await world.seal("email", {"to": ANN, "text": "canary"}, ANN)
    failing = FailsOnce(world.store, "destroy_key")
    jobs = ErasureJobs(attrs.evolve(world.erasure(), store=failing))
    async with trio.open_nursery() as nursery, providers(world.store):
        await nursery.start(jobs.run)
        record = await jobs.start(world.vault.subject_id(ANN), "operator")
        await trio.sleep(1)
        assert failing.failed and record.id in jobs.running  # waiting to try again
        await until(lambda: finished(world.store, record.subject), seconds=100)  # virtual
        nursery.cancel_scope.cancel()
    (job,) = await world.store.erasures(subject=record.subject)
    assert outcome_of(job) == "completed" and trio.current_time() >= 30
