"""Every node's actors for the leader's alerts: each node publishes its own and reads the
others' (here a store played by the test); the leader's view of an integration is the
worst any live node reported, an operator's forced breaker excepted."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ringbearer._actor import ActorSnapshot, ActorState
from ringbearer._cluster_actors import ClusterActors
from ringbearer.resilience import BreakerState, HealthState
from ringbearer.store._pg._nodes import NodeActor


def snapshot(name: str, **changes: object) -> ActorSnapshot:
    healthy = ActorSnapshot(
        name, "fake", ActorState.RUNNING, False, BreakerState.CLOSED, False, 0.0,
        HealthState.HEALTHY, 1.0, 0.01, 0.02, 0.03, 2, 0, 0, 0, 10, 0, 0, None,
    )  # fmt: skip
    return attrs.evolve(healthy, **changes)  # type: ignore[arg-type]


@attrs.define
class Board:
    node: str = "leader"
    published: list[NodeActor] = attrs.Factory(list)
    theirs: list[NodeActor] = attrs.Factory(list)

    async def publish_actors(self, rows: Sequence[NodeActor]) -> list[NodeActor]:
        self.published = list(rows)
        return list(self.theirs)


def other(integration: str, *, breaker: str = "closed", forced: bool = False,
          health: str = "healthy", state: str = "running") -> NodeActor:  # fmt: skip
    return NodeActor("node-b", integration, breaker, forced, health, state)


async def test_a_beat_publishes_this_nodes_actors_and_reads_the_others() -> None:
    board = Board(theirs=[other("resend", breaker="open")])
    mine = [snapshot("resend"), snapshot("slack", health=HealthState.DOWN)]
    cluster = ClusterActors(board, lambda: mine)
    assert await cluster.follow() == 1
    assert [(a.node, a.integration, a.health) for a in board.published] == [
        ("leader", "resend", "healthy"), ("leader", "slack", "down"),
    ]  # fmt: skip


async def test_the_worst_of_any_node_is_what_the_leader_judges() -> None:
    board = Board(
        theirs=[
            other("resend", breaker="open"),
            other("mailgun", breaker="open", forced=True),  # an operator's: no alert
            other("slack", health="down"),
            other("sms", state="failed"),
        ]
    )
    mine = [snapshot(n) for n in ("resend", "mailgun", "slack", "sms", "pagerduty")]
    cluster = ClusterActors(board, lambda: mine)
    await cluster.follow()
    merged = {s.name: s for s in cluster.merged(mine)}
    assert merged["resend"].breaker is BreakerState.OPEN
    assert merged["mailgun"].breaker is BreakerState.CLOSED
    assert merged["slack"].health is HealthState.DOWN
    assert merged["sms"].state is ActorState.FAILED and merged["sms"].last_error == "on node node-b"
    assert merged["pagerduty"] == mine[4]  # nothing elsewhere: its own


async def test_alone_the_view_is_the_nodes_own() -> None:
    cluster = ClusterActors(Board(), lambda: [])
    mine = [snapshot("resend", breaker=BreakerState.HALF_OPEN)]
    assert cluster.merged(mine) == mine
