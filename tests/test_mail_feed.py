"""Every node's provider events for every node's reputation guard, read from a real
PostgreSQL by id: from the newest at start, an event committed after a later one was
read still counted, none twice, and the other channels' events not counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import attrs
import pytest

from ringbearer._mail_feed import MailEventFeed
from ringbearer.deliverability import EventType, MailEventRow
from ringbearer.store._pg._db import PgTx
from ringbearer.store._pg._store import PostgresStore

T0 = 1_750_000_000.0


@attrs.define
class Guard:
    rows: list[MailEventRow] = attrs.Factory(list)

    def note(self, rows: Sequence[MailEventRow]) -> None:
        self.rows.extend(rows)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore.open(pg_url, clock=lambda: T0, node="node-a") as pg:
        yield pg


async def kept(store: PostgresStore, *events: tuple[int, str, str]) -> None:
    """Events as another node's ingest keeps them: (id, type, channel)."""

    def insert(tx: PgTx) -> None:
        for number, event, channel in events:
            tx.execute(
                "INSERT INTO mail_events (id, at, source, event_id, event, channel, domain)"
                " VALUES (%s, %s, 'resend', %s, %s, %s, 'example.com')",
                (number, T0, f"e{number}", event, channel),
            )

    await store.run(insert)


async def test_the_feed_counts_every_nodes_events_once_from_its_start(
    store: PostgresStore, autojump_clock: object
) -> None:
    await kept(store, (1, "delivered", "email"))  # before the start: the guard's load read it
    guard = Guard()
    feed = await MailEventFeed.start(store, guard)
    await kept(store, (2, "complained", "email"), (4, "delivered", "email"))  # 3 not yet
    assert await feed.follow() == 2
    await kept(store, (3, "hard_bounce", "email"), (5, "delivered", "sms"))
    assert await feed.follow() == 1  # the late one; the text message is not the guard's
    assert await feed.follow() == 0  # nothing twice
    assert [(r.id, r.event) for r in guard.rows] == [
        (2, EventType.COMPLAINED), (4, EventType.DELIVERED), (3, EventType.HARD_BOUNCE),
    ]  # fmt: skip
    assert feed.cursor.cursor == 5


async def test_a_node_far_behind_reads_in_rounds(
    store: PostgresStore, autojump_clock: object
) -> None:
    guard = Guard()
    feed = await MailEventFeed.start(store, guard)
    feed.page = 2
    await kept(store, *((n, "delivered", "email") for n in range(1, 6)))
    assert await feed.follow() == 5 and [r.id for r in guard.rows] == [1, 2, 3, 4, 5]
