"""Leading the duties that must run once, on a real PostgreSQL: one leader per duty, a lead
kept by renewing it, taken over only once it expires (with a higher term), and a paused
leader's renewal refused once another took over."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio

from ringbearer.store._pg._db import Session, connect
from ringbearer.store._pg._ddl_cluster import DDL
from ringbearer.store._pg._nodes import Lead, Leadership

T0 = 1_750_000_000.0
LEASE = 15.0


@attrs.define
class Wall:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session(pg_url: str) -> AsyncIterator[Session]:
    s = Session(await trio.to_thread.run_sync(connect, pg_url))
    await s.transaction(lambda tx: tx.execute(DDL))
    yield s
    s.close()


def lead(session: Session, node: str, wall: Wall, duty: str = "duties") -> Leadership:
    return Leadership(session, duty, node, wall, LEASE)


async def test_one_node_leads_and_the_other_waits_for_the_expiry(session: Session) -> None:
    wall = Wall()
    a, b = lead(session, "node-a", wall), lead(session, "node-b", wall)
    first = await a.acquire()
    assert first == Lead("duties", "node-a", 1, T0 + LEASE)
    assert await b.acquire() is None  # a leads
    wall.now += LEASE - 1
    assert await b.acquire() is None  # not yet expired
    assert await a.leader() == first
    wall.now += 2  # a went silent: its lead expired a second ago
    taken = await b.acquire()
    assert taken == Lead("duties", "node-b", 2, wall.now + LEASE)
    assert await a.renew(first) is None  # the paused leader finds it lost the lead
    assert await a.acquire() is None
    assert await b.leader() == taken


async def test_a_leader_renewing_in_time_keeps_its_term(session: Session) -> None:
    wall = Wall()
    a, b = lead(session, "node-a", wall), lead(session, "node-b", wall)
    held = await a.acquire()
    assert held is not None
    for _ in range(5):
        wall.now += LEASE / 3
        renewed = await a.renew(held)
        assert renewed is not None and renewed.term == 1
        held = renewed
        assert await b.acquire() is None
    again = await a.acquire()  # acquiring a lead it holds renews it, same term
    assert again is not None and again.term == 1


async def test_a_resigned_lead_is_taken_at_once_and_duties_are_apart(session: Session) -> None:
    wall = Wall()
    a, b = lead(session, "node-a", wall), lead(session, "node-b", wall)
    held = await a.acquire()
    assert held is not None
    other = await lead(session, "node-b", wall, duty="sweeps").acquire()
    assert other is not None and other.term == 1  # another duty, another lead
    await a.resign(held)
    taken = await b.acquire()
    assert taken is not None and (taken.node, taken.term) == ("node-b", 2)
    assert await a.leader() == taken


async def test_heartbeats_list_nodes_and_keep_their_leases(pg_url: str) -> None:
    """A beat lists the node and extends the leases of what it holds in flight; a node
    silent past the lease is forgotten by the others, and its work reclaimed."""
    from ringbearer._delivery import Priority
    from ringbearer.store import NewMessage
    from ringbearer.store._pg._nodes import Nodes
    from ringbearer.store._pg._store import PostgresStore

    wall = Wall()
    async with (
        PostgresStore.open(pg_url, clock=wall, node="node-a", lease_seconds=LEASE) as a,
        PostgresStore.open(pg_url, clock=wall, node="node-b", lease_seconds=LEASE) as b,
    ):
        await a.submit([NewMessage("email", {"to": "x@example.org"}, Priority.NORMAL, "k1")])
        (held,) = await a.claim("email", 10)
        session = a._reads.session
        beats = Nodes(session, "node-a", "host-a", wall, LEASE)
        others = Nodes(b._reads.session, "node-b", "host-b", wall, LEASE)
        for _ in range(4):  # a minute of beats every 10 s: the lease is kept
            wall.now += 10
            assert await beats.beat([held.id]) == 1
            await others.beat()
            assert await b._queue.reclaim_expired() == 0
        views = await others.views()
        assert [(v.node, v.leases) for v in views] == [("node-a", 1), ("node-b", 0)]
        wall.now += LEASE + 1  # node-a falls silent
        await others.beat()
        assert await others.forget_silent(LEASE) == ["node-a"]
        assert await b._queue.reclaim_expired() == 1
        (again,) = await b.claim("email", 10)
        # Returned as an ambiguous attempt, as a restart returns what was in flight,
        # and sent again under the same key.
        assert (again.id, again.attempts, again.idempotency_key) == (held.id, 1, "k1")
