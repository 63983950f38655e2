"""Every node's breakers, health and supervision, for the leader's alerts.

Each node judges a provider by its own attempts: its breaker opens, its health goes
down, its supervisor gives up on an actor, on its own evidence (breakers stay per
node). Alone, the alert manager reads those from the fleet. With several nodes only the
leader raises alerts, so at each beat every node publishes its actors' states to the
shared store (``node_actors``) and reads the others'; the leader's alert conditions
then see, for each integration, the worst of every live node's: a breaker not closed
on any node (not forced open by an operator), health down on any node, an actor given
up on any node. A node's rows go with it when it leaves, or is unlisted as silent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from ._actor import ActorSnapshot, ActorState
from .resilience import BreakerState, HealthState
from .store._pg._nodes import NodeActor


class ActorBoard(Protocol):
    node: str

    async def publish_actors(self, rows: Sequence[NodeActor]) -> list[NodeActor]: ...


@attrs.define(eq=False)
class ClusterActors:
    store: ActorBoard
    snapshots: Callable[[], list[ActorSnapshot]]  # this node's own
    others: list[NodeActor] = attrs.Factory(list)  # the other live nodes', at the last beat

    async def follow(self) -> int:
        """Publish this node's actors, and read the other live nodes'; how many read."""
        mine = [
            NodeActor(self.store.node, s.name, s.breaker.value, s.breaker_forced,
                      s.health.value, s.state.value)
            for s in self.snapshots()
        ]  # fmt: skip
        self.others = await self.store.publish_actors(mine)
        return len(self.others)

    def merged(self, snapshots: list[ActorSnapshot]) -> list[ActorSnapshot]:
        """``snapshots`` (this node's), each with the worst state any other node reported."""
        return [self._worst(s) for s in snapshots]

    def _worst(self, s: ActorSnapshot) -> ActorSnapshot:
        theirs = [a for a in self.others if a.integration == s.name]
        open_elsewhere = [a for a in theirs if a.breaker != "closed" and not a.forced]
        if s.breaker is BreakerState.CLOSED and open_elsewhere:
            s = attrs.evolve(s, breaker=BreakerState(open_elsewhere[0].breaker))
        if any(a.health == HealthState.DOWN.value for a in theirs):
            s = attrs.evolve(s, health=HealthState.DOWN)
        failed = [a.node for a in theirs if a.state == ActorState.FAILED.value]
        if s.state is not ActorState.FAILED and failed:
            s = attrs.evolve(s, state=ActorState.FAILED, last_error=f"on node {failed[0]}")
        return s
