"""What the alert manager asks of the daemon, answered from the fleet, the config and the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs

from ._actor import ActorSnapshot
from ._alerting import ALERT_KEY_PREFIX
from ._fleet import Fleet
from ._journal import Journal
from ._reload import CurrentConfig
from .control import MessageIn
from .store import AlertRecord, AlertState, EventKind, Queries

# Dead letters read back at start for a dead-letter alert that was open: the
# count is only its summary, and one is enough for the alert to hold.
DEAD_LETTERS_READ_BACK = 1000


@attrs.frozen
class AlertHost:
    """The alert manager's :class:`~ringbearer._alerting.Host`."""

    current: CurrentConfig
    fleet: Fleet
    queries: Queries
    journal: Journal
    submit: Callable[[MessageIn], Awaitable[int]]  # through the intake, as any message
    state: AlertState
    # On a shared store: this node's actors with the worst state another node reported.
    merge: Callable[[list[ActorSnapshot]], list[ActorSnapshot]] | None = None

    def wall(self) -> float:
        return self.journal.wall()

    def snapshots(self) -> list[ActorSnapshot]:
        own = self.fleet.snapshots()
        return own if self.merge is None else self.merge(own)

    def can_deliver(self, target: str) -> bool:
        return self.fleet.can_deliver(self.current.value.targets().get(target, ()))

    def kind_of(self, target: str) -> str:
        config = self.current.value
        members = config.targets().get(target, ())
        return config.integrations[members[0]].kind if members else ""

    async def send_alert(self, message: MessageIn) -> int:
        return await self.submit(message)

    async def message_states(self, ids: Sequence[int]) -> dict[int, str]:
        return await self.queries.states(ids)

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        return await self.queries.deadlines_before(wall)

    async def dead_letters_since(self, wall: float, target: str) -> list[float]:
        letters = await self.queries.dead_letters(target=target, limit=DEAD_LETTERS_READ_BACK)
        found = []
        for letter in letters:
            message = None if letter.at < wall else await self.queries.message(letter.message_id)
            if message is not None and not message.idempotency_key.startswith(ALERT_KEY_PREFIX):
                found.append(letter.at)
        return sorted(found)

    def audit(self, kind: EventKind, **detail: object) -> None:
        self.journal.event(kind, None, **detail)

    async def save_alert(self, alert: AlertRecord) -> None:
        await self.state.save_alert(alert)

    async def open_alerts(self) -> list[AlertRecord]:
        return await self.state.open_alerts()

    async def last_alert_id(self) -> int:
        return await self.state.last_alert_id()
