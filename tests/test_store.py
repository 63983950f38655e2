"""The SQLite store on a real file: durability, group commit, failed commits, schema.

What every store does alike (claiming, settling, keys, queries, dead letters)
is in tests/test_store_contract.py, run on this store and the in-memory one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trio_asyncio

from ringbearer import StoreError
from ringbearer._delivery import Priority
from ringbearer.store import (
    SCHEMA_VERSION,
    Accepted,
    Attempt,
    BreakerRecord,
    KeyReused,
    NewMessage,
    Settle,
    SettleKind,
    SqliteStore,
)
from ringbearer.store._schema import MIGRATIONS


@pytest.fixture
async def loop() -> AsyncIterator[None]:
    async with trio_asyncio.open_loop():
        yield


def settle(message_id: int, kind: SettleKind, **kw: Any) -> Settle:
    settled = Settle(
        message_id=message_id,
        target="email",
        kind=kind,
        integration="resend",
        attempts=1,
        next_attempt_at=time.time(),
    )
    return attrs.evolve(settled, **kw)


async def test_submit_then_reopen_keeps_every_message(tmp_path: Path, loop: None) -> None:
    """Acknowledged messages are in the file after the store closes and reopens."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        accepted = await store.submit([NewMessage("email", {"n": i}) for i in range(50)])
    assert [a.id for a in accepted] == list(range(1, 51))
    assert len({a.idempotency_key for a in accepted}) == 50
    async with SqliteStore.open(db, clock=time.time) as store:
        assert store.counters.of("email").queued[Priority.NORMAL] == 50
        more = await store.submit([NewMessage("email", {"n": 99})])
        assert more[0].id == 51
        key = accepted[7].idempotency_key
        (again,) = await store.submit([NewMessage("email", {"n": 7}, idempotency_key=key)])
        assert again == Accepted(8, key, duplicate=True)  # keys are held across a restart
        with pytest.raises(KeyReused):
            await store.submit([NewMessage("email", {"n": 8}, idempotency_key=key)])


async def test_in_flight_messages_return_to_the_queue_on_restart(
    tmp_path: Path, loop: None
) -> None:
    """Messages claimed but never settled (a crash) are queued again, counted as an attempt."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        await store.submit([NewMessage("email", {}) for _ in range(3)])
        await store.claim("email", 2)
    async with SqliteStore.open(db, clock=time.time) as store:
        assert await store.recover_inflight() == 2
        assert store.counters.of("email").total_queued == 3
        claimed = await store.claim("email", 3)
        assert sorted(c.attempts for c in claimed) == [0, 1, 1]  # interrupted: ambiguous
        events = await store.events()
        assert sum(1 for e in events if e.kind == "recovered") == 2


async def test_attempts_and_dead_letters_are_views_of_the_audit_log(
    tmp_path: Path, loop: None
) -> None:
    """An attempt is a row of the ``attempts`` view; a dead letter one of ``dead_letters``."""
    async with SqliteStore.open(tmp_path / "rb.db", clock=time.time) as store:
        ids = [a.id for a in await store.submit([NewMessage("email", {}) for _ in range(3)])]
        await store.claim("email", 3)
        now = time.time()
        attempt = Attempt("resend", now, 0.01, "delivered", status=200)
        await store.record(
            [
                settle(ids[0], SettleKind.DELIVERED, provider_id="re_1", attempt=attempt),
                settle(ids[1], SettleKind.RETRIED, next_attempt_at=now + 60, reason="503"),
                settle(ids[2], SettleKind.DEAD_LETTERED, reason="422 bad from"),
            ]
        )
        await store.flush()
        rows = await store.query("SELECT message_id, outcome, status FROM attempts")
        assert rows == [(ids[0], "delivered", 200)]
        dead = await store.query("SELECT message_id, reason FROM dead_letters")
        assert dead == [(ids[2], "422 bad from")]


async def test_the_event_log_is_append_only(tmp_path: Path, loop: None) -> None:
    """Updating or deleting an audit event is refused by the database itself."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        await store.submit([NewMessage("email", {})])
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET kind = 'forged'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


async def test_concurrent_submits_share_commits(tmp_path: Path, loop: None) -> None:
    """Group commit: many concurrent submits are made durable in far fewer transactions."""
    async with SqliteStore.open(tmp_path / "rb.db", clock=time.time) as store:
        before = store.commits
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(store.submit, [NewMessage("email", {"n": i})])
        assert store.counters.of("email").total_queued == 200
        assert store.commits - before < 100


