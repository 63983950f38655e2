"""Leases and fencing on a real PostgreSQL: two nodes share one database; a claim leases its
messages to its node, an expired lease is taken back by another node, and a settle from a
node whose lease was taken over is refused (fenced), logged and counted. And what the
nodes share besides: the operator's override; and never the key store's database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import psycopg
import pytest

from ringbearer._errors import StoreError
from ringbearer.deliverability import Reason, Suppression
from ringbearer.privacy._keystore_pg import PgKeyStore
from ringbearer.store import (
    Claimed,
    ConsentRecord,
    NewMessage,
    OverrideRecord,
    Settle,
    SettleKind,
)
from ringbearer.store._pg._db import PgTx, Row
from ringbearer.store._pg._nodes import NodeActor
from ringbearer.store._pg._store import PostgresStore

T0 = 1_750_000_000.0
LEASE = 30.0


@attrs.define
class Wall:
    """A wall clock the test moves by hand, shared by both nodes."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class Nodes:
    a: PostgresStore
    b: PostgresStore
    wall: Wall


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[Nodes]:
    wall = Wall()
    async with (
        PostgresStore.open(pg_url, clock=wall, node="node-a", lease_seconds=LEASE) as a,
        PostgresStore.open(pg_url, clock=wall, node="node-b", lease_seconds=LEASE) as b,
    ):
        yield Nodes(a, b, wall)


async def lease_of(store: PostgresStore, message_id: int) -> Row:
    """The message's status, lease holder, lease end, epoch and attempts, as stored."""

    def read(tx: PgTx) -> list[Row]:
        return tx.fetchall(
            "SELECT status, lease_node, lease_until, lease_epoch, attempts FROM messages"
            " WHERE id = %s",
            (message_id,),
        )

    (row,) = await store.run(read)
    return row


def delivered(c: Claimed) -> Settle:
    return Settle(
        c.id, c.target, SettleKind.DELIVERED, "resend", c.attempts + 1, T0, created_at=c.created_at
    )


async def test_ids_come_from_the_database_whichever_node_submits(nodes: Nodes) -> None:
    """Submits on two nodes get distinct, growing ids; each node counts only its own."""
    first = await nodes.a.submit([NewMessage("email", {"n": n}) for n in range(2)])
    second = await nodes.b.submit([NewMessage("email", {"n": 2})])
    assert [a.id for a in first + second] == [1, 2, 3]
    assert nodes.a.counters.of("email").total_queued == 2
    assert nodes.b.counters.of("email").total_queued == 1


async def test_deadlines_another_node_submitted_order_the_claim(nodes: Nodes) -> None:
    """node-a has seen no deadline for the target, node-b submitted some: nearest first."""
    await nodes.b.submit(
        [
            NewMessage("crm", {"n": 1}),
            NewMessage("crm", {"n": 2}, deliver_by=T0 + 3600),
            NewMessage("crm", {"n": 3}, deliver_by=T0 + 60),
        ]
    )
    assert [c.payload["n"] for c in await nodes.a.claim("crm", 10)] == [3, 2, 1]


async def test_a_claim_leases_its_messages_to_its_node(nodes: Nodes) -> None:
    """A claimed message is leased to the claiming node until now + lease, epoch 1; the
    other node cannot claim it."""
    (a,) = await nodes.a.submit([NewMessage("email", {})])
    (c,) = await nodes.a.claim("email", 10)
    assert c.id == a.id
    assert await lease_of(nodes.a, a.id) == ("inflight", "node-a", T0 + LEASE, 1, 0)
    assert await nodes.b.claim("email", 10) == []
    assert await nodes.b._queue.reclaim_expired() == 0  # not expired yet
    assert nodes.a.counters.of("email").inflight == 1


