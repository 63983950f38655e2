"""A node's duty on a shared store, against a store played by the test: a node joining
live ones starts sending only once each has beaten since (and so shrunk its share of
each limit); alone it starts at once; a listed node that never beats holds it two beats
at most. Each beat takes up what the others set, one failing follow leaving the rest."""

from __future__ import annotations

import logging

import attrs
import prometheus_client
import pytest
import trio

from ringbearer._errors import StoreError
from ringbearer._node_duty import NodeDuty, NodeMetrics
from ringbearer.store._pg._nodes import NodeView
from ringbearer.store._protocol import NullListener

EVERY = 5.0


@attrs.define
class Cluster:
    """The shared table of nodes; ``others`` beat when the test says."""

    node: str = "me"
    listener: NullListener = attrs.Factory(NullListener)
    fenced: int = 0
    views: dict[str, NodeView] = attrs.Factory(dict)

    def other_beats(self, node: str) -> None:
        now = trio.current_time()
        old = self.views.get(node)
        self.views[node] = NodeView(node, "host", old.started_at if old else now, now, 0)

    async def beat(self) -> int:
        self.other_beats(self.node)
        return 0

    async def reclaim_expired(self) -> int:
        return 0

    async def forget_silent(self) -> list[str]:
        return []

    async def nodes(self) -> list[NodeView]:
        await trio.lowlevel.checkpoint()
        return list(self.views.values())

    async def leave(self) -> None:
        self.views.pop(self.node, None)


def duty(cluster: Cluster, shares: list[int], follows: tuple[object, ...] = ()) -> NodeDuty:
    metrics = NodeMetrics.on(prometheus_client.CollectorRegistry())
    return NodeDuty(cluster, EVERY, metrics, share=shares.append, follows=follows)  # type: ignore[arg-type]


async def test_alone_it_starts_at_once_with_the_whole_limit(autojump_clock: object) -> None:
    cluster, shares = Cluster(), list[int]()
    async with trio.open_nursery() as nursery:
        await nursery.start(duty(cluster, shares).run)
        assert trio.current_time() == 0 and shares == [1]
        nursery.cancel_scope.cancel()


async def test_joining_it_waits_for_the_other_to_beat_then_takes_its_share(
    autojump_clock: object,
) -> None:
    cluster, shares = Cluster(), list[int]()
    cluster.other_beats("them")  # live: beat a second before this node joins, next 3 s after
    await trio.sleep(1)

    async def them() -> None:
        await trio.sleep(3)  # 3 s after this node joins
        cluster.other_beats("them")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(them)
        await nursery.start(duty(cluster, shares).run)
        assert 4 <= trio.current_time() < 4 + EVERY / 5 + 0.01
        assert shares == [2, 2]
        nursery.cancel_scope.cancel()


async def test_a_listed_node_that_never_beats_holds_it_two_beats_at_most(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, shares = Cluster(), list[int]()
    cluster.other_beats("dead")
    await trio.sleep(1)
    with caplog.at_level(logging.WARNING, "ringbearer.nodes"):
        async with trio.open_nursery() as nursery:
            await nursery.start(duty(cluster, shares).run)
            assert 1 + 2 * EVERY <= trio.current_time() < 1 + 2 * EVERY + EVERY / 5 + 0.01
            nursery.cancel_scope.cancel()
    assert "nodes did not beat since this one joined" in caplog.text


async def test_a_failing_follow_leaves_the_others_and_the_next_beat_tries_again(
    autojump_clock: object,
) -> None:
    cluster, shares, calls = Cluster(), list[int](), list[str]()

    async def failing() -> None:
        calls.append("failing")
        raise StoreError("gone")

    async def fine() -> None:
        calls.append("fine")

    async with trio.open_nursery() as nursery:
        await nursery.start(duty(cluster, shares, (failing, fine)).run)
        await trio.sleep(EVERY + 0.1)
        nursery.cancel_scope.cancel()
    assert calls == ["failing", "fine", "failing", "fine"]
