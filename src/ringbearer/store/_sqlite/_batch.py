"""The queue's part of each group-commit transaction: submits, parked claims, settles, claims.

Submits are admitted op by op (see ``_keys``): a submit that reuses a key, or
holds one the store cannot hold, is refused on its own, and the other submits
of the batch are written. Claims parked by idle dispatchers are served in the
transaction of the submit that brings their target work. Counters, hand-offs
and the listener are updated once the transaction has committed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

import attrs

from ..._errors import RequestError
from .._keys import Fresh, KeyHolder, admit
from .._model import Claimed, MessageStatus, NewMessage, Settle, Span
from ._claims import claim
from ._db import Tx, dumps
from ._rows import INSERT_MESSAGE, INSERT_SUBJECT, SETTLE, message_row, settle_row
from ._shared import Shared
from ._writer import Batch, OpKind

Handoff = Callable[[list[Claimed]], None]


@attrs.frozen
class Parked:
    """An idle dispatcher's claim, waiting for its target's next submit."""

    limit: int
    handoff: Handoff
    span: Span


@attrs.define
class _Written:
    """What the queue's statements changed in one batch."""

    fresh: list[Fresh] = attrs.Factory(list)
    claimed: list[Claimed] = attrs.Factory(list)
    settled: list[Settle] = attrs.Factory(list)
    handoffs: list[tuple[str, Parked, list[Claimed]]] = attrs.Factory(list)


class QueueBatch:
    """Writes the queue's ops of each batch; keeps the next id and the parked claims."""

    def __init__(self, shared: Shared, *, next_id: int, deadline_targets: set[str]) -> None:
        self._shared = shared
        self._next_id = next_id
        self._deadline_targets = deadline_targets  # targets with messages that have deadlines
        self._parked: dict[str, Parked] = {}

    def park(self, target: str, parked: Parked) -> None:
        self._parked[target] = parked

    def unpark(self, target: str) -> None:
        self._parked.pop(target, None)

    async def write(self, tx: Tx, batch: Batch) -> None:
        """The queue's statements for ``batch`` (a ``WriteBatch`` for the writer)."""
        written = _Written()
        # Registered first: a statement that fails below must still re-park claims taken above.
        batch.on_commit.append(functools.partial(self._committed, written))
        batch.on_failure.append(functools.partial(self._repark, written))
        await self._write_submits(tx, batch, written)
        await self._claim_parked(tx, batch, written)
        settles = [s for op in batch.of(OpKind.SETTLE) for s in op.data]
        if settles:
            await tx.executemany(SETTLE, [settle_row(s, batch.now) for s in settles])
            written.settled.extend(settles)
        for op in batch.of(OpKind.CLAIM):
            target, limit, span = op.data
            op.result = await self._claim(tx, target, limit, batch.now, span)
            written.claimed.extend(op.result)

    async def _write_submits(self, tx: Tx, batch: Batch, written: _Written) -> None:
        ops = batch.of(OpKind.SUBMIT)
        if not ops:
            return
        held = await _held_keys(tx, [m for op in ops for m in op.data])
        for op in ops:
            try:
                admission = admit(op.data, held, self._next_id + len(written.fresh))
            except RequestError as exc:  # a reused key, a key the store cannot hold
                op.error = exc  # only this caller is refused; the batch goes on
                continue
            held.update(admission.keys)
            written.fresh.extend(admission.fresh)
            op.result = admission.accepted
        if written.fresh:
            await tx.executemany(INSERT_MESSAGE, [message_row(f, batch.now) for f in written.fresh])
            about = [(s, f.id) for f in written.fresh for s in f.message.subjects]
            if about:
                await tx.executemany(INSERT_SUBJECT, about)
        # Ids are taken only once the statement succeeded; a failed batch reuses them.
        self._next_id += len(written.fresh)
        for f in written.fresh:
            if f.message.deliver_by is not None:
                self._deadline_targets.add(f.message.target)

    async def _claim_parked(self, tx: Tx, batch: Batch, written: _Written) -> None:
        """Claim fresh messages for idle dispatchers in the submit's own transaction."""
        for target in {f.message.target for f in written.fresh}:
            parked = self._parked.pop(target, None)
            if parked is not None:
                claimed = await self._claim(tx, target, parked.limit, batch.now, parked.span)
                written.claimed.extend(claimed)
                written.handoffs.append((target, parked, claimed))

    async def _claim(
        self, tx: Tx, target: str, limit: int, now: float, span: Span
    ) -> list[Claimed]:
        by_deadline = target in self._deadline_targets
        return await claim(tx, target, limit, now, span, by_deadline=by_deadline)

    def _committed(self, written: _Written) -> None:
        counters = self._shared.counters
        for f in written.fresh:
            counters.queued(f.message.target, f.message.priority, 1)
        for c in written.claimed:
            counters.queued(c.target, c.priority, -1)
            counters.inflight(c.target, 1)
        for s in written.settled:
            counters.inflight(s.target, -1)
            if s.kind.status is MessageStatus.QUEUED:
                counters.queued(s.target, s.priority, 1)
        for target, parked, handed in written.handoffs:
            if handed:
                parked.handoff(handed)
            else:
                self._parked.setdefault(target, parked)
        if written.fresh:
            self._shared.listener.submitted({f.message.target for f in written.fresh})
        if written.settled:
            self._shared.listener.settled(written.settled)

    def _repark(self, written: _Written) -> None:
        for target, parked, _ in written.handoffs:  # rolled back: park again
            self._parked.setdefault(target, parked)


async def _held_keys(tx: Tx, messages: Sequence[NewMessage]) -> dict[str, KeyHolder]:
    """The stored holders of the keys these messages give (the earliest, should there be two)."""
    given = sorted({m.idempotency_key for m in messages if m.idempotency_key})
    if not given:
        return {}
    rows = await tx.fetchall(
        "SELECT idempotency_key, id, target, payload FROM messages"
        " WHERE idempotency_key IN (SELECT value FROM json_each(?)) ORDER BY id DESC",
        (dumps(given),),
    )
    # Descending: the earliest holder of a key is the last written, and stays.
    return {
        key: KeyHolder(message_id, target, json.loads(payload))
        for key, message_id, target, payload in rows
    }