async def test_an_expired_lease_moves_to_another_node_and_the_late_settle_is_fenced(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    """After the lease, node-b takes the message back (an attempt, audited) and claims it
    under epoch 2; node-a's late settle changes nothing and is logged and counted;
    node-b's settle applies."""
    (a,) = await nodes.a.submit([NewMessage("email", {})])
    (late,) = await nodes.a.claim("email", 1)
    nodes.wall.now = T0 + LEASE + 1
    assert await nodes.a._queue.reclaim_expired() == 0  # its own lease: not another node's
    assert await nodes.b._queue.reclaim_expired() == 1
    assert await lease_of(nodes.b, a.id) == ("queued", None, None, 1, 1)
    (recovered,) = await nodes.b.events(message_id=a.id, kinds=["recovered"])
    assert recovered.detail == {"reason": "its lease expired; counted as an attempt",
                                "node": "node-a"}  # fmt: skip
    (taken,) = await nodes.b.claim("email", 1)
    assert (taken.id, taken.attempts) == (a.id, 1)
    assert await lease_of(nodes.b, a.id) == ("inflight", "node-b", T0 + 2 * LEASE + 1, 2, 1)

    with caplog.at_level(logging.WARNING, logger="ringbearer.store"):
        await nodes.a.record([delivered(late)])
        await nodes.a.flush()
    assert await lease_of(nodes.a, a.id) == ("inflight", "node-b", T0 + 2 * LEASE + 1, 2, 1)
    assert nodes.a._queue.fenced == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "settle fenced"]
    assert (record.name, getattr(record, "fields", None)) == (
        "ringbearer.store",
        {"message_id": a.id, "node": "node-a"},
    )
    assert nodes.a.counters.of("email").inflight == 0  # node-a holds it no longer

    await nodes.b.record([delivered(taken)])
    await nodes.b.flush()
    assert await lease_of(nodes.b, a.id) == ("delivered", None, None, 2, 2)
    assert nodes.b._queue.fenced == 0
    assert [e.kind for e in await nodes.b.events(message_id=a.id, kinds=["delivered"])] == [
        "delivered"
    ]


async def test_a_settle_after_its_message_was_recovered_is_fenced(nodes: Nodes) -> None:
    """A message returned to the queue is no longer leased: the settle of the claim it was
    taken back from changes nothing, and the message is claimed again under epoch 2."""
    await nodes.a.submit([NewMessage("email", {})])
    (old,) = await nodes.a.claim("email", 1)
    assert await nodes.a.recover_inflight() == 1
    await nodes.a.record([delivered(old)])
    await nodes.a.flush()
    assert nodes.a._queue.fenced == 1
    assert await lease_of(nodes.a, old.id) == ("queued", None, None, 1, 1)
    assert nodes.a.counters.of("email").total_queued == 1
    (again,) = await nodes.a.claim("email", 1)
    assert await lease_of(nodes.a, again.id) == ("inflight", "node-a", T0 + LEASE, 2, 1)


async def test_recover_inflight_leaves_another_nodes_live_leases_alone(nodes: Nodes) -> None:
    """A node's recovery takes back its own claims and expired leases, not live ones."""
    await nodes.a.submit([NewMessage("email", {"n": n}) for n in range(2)])
    (mine,) = await nodes.a.claim("email", 1)
    (theirs,) = await nodes.b.claim("email", 1)
    assert await nodes.a.recover_inflight() == 1
    assert (await lease_of(nodes.a, mine.id))[:2] == ("queued", None)
    assert (await lease_of(nodes.a, theirs.id))[:2] == ("inflight", "node-b")
    assert nodes.a.counters.of("email").inflight == 0
    nodes.wall.now = T0 + LEASE + 1  # node-b's lease ends
    assert await nodes.a.recover_inflight() == 1
    assert await lease_of(nodes.a, theirs.id) == ("queued", None, None, 1, 1)


def message(key: str) -> NewMessage:
    return NewMessage("email", {"to": "ann@example.org"}, idempotency_key=key)


async def test_a_dropped_connection_fails_one_write_and_the_next_reconnects(pg_url: str) -> None:
    """PostgreSQL drops the store's connections (a restart, a network cut): the write
    under way fails with the store's error, nothing of it acknowledged; the next write
    connects again, and a read (safe to repeat) is repeated on a new connection."""
    import psycopg

    from ringbearer._errors import StoreError

    wall = Wall()
    async with PostgresStore.open(pg_url, clock=wall, node="node-a") as store:
        await store.submit([message("before")])
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreError):
            await store.submit([message("lost")])
        (accepted,) = await store.submit([message("after")])
        assert not accepted.duplicate
        # The reading connection was dropped too: a read is tried once more, reconnected.
        assert await store.holding_key("after") == accepted.id
        assert await store.holding_key("lost") is None


