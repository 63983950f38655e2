"""The PostgreSQL store's reads, dead-letter tools, controls and alerts, on a real
PostgreSQL, in what only PostgreSQL can show: ids bound as arrays, the next due time
of three priorities in one statement, a purge held to its limit, and two nodes replaying
or purging the same dead letters at once. (What every store shares is in the contract tests.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import psycopg
import pytest
import trio

from ringbearer._delivery import Priority
from ringbearer.store import BreakerRecord
from ringbearer.store._model import HELD_UNTIL
from ringbearer.store._pg._alerts import PgAlerts
from ringbearer.store._pg._controls import PgControls
from ringbearer.store._pg._db import Session, connect
from ringbearer.store._pg._dead import PgDeadLetters
from ringbearer.store._pg._reads import PgReads
from ringbearer.store._pg._schema import migrate
from ringbearer.store._pg._writer import PgWriter
from ringbearer.store._sqlite._shared import Shared

T0 = 1_750_000_000.0


@attrs.define
class Wall:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Node:
    """One daemon's parts over its own two connections."""

    reads: PgReads
    dead: PgDeadLetters
    controls: PgControls
    alerts: PgAlerts
    shared: Shared


@attrs.define
class Heard:
    submitted_: list[set[str]] = attrs.Factory(list)

    def submitted(self, targets: set[str]) -> None:
        self.submitted_.append(set(targets))

    def settled(self, settles: Any) -> None:
        pass


@pytest.fixture
async def url(pg_url: str) -> str:
    conn = await trio.to_thread.run_sync(connect, pg_url)
    await Session(conn).transaction(migrate)
    conn.close()
    return pg_url


@pytest.fixture
async def open_node(url: str) -> AsyncIterator[Callable[[], Awaitable[Node]]]:
    """Opens nodes (each with its writer running) until the test ends."""
    async with trio.open_nursery() as nursery:
        sessions: list[Session] = []

        async def open_one() -> Node:
            write = Session(await trio.to_thread.run_sync(connect, url))
            read = Session(await trio.to_thread.run_sync(connect, url))
            sessions.extend((write, read))
            shared = Shared(Wall())
            writer = PgWriter(write, clock=shared.clock, batch_max=64)
            nursery.start_soon(writer.write_loop)
            reads = PgReads(read)
            dead = PgDeadLetters(writer, reads, shared)
            return Node(reads, dead, PgControls(writer), PgAlerts(writer), shared)

        yield open_one
        nursery.cancel_scope.cancel()
    for session in sessions:
        session.close()


@pytest.fixture
async def node(open_node: Callable[[], Awaitable[Node]]) -> Node:
    return await open_node()


def insert(url: str, *rows: tuple[Any, ...]) -> None:
    """Messages as (id, target, priority, status, next_attempt_at, held, attempts)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO messages (id, target, priority, payload, idempotency_key, status,"
            " next_attempt_at, created_at, updated_at, held, attempts, integration,"
            " last_error) VALUES (%s,%s,%s,'{}',%s,%s,%s,%s,%s,%s,%s,'resend','422')",
            [(i, t, p, f"k{i}", s, due, T0, T0, h, a) for i, t, p, s, due, h, a in rows],
        )


def dead_rows(*ids: int) -> list[tuple[Any, ...]]:
    return [(i, "email", 2, "dead", T0, None, 1) for i in ids]


async def test_next_due_is_the_earliest_ready_time_across_priorities(url: str, node: Node) -> None:
    """Queued, not held, of the target: the least of the three priorities' earliest."""
    assert await node.reads.next_due("email") is None
    insert(
        url,
        (1, "email", 2, "queued", T0 + 5, None, 0),
        (2, "email", 1, "queued", T0 + 9, None, 0),
        (3, "email", 0, "queued", HELD_UNTIL, "example.com", 0),  # held: never due
        (4, "email", 0, "inflight", T0 + 1, None, 0),  # claimed: not ready
        (5, "slack", 0, "queued", T0 + 2, None, 0),  # another target
    )
    assert await node.reads.next_due("email") == T0 + 5
    assert await node.reads.next_due("slack") == T0 + 2
    assert await node.reads.next_due("crm") is None


async def test_states_take_any_ids_even_ones_no_bigint_holds(url: str, node: Node) -> None:
    """Ids are bound as an array: unknown ones, and one beyond 64 bits, are just absent."""
    insert(url, (1, "email", 1, "queued", T0, None, 0), (2, "email", 1, "dead", T0, None, 1))
    assert await node.reads.states([2, 1, 7, 2**70]) == {1: "queued", 2: "dead"}
    assert await node.reads.states([]) == {}
    assert await node.dead.replay_dead([], target=None, after=0, limit=10, by="op") == []


