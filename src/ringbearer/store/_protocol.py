"""The ``Store`` protocol: what the daemon needs from a durable outbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from .._delivery import Priority
from ._model import (
    ALL_PRIORITIES,
    Accepted,
    BreakerRecord,
    Claimed,
    Counters,
    DeadLetter,
    Event,
    NewMessage,
    Settle,
    Span,
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

    async def claim(
        self, target: str, limit: int, span: Span = ALL_PRIORITIES
    ) -> list[Claimed]: ...

    async def record(self, settles: Sequence[Settle]) -> None: ...

    def park_claim(
        self,
        target: str,
        limit: int,
        handoff: Callable[[list[Claimed]], None],
        span: Span = ALL_PRIORITIES,
    ) -> None: ...

    def unpark_claim(self, target: str) -> None: ...

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        """The status of each of these messages (those that exist)."""

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        """Queued or in-flight messages whose deadline is before ``wall``: id, target, deadline."""

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        """When the oldest message still queued was submitted, by target and priority."""

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

    # -- operators' tools: the audit log by kind, dead letters by target, replay, purge ---

    async def find_events(
        self,
        *,
        since: float | None = None,
        message_id: int | None = None,
        kinds: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[Event]:
        """As :meth:`events`, and only events of ``kinds`` when any are given."""

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        """The message ``message_id`` if it is a dead letter, else None."""

    async def find_dead(self, *, target: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters by id, only those sent to ``target`` when it is given."""

    async def count_dead(
        self, *, target: str | None = None, after: int = 0, dead_before: float | None = None
    ) -> int:
        """How many dead letters match (as :meth:`replay_dead` and :meth:`purge_dead` select)."""

    async def replay_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        """Queue dead letters again as fresh work; return their ids, ascending.

        ``ids`` (those of them that are dead letters), or else every dead
        letter of ``target`` (or of every target) with an id above ``after``;
        at most ``limit`` either way. Each is queued due now with no attempts
        and its route from the start, keeping its idempotency key, and gets a
        ``replayed`` audit event naming ``by``; the listener hears of their
        targets as of a submit.
        """

    async def purge_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        dead_before: float | None = None,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        """Delete dead letters (selected as by :meth:`replay_dead`); return their ids.

        ``dead_before`` (wall time) keeps those dead-lettered later. The audit
        log keeps their history and gains a ``purged`` event for each.
        """
