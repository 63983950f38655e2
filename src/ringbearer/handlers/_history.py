"""The audit log, messages and dead letters: reading them, replaying and purging.

Lists come newest first, ``limit`` at a time; a reply's ``before`` is the
cursor for the next page (None when nothing older is left).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import attrs

from .._errors import ErrorCode, RequestError
from .._logging import fields
from ..control import Audit, DeadLetter, DeadLetters, Message, PurgeDead, ReplayDead
from ..control import _replies as r
from ..store import DeadLetter as StoredDeadLetter
from ..store import DeadLetterOps, Event, MessageRecord, Queries

log = logging.getLogger("ringbearer.control")

MAX_LIST = 100_000
WHOLE_HISTORY = 100_000  # events of one message shown with it


def event_view(e: Event) -> r.EventView:
    return r.EventView(
        kind=e.kind,
        at=e.at,
        message_id=e.message_id,
        integration=e.integration,
        detail=e.detail,
        id=e.id,
    )


def letter_view(d: StoredDeadLetter) -> r.DeadLetterView:
    return r.DeadLetterView(
        message_id=d.message_id,
        target=d.target,
        integration=d.integration,
        reason=d.reason,
        at=d.at,
        attempts=d.attempts,
        payload=d.payload,
    )


def _cursor(ids: Sequence[int | None], limit: int) -> int | None:
    """Where the next page starts: the last id shown, when more than ``limit`` were found
    (each list asks for one more than it shows, to know)."""
    return ids[limit - 1] if len(ids) > limit else None


@attrs.frozen
class AuditHandler:
    queries: Queries

    async def __call__(self, request: Audit) -> r.AuditReply:
        limit = max(1, min(request.limit, MAX_LIST))
        events = await self.queries.events(
            since=request.since,
            message_id=request.message,
            kinds=[k.value for k in request.kinds],
            before=request.before,
            limit=limit + 1,
        )
        return r.AuditReply(
            [event_view(e) for e in events[:limit]], before=_cursor([e.id for e in events], limit)
        )


@attrs.frozen
class DeadLettersHandler:
    queries: Queries

    async def __call__(self, request: DeadLetters) -> r.DeadLettersReply:
        limit = max(1, min(request.limit, MAX_LIST))
        letters = await self.queries.dead_letters(
            target=request.target, before=request.before, limit=limit + 1
        )
        return r.DeadLettersReply(
            [letter_view(d) for d in letters[:limit]],
            before=_cursor([d.message_id for d in letters], limit),
        )


async def _history(queries: Queries, message_id: int) -> list[r.EventView]:
    """A message's events, oldest first."""
    events = await queries.events(message_id=message_id, limit=WHOLE_HISTORY)
    return [event_view(e) for e in reversed(events)]


def message_view(m: MessageRecord, events: list[r.EventView]) -> r.MessageReply:
    return r.MessageReply(**attrs.asdict(m), events=events)


@attrs.frozen
class MessageHandler:
    queries: Queries

    async def __call__(self, request: Message) -> r.MessageReply:
        found = await self.queries.message(request.id)
        if found is None:
            raise RequestError(ErrorCode.NOT_FOUND, f"no message {request.id}")
        return message_view(found, await _history(self.queries, request.id))


@attrs.frozen
class DeadLetterHandler:
    queries: Queries

    async def __call__(self, request: DeadLetter) -> r.DeadLetterReply:
        letter = await self.queries.dead_letter(request.id)
        if letter is None:
            raise RequestError(ErrorCode.NOT_FOUND, f"message {request.id} is not a dead letter")
        events = await _history(self.queries, request.id)
        found = await self.queries.message(request.id)
        message = None if found is None else message_view(found, events)
        return r.DeadLetterReply(
            **attrs.asdict(letter_view(letter), recurse=False), message=message, events=events
        )


@attrs.frozen
class ReplayHandler:
    ops: DeadLetterOps

    async def __call__(self, request: ReplayDead) -> r.ReplayReply:
        request.check()  # the store tells its listener of the targets: dispatchers wake
        done = await self.ops.replay_dead(
            request.ids or None,
            target=request.target,
            after=request.after,
            limit=request.limit,
            by=request.by,
        )
        log.info("dead letters replayed", extra=fields(count=len(done), by=request.by))
        after = max(done, default=request.after)
        left = await self.ops.count_dead(target=request.target, after=after) if request.all else 0
        return r.ReplayReply(done, request.skipped(done), left)


@attrs.frozen
class PurgeHandler:
    ops: DeadLetterOps
    wall: Callable[[], float]

    async def __call__(self, request: PurgeDead) -> r.PurgeReply:
        request.check()
        before = None if request.older_than is None else self.wall() - request.older_than
        done = await self.ops.purge_dead(
            request.ids or None,
            target=request.target,
            after=request.after,
            dead_before=before,
            limit=request.limit,
            by=request.by,
        )
        log.info("dead letters purged", extra=fields(count=len(done), by=request.by))
        after = max(done, default=request.after)
        left = 0
        if request.all:
            left = await self.ops.count_dead(target=request.target, after=after, dead_before=before)
        return r.PurgeReply(done, request.skipped(done), left)