async def test_a_refused_submit_fails_only_its_caller_in_a_shared_commit(
    tmp_path: Path, loop: None
) -> None:
    """Submits committed together: those reusing a key are refused, the others are stored."""
    async with SqliteStore.open(tmp_path / "rb.db", clock=time.time) as store:
        (held,) = await store.submit([NewMessage("email", {"to": "a"}, idempotency_key="k")])
        gate = asyncio.Event()  # a transaction runs on the asyncio side of the bridge
        results: dict[str, list[Accepted] | KeyReused] = {}

        async def hold(tx: object) -> None:
            await gate.wait()  # keeps the writer busy so the submits below share a batch

        async def submit(name: str, messages: list[NewMessage]) -> None:
            try:
                results[name] = await store.submit(messages)
            except KeyReused as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.run, hold)
            await trio.testing.wait_all_tasks_blocked()
            commits = store.commits
            fresh = [
                NewMessage("email", {"n": 1}),
                NewMessage("crm", {"n": 1}, idempotency_key="j"),
            ]
            nursery.start_soon(submit, "fresh", fresh)
            await trio.testing.wait_all_tasks_blocked()
            stored_key = [
                NewMessage("email", {"n": 2}),
                NewMessage("slack", {"to": "a"}, idempotency_key="k"),
            ]
            nursery.start_soon(submit, "stored key", stored_key)
            await trio.testing.wait_all_tasks_blocked()
            batch_key = [NewMessage("crm", {"n": 2}, idempotency_key="j")]
            nursery.start_soon(submit, "key of the batch", batch_key)
            await trio.testing.wait_all_tasks_blocked()
            repeat = [NewMessage("email", {"to": "a"}, idempotency_key="k")]
            nursery.start_soon(submit, "repeat", repeat)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        assert store.commits == commits + 2  # the held transaction, then the four submits
        accepted = results["fresh"]
        assert isinstance(accepted, list)
        assert [(a.id, a.idempotency_key, a.duplicate) for a in accepted[1:]] == [(3, "j", False)]
        assert (accepted[0].id, accepted[0].duplicate) == (2, False)
        refused = results["stored key"]
        assert isinstance(refused, KeyReused)
        assert (refused.index, refused.key, refused.earlier_id) == (1, "k", held.id)
        refused = results["key of the batch"]
        assert isinstance(refused, KeyReused)
        assert (refused.index, refused.key, refused.earlier_id) == (0, "j", 3)
        assert results["repeat"] == [Accepted(held.id, "k", duplicate=True)]
        assert await store.states(range(1, 10)) == {1: "queued", 2: "queued", 3: "queued"}
        assert store.counters.of("email").total_queued == 2


async def test_a_newer_schema_is_refused_untouched(tmp_path: Path, loop: None) -> None:
    """A database written by a newer ringbearer is not opened, and not changed."""
    db = tmp_path / "rb.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        async with SqliteStore.open(db, clock=time.time):
            pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


async def test_a_new_file_is_migrated_to_the_current_version(tmp_path: Path, loop: None) -> None:
    """Opening an empty file creates the schema at the current version, in WAL mode."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time):
        pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_breakers_and_pauses_survive_a_restart(tmp_path: Path, loop: None) -> None:
    """Breaker state and paused targets are read back after reopening."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        store.save_breaker(BreakerRecord("resend", "open", False, 123.0))
        await store.set_paused("email", True)
    async with SqliteStore.open(db, clock=time.time) as store:
        assert (await store.breakers())["resend"] == BreakerRecord("resend", "open", False, 123.0)
        assert await store.paused() == {"email"}


async def test_settles_survive_a_failed_commit(tmp_path: Path, loop: None) -> None:
    """A settle whose batch fails to commit is kept and written with the next batch."""
    async with SqliteStore.open(tmp_path / "rb.db", clock=time.time) as store:
        (a,) = await store.submit([NewMessage("email", {})])
        await store.claim("email", 1)
        gate = asyncio.Event()  # a transaction runs on the asyncio side of the bridge

        async def hold(tx: object) -> None:
            await gate.wait()  # keeps the writer busy so the next two ops share a batch

        async def fail(tx: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.run, hold)
            await trio.testing.wait_all_tasks_blocked()
            await store.record([settle(a.id, SettleKind.DELIVERED)])
            failed: list[BaseException] = []

            async def run_failing() -> None:
                try:
                    await store.run(fail)
                except StoreError as exc:
                    failed.append(exc)

            nursery.start_soon(run_failing)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        assert failed and "refuses writes" in str(failed[0])
        await store.flush()
        assert await store.states([a.id]) == {a.id: "delivered"}