async def test_a_key_another_node_stored_meanwhile_is_answered_as_a_duplicate(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes take the same key at the same instant: the second's look-up missed it,
    its insert meets the unique index; the submit is tried once more and answered as
    the message node A already holds (not an error to a producer retrying)."""
    from ringbearer.store._pg import _batch

    (held,) = await nodes.a.submit([message("same-key")])
    looked_up = _batch._held_keys
    misses = iter([True])

    def stale(tx: PgTx, messages: list[NewMessage]) -> Any:
        return {} if next(misses, False) else looked_up(tx, messages)

    monkeypatch.setattr(_batch, "_held_keys", stale)
    (again,) = await nodes.b.submit([message("same-key")])
    assert (again.id, again.duplicate) == (held.id, True)


async def test_a_database_holding_the_key_store_is_refused(pg_url: str) -> None:
    """Messages kept beside their keys would let one copy open them: refused, untouched."""
    keys = await PgKeyStore.open(pg_url)
    await keys.close()
    with pytest.raises(StoreError, match="holds the key store"):
        async with PostgresStore.open(pg_url, clock=Wall(), node="node-a"):
            pass
    with psycopg.connect(pg_url) as conn:  # a short read, before any trio work waits
        assert conn.execute("SELECT to_regclass('messages')").fetchone() == (None,)


async def test_an_override_set_on_one_node_is_read_on_the_other(nodes: Nodes) -> None:
    """The override is the database's, not a node's memory."""
    await nodes.a.set_mode_override(OverrideRecord(True, None, T0))
    assert await nodes.b.mode_override() == OverrideRecord(True, None, T0)


async def test_each_write_to_a_booked_table_moves_its_version_when_it_commits(
    nodes: Nodes,
) -> None:
    """Suppressions, consents and erased subjects: a write moves its table's version on
    (each statement a step), seen by the other node once committed; a write rolled back
    moves nothing."""
    start = await nodes.b.versions()
    assert set(start) == {"suppressions", "consents", "erased_subjects"}
    await nodes.a.add_suppression(
        Suppression("s_ann", "*", Reason.MANUAL, T0, None, by="op", note="asked")
    )
    await nodes.a.add_consent(ConsentRecord("s_ann", "marketing", False, "form", T0, "op"))
    await nodes.a.erase_messages("s_ann", at=T0, job=1)
    moved = await nodes.b.versions()
    assert all(moved[n] > start[n] for n in start)

    def rolled_back(tx: PgTx) -> None:
        tx.execute("DELETE FROM suppressions")
        raise RuntimeError("rolled back")

    with pytest.raises(StoreError, match="rolled back"):
        await nodes.a.run(rolled_back)
    assert await nodes.b.versions() == moved


async def test_each_node_reads_the_others_published_actors_until_they_go(
    nodes: Nodes,
) -> None:
    """A beat publishes a node's actors and reads the other listed nodes'; a node that
    leaves, or is unlisted as silent, takes its rows with it."""
    await nodes.a.beat()
    await nodes.b.beat()
    down = NodeActor("node-b", "resend", "open", False, "down", "running")
    assert await nodes.b.publish_actors([down]) == []
    mine = NodeActor("node-a", "resend", "closed", False, "healthy", "running")
    assert await nodes.a.publish_actors([mine]) == [down]
    assert await nodes.b.publish_actors([]) == [mine]  # republished: none of b's now
    assert await nodes.a.publish_actors([mine]) == []
    await nodes.b.publish_actors([down])
    nodes.wall.now += LEASE + 1  # b falls silent; a beats on and unlists it
    await nodes.a.beat()
    assert await nodes.a.forget_silent() == ["node-b"]
    assert await nodes.a.publish_actors([mine]) == []
    assert await nodes.a.query("SELECT COUNT(*) FROM node_actors WHERE node = 'node-b'") == [(0,)]
    await nodes.a.leave()
    assert await nodes.a.query("SELECT COUNT(*) FROM node_actors") == [(0,)]