async def test_oldest_queued_waits_from_when_a_fresh_message_was_due(url: str, node: Node) -> None:
    """Never attempted: from its due time (GREATEST); attempted: from its creation."""
    insert(
        url,
        (1, "email", 1, "queued", T0 + 60, None, 0),  # scheduled a minute on
        (2, "email", 2, "queued", T0 + 60, None, 2),  # retried: waits since created
        (3, "email", 0, "queued", HELD_UNTIL, "example.com", 0),  # held: no stall
    )
    assert await node.reads.oldest_queued() == {
        ("email", Priority.NORMAL): T0 + 60,
        ("email", Priority.BULK): T0,
    }


async def test_replay_queues_counts_and_tells_the_listener(url: str, node: Node) -> None:
    """Replayed dead letters are queued again, counted, and the listener hears the target."""
    insert(url, *dead_rows(1, 2, 3))
    heard = Heard()
    node.shared.listener = heard
    assert await node.dead.replay_dead(None, target="email", after=1, limit=10, by="op") == [2, 3]
    assert node.shared.counters.of("email").queued[Priority.BULK] == 2
    assert heard.submitted_ == [{"email"}]
    assert await node.reads.states([1, 2, 3]) == {1: "dead", 2: "queued", 3: "queued"}


async def test_a_purge_deletes_no_more_than_its_limit(url: str, node: Node) -> None:
    """The letters are chosen once: deleting the first does not let the choice move on."""
    insert(url, *dead_rows(1, 2, 3))
    purge = node.dead.purge_dead
    assert await purge(None, target="email", after=0, dead_before=None, limit=1, by="op") == [1]
    assert await purge([3, 2], target=None, after=0, dead_before=None, limit=5, by="op") == [2, 3]
    assert await node.reads.states([1, 2, 3]) == {}


async def test_two_nodes_replaying_at_once_replay_each_letter_once(
    url: str, open_node: Callable[[], Awaitable[Node]]
) -> None:
    """Both nodes ask for all while a third transaction holds the rows, so both choose
    while the letters are dead: each letter is still replayed and audited once."""
    insert(url, *dead_rows(*range(1, 41)))
    a, b = await open_node(), await open_node()
    got: dict[str, list[int]] = {}

    async def replay(name: str, n: Node) -> None:
        got[name] = await n.dead.replay_dead(None, target=None, after=0, limit=100, by=name)

    async with holding_every_message(url) as release, trio.open_nursery() as nursery:
        nursery.start_soon(replay, "a", a)
        nursery.start_soon(replay, "b", b)
        await release(waiting=2)
    assert sorted(got["a"] + got["b"]) == list(range(1, 41))
    replayed = await a.reads.events(
        since=None, message_id=None, kinds=["replayed"], before=None, limit=100
    )
    assert sorted(e.message_id or 0 for e in replayed) == list(range(1, 41))


async def test_a_purge_waiting_on_a_replay_leaves_the_replayed_alone(url: str, node: Node) -> None:
    """A letter queued by another transaction while the purge waited for it stays."""
    insert(url, *dead_rows(1, 2))
    purged: list[int] = []

    async def purge() -> None:
        got = await node.dead.purge_dead(
            None, target=None, after=0, dead_before=None, limit=10, by="op"
        )
        purged.extend(got)

    async with (
        holding_every_message(url, "UPDATE messages SET status = 'queued' WHERE id = 1") as release,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(purge)
        await release(waiting=1)
    assert purged == [2]
    assert await node.reads.states([1, 2]) == {1: "queued"}


Release = Callable[..., Awaitable[None]]


@contextlib.asynccontextmanager
async def holding_every_message(url: str, then: str = "SELECT 1") -> AsyncIterator[Release]:
    """A transaction locking every message; ``release(waiting=n)`` runs ``then`` and commits
    it once ``n`` other sessions wait for its locks."""

    def locking() -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(url)
        conn.execute("SELECT id FROM messages FOR UPDATE")
        return conn

    other = await trio.to_thread.run_sync(locking)
    try:

        async def release(*, waiting: int) -> None:
            await trio.to_thread.run_sync(wait_for_lock_waits, url, waiting)
            await trio.to_thread.run_sync(other.execute, then)
            await trio.to_thread.run_sync(other.commit)

        yield release
    finally:
        other.close()


def wait_for_lock_waits(url: str, count: int) -> None:
    """Return once ``count`` sessions of the database wait on a lock: the server is asked
    again and again (no sleep), and gives up after ten seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '10s'")
        conn.execute(
            "DO $$ BEGIN WHILE (SELECT COUNT(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock') < "
            f"{int(count)} LOOP PERFORM pg_stat_clear_snapshot(); END LOOP; END $$"
        )


async def test_controls_and_alerts_read_what_was_queued_before_them(node: Node) -> None:
    """A breaker saved fire-and-forget is read back by the next read, no flush needed."""
    node.controls.save_breaker(BreakerRecord("resend", "open", True, T0 + 30))
    assert await node.controls.breakers() == {
        "resend": BreakerRecord("resend", "open", True, T0 + 30)
    }
    await node.controls.set_paused("email", True)
    assert await node.controls.paused() == {"email"}
    assert await node.alerts.last_alert_id() == 0
