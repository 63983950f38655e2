"""The leader's feed of every node's dead letters, read from the shared audit log."""

from __future__ import annotations

import attrs

from ringbearer._alert_feed import DeadLetterFeed
from ringbearer.store import MemoryStore, NewMessage, Settle, SettleKind

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
    feed = DeadLetterFeed(store, sink, 0.2)
    await feed._start()
    first = await dead_letter(store, "slack")
    second = await dead_letter(store, "sms")
    assert await feed.tick() == 2
    assert [(m, t) for m, t, _ in sink.dead] == [(first, "slack"), (second, "sms")]
    assert await feed.tick() == 0  # nothing new: nothing counted twice
    assert before not in [m for m, _, _ in sink.dead]
    third = await dead_letter(store, "slack")
    assert await feed.tick() == 1 and sink.dead[-1][:2] == (third, "slack")
