"""The ``Store`` protocol: what the daemon needs from a durable outbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from ._model import (
    Accepted,
    BreakerRecord,
    Claimed,
    Counters,
    DeadLetter,
    Event,
    NewMessage,
    Settle,
)


class StoreListener(Protocol):
    """Told what a commit made durable, after it is durable."""

    def submitted(self, targets: set[str]) -> None: ...

    def settled(self, settles: Sequence[Settle]) -> None: ...


class NullListener:
    def submitted(self, targets: set[str]) -> None:
        pass

    def settled(self, settles: Sequence[Settle]) -> None:
        pass


@attrs.frozen
class StoreStatistics:
    commits: int
    committed_ops: int
    pending_ops: int


class Store(Protocol):
    """The SQLite store and the in-memory fake both provide this."""

    listener: StoreListener
    counters: Counters

    def statistics(self) -> StoreStatistics: ...

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]: ...

    async def claim(self, target: str, limit: int) -> list[Claimed]: ...

    async def record(self, settles: Sequence[Settle]) -> None: ...

    def park_claim(
        self, target: str, limit: int, handoff: Callable[[list[Claimed]], None]
    ) -> None: ...

    def unpark_claim(self, target: str) -> None: ...

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        """When ``integration``'s latest attempts (at most ``limit``) since ``since`` started."""

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        """Durably keep a multi-step delivery's completed steps; return after the commit."""

    async def next_due(self, target: str) -> float | None: ...

    async def recover_inflight(self) -> int: ...

    async def flush(self) -> None: ...

    def append_event(self, event: Event) -> None: ...

    def save_breaker(self, record: BreakerRecord) -> None: ...

    async def breakers(self) -> dict[str, BreakerRecord]: ...

    async def set_paused(self, name: str, paused: bool) -> None: ...

    async def paused(self) -> set[str]: ...

    async def events(
        self, *, since: float | None = None, message_id: int | None = None, limit: int = 1000
    ) -> list[Event]: ...

    async def dead_letters(self, *, limit: int = 1000) -> list[DeadLetter]: ...

    async def message(self, message_id: int) -> dict[str, Any] | None: ...