async def test_a_parked_claim_is_served_by_the_submit_commit(tmp_path: Path, loop: None) -> None:
    """An idle dispatcher's parked claim takes fresh messages in the submit's own commit."""
    async with SqliteStore.open(tmp_path / "rb.db", clock=time.time) as store:
        handed: list[list[int]] = []
        store.park_claim("email", 2, lambda claimed: handed.append([c.id for c in claimed]))
        commits = store.commits
        accepted = await store.submit([NewMessage("email", {"n": i}) for i in range(3)])
        assert store.commits == commits + 1
        assert handed == [[a.id for a in accepted[:2]]]


async def test_progress_is_kept_per_integration_across_a_restart(
    tmp_path: Path, loop: None
) -> None:
    """A multi-step delivery's saved steps come back with the message, for that member only."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        (accepted,) = await store.submit([NewMessage("crm", {})])
        await store.claim("crm", 1)
        await store.save_progress(accepted.id, "tave", {"contact": "01HX"})
        await store.save_progress(accepted.id, "tave", {"contact": "01HX", "job": "01HY"})
        await store.save_progress(accepted.id, "other", {"step": 1})
    async with SqliteStore.open(db, clock=time.time) as store:
        await store.recover_inflight()
        (claimed,) = await store.claim("crm", 1)
        assert claimed.progress == {
            "tave": {"contact": "01HX", "job": "01HY"},
            "other": {"step": 1},
        }
        steps = [e.detail for e in await store.events(message_id=accepted.id)]
        assert {"progress": {"contact": "01HX"}} in steps


async def test_a_version_1_database_is_migrated_keeping_its_messages(
    tmp_path: Path, loop: None
) -> None:
    """Migrations 2 to 6 bring a database made by the first schema up to date."""
    db = tmp_path / "rb.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO messages (target, priority, payload, idempotency_key, status,"
        " next_attempt_at, created_at, updated_at) VALUES ('email', 1, '{}', 'k', 'queued', 0,"
        " 0, 0)"
    )
    conn.commit()
    conn.close()
    async with SqliteStore.open(db, clock=time.time) as store:
        (claimed,) = await store.claim("email", 1)
        assert (claimed.idempotency_key, claimed.progress) == ("k", {})
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
    conn.close()


async def test_deadlines_are_remembered_across_a_restart(tmp_path: Path, loop: None) -> None:
    """A target with deadlines still claims by them after a restart."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        now = time.time()
        await store.submit(
            [
                NewMessage("crm", {"n": 1}),
                NewMessage("crm", {"n": 2}, deliver_by=now + 3600),
                NewMessage("crm", {"n": 3}, deliver_by=now + 60),
                NewMessage("crm", {"n": 4}, priority=Priority.CRITICAL),
                NewMessage("crm", {"n": 5}),
            ]
        )
        claimed = await store.claim("crm", 3)
        assert [c.payload["n"] for c in claimed] == [4, 3, 2]
    async with SqliteStore.open(db, clock=time.time) as store:
        await store.recover_inflight()
        await store.submit([NewMessage("crm", {"n": 6}, deliver_by=now + 1)])
        claimed = await store.claim("crm", 10)
        assert [c.payload["n"] for c in claimed] == [4, 6, 3, 2, 1, 5]


async def test_a_key_held_for_two_targets_survives_migration_4(tmp_path: Path, loop: None) -> None:
    """An older file may hold one key for two targets: it migrates, and the key is held."""
    db = tmp_path / "rb.db"
    conn = sqlite3.connect(db)
    for number, script in enumerate(MIGRATIONS[:3], 1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {number}")
    for target in ("email", "slack"):
        conn.execute(
            "INSERT INTO messages (target, priority, payload, idempotency_key, status,"
            " next_attempt_at, created_at, updated_at) VALUES (?, 1, '{}', 'k', 'queued', 0,"
            " 0, 0)",
            (target,),
        )
    conn.commit()
    conn.close()
    async with SqliteStore.open(db, clock=time.time) as store:
        assert await store.submit([NewMessage("email", {}, idempotency_key="k")]) == [
            Accepted(1, "k", duplicate=True)
        ]
        with pytest.raises(KeyReused) as refused:
            await store.submit([NewMessage("crm", {}, idempotency_key="k")])
        assert refused.value.earlier_id == 1
        plan = await store.query(
            "EXPLAIN QUERY PLAN SELECT id FROM messages"
            " WHERE idempotency_key IN (SELECT value FROM json_each(?))",
            ('["k"]',),
        )
        assert "messages_idempotency_key" in str(plan)  # a submit's key lookup is indexed
