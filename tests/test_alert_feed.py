"""The leader's feed of every node's dead letters, read from the shared audit log."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ringbearer._alert_feed import MARGIN, DeadLetterFeed
from ringbearer.store import Event, MemoryStore, MessageRecord, NewMessage, Settle, SettleKind

T0 = 1_750_000_000.0


@attrs.define
class Sink:
    dead: list[tuple[int, str, float]] = attrs.Factory(list)

    def observe_dead(self, message_id: int, target: str, at: float) -> None:
        self.dead.append((message_id, target, at))


async def dead_letter(store: MemoryStore, target: str) -> int:
    (accepted,) = await store.submit([NewMessage(target, {"text": "x"})])
    (claimed,) = await store.claim(target, 1)
    await store.record([Settle(claimed.id, target, SettleKind.DEAD_LETTERED, target, 1, T0)])
    return accepted.id


async def test_the_feed_takes_in_dead_letters_after_it_started_once_each() -> None:
    store, sink = MemoryStore(lambda: T0), Sink()
    before = await dead_letter(store, "slack")  # died before this node led: not its to alert
    feed = DeadLetterFeed(store, sink, 0.2, lambda: T0)
    await feed._start()
    first = await dead_letter(store, "slack")
    second = await dead_letter(store, "sms")
    assert await feed.tick() == 2
    assert [(m, t) for m, t, _ in sink.dead] == [(first, "slack"), (second, "sms")]
    assert await feed.tick() == 0  # nothing new: nothing counted twice
    assert before not in [m for m, _, _ in sink.dead]
    third = await dead_letter(store, "slack")
    assert await feed.tick() == 1 and sink.dead[-1][:2] == (third, "slack")


@attrs.define
class Uncommitted:
    """The shared audit log as a reader sees it while some events' transactions have not
    committed yet (their ids drawn, their rows not visible)."""

    store: MemoryStore
    hidden: set[int] = attrs.Factory(set)

    async def events(
        self, *, since: float | None = None, message_id: int | None = None,
        kinds: Sequence[str] = (), before: int | None = None, limit: int = 1000,
    ) -> list[Event]:  # fmt: skip
        found = await self.store.events(since=since, kinds=kinds, before=before, limit=limit)
        return [e for e in found if e.message_id not in self.hidden]

    async def message(self, message_id: int) -> MessageRecord | None:
        return await self.store.message(message_id)


async def test_a_dead_letter_seen_after_a_later_one_is_still_taken_in() -> None:
    """Node A's event commits after node B's later one was read: not skipped."""
    wall = [T0]
    store, sink = MemoryStore(lambda: wall[0]), Sink()
    reads = Uncommitted(store)
    feed = DeadLetterFeed(reads, sink, 0.2, lambda: wall[0])
    await feed._start()
    early = await dead_letter(store, "slack")
    late = await dead_letter(store, "sms")
    reads.hidden.add(early)  # not committed yet when the leader reads
    assert await feed.tick() == 1 and [m for m, _, _ in sink.dead] == [late]
    reads.hidden.clear()
    wall[0] += 5  # it commits a few seconds on
    assert await feed.tick() == 1 and [m for m, _, _ in sink.dead] == [late, early]
    wall[0] += 3 * MARGIN  # read no more, and forgotten
    assert await feed.tick() == 0 and feed._seen == {}
