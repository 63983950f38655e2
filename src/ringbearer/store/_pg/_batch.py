"""The queue's part of each group-commit transaction on PostgreSQL: submits, parked claims,
settles, claims.

It does what SQLite's (``_sqlite._batch``) does, in the same order, with what
several nodes sharing one database change:

* ids come from the database's ``messages_id_seq``, not from a count kept in
  memory. Submits are admitted op by op (see ``_keys``) under provisional
  negative ids, and the new messages of the batch then take that many ids of the
  sequence at once; a refused submit takes none. A sequence is not rolled back:
  a batch that fails after taking its ids leaves a gap (ids still only grow).
* a claim leases its messages to this node (``_claims``); the queue remembers
  each one's epoch. A settle is applied only to a message still in flight,
  leased to this node, under the epoch it was claimed with; a settle matching
  none is *fenced*: not applied, logged and counted, since another node has
  taken the work over (or this node's lease expired and the message was
  returned to the queue).
* a target's messages are claimed by deadline once any node submitted one with a
  deadline: a target this node has not seen one for is looked up in the deadline
  index before its claim.
* the queue's counters are this node's view: ``queued`` as loaded plus what
  this node changed; ``inflight`` the messages this node holds in flight.

Claims parked by idle dispatchers are served in the transaction of the submit
that brings their target work. Counters, hand-offs, leases and the listener are
updated once the transaction has committed.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import TypeGuard

import attrs

from ..._errors import RequestError
from ..._logging import fields
from .._group_commit import Batch, Op, OpKind
from .._keys import Fresh, KeyHolder, KeyReused, admit
from .._model import Claimed, MessageStatus, NewMessage, Settle, Span
from .._sqlite._batch import Parked
from .._sqlite._rows import INSERT_MESSAGE, message_row, settle_row
from .._sqlite._shared import Shared
from ._claims import Lease, claim
from ._db import PgTx

log = logging.getLogger("ringbearer.store")

_INSERT_MESSAGE = INSERT_MESSAGE.replace("?", "%s")
_INSERT_SUBJECT = (
    "INSERT INTO message_subjects (subject, message_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
)
# SQLite's SETTLE, which also ends the lease, applied only under it (``_leased``).
_SETTLE = (
    "UPDATE messages SET status = %s, attempts = %s, next_attempt_at = %s, route_index = %s,"
    " member_attempts = %s, integration = %s, last_error = %s,"
    " provider_id = COALESCE(%s, provider_id), updated_at = %s,"
    " delivered_at = COALESCE(%s, delivered_at), held = %s, last_event = %s, attempt_at = %s,"
    " attempt_seconds = %s, attempt_outcome = %s, attempt_status = %s,"
    " lease_node = NULL, lease_until = NULL"
    " WHERE id = %s AND status = 'inflight' AND lease_node = %s AND lease_epoch = %s"
)
_NO_EPOCH = -1  # a message this node holds no lease of: no row has it


@attrs.define
class _Written:
    """What the queue's statements changed in one batch."""

    fresh: list[Fresh] = attrs.Factory(list)
    claimed: list[tuple[Claimed, int]] = attrs.Factory(list)  # with each lease's epoch
    settled: list[Settle] = attrs.Factory(list)
    fenced: list[Settle] = attrs.Factory(list)
    handoffs: list[tuple[str, Parked, list[Claimed]]] = attrs.Factory(list)


class PgQueueBatch:
    """Writes the queue's ops of each batch; keeps the parked claims and this node's leases."""

    def __init__(self, shared: Shared, *, node: str, lease_seconds: float) -> None:
        self._shared = shared
        self._node = node
        self._lease_seconds = lease_seconds
        self._parked: dict[str, Parked] = {}
        self.deadline_targets: set[str] = set()  # targets with messages that have deadlines
        self.leases: dict[int, int] = {}  # message id -> epoch, for messages this node holds
        self.fenced = 0  # settles refused since the start: their lease was no longer ours

    def park(self, target: str, parked: Parked) -> None:
        self._parked[target] = parked

    def unpark(self, target: str) -> None:
        self._parked.pop(target, None)

    def write(self, tx: PgTx, batch: Batch) -> None:
        """The queue's statements for ``batch`` (a ``WriteBatch`` for the writer)."""
        written = _Written()
        # Registered first: a statement that fails below must still re-park claims taken above.
        batch.on_commit.append(functools.partial(self._committed, written))
        batch.on_failure.append(functools.partial(self._repark, written))
        self._write_submits(tx, batch, written)
        self._claim_parked(tx, batch, written)
        self._settle(tx, batch, written)
        for op in batch.of(OpKind.CLAIM):
            target, limit, span = op.data
            taken = self._claim(tx, target, limit, batch.now, span)
            op.result = [c for c, _ in taken]
            written.claimed.extend(taken)

    def _write_submits(self, tx: PgTx, batch: Batch, written: _Written) -> None:
        ops = batch.of(OpKind.SUBMIT)
        if not ops:
            return
        held = _held_keys(tx, [m for op in ops for m in op.data])
        base = -sum(len(op.data) for op in ops)  # provisional ids: below any stored id
        fresh: list[Fresh] = []
        for op in ops:
            try:
                admission = admit(op.data, held, base + len(fresh))
            except RequestError as exc:  # a reused key, a key the store cannot hold
                op.error = exc  # only this caller is refused; the batch goes on
                continue
            held.update(admission.keys)
            fresh.extend(admission.fresh)
            op.result = admission.accepted
        if not fresh:
            return
        rows = [message_row(f, batch.now) for f in fresh]  # before taking ids: it may fail
        ids = _Ids(base, _take_ids(tx, len(fresh)))
        for op in ops:
            ids.assign(op)
        written.fresh.extend(attrs.evolve(f, id=ids.real(f.id)) for f in fresh)
        tx.executemany(_INSERT_MESSAGE, [(ids.real(r[0]), *r[1:]) for r in rows])
        about = [(s, f.id) for f in written.fresh for s in f.message.subjects]
        if about:
            tx.executemany(_INSERT_SUBJECT, about)
        for f in written.fresh:
            if f.message.deliver_by is not None:
                self.deadline_targets.add(f.message.target)

    def _claim_parked(self, tx: PgTx, batch: Batch, written: _Written) -> None:
        """Claim fresh messages for idle dispatchers in the submit's own transaction."""
        for target in {f.message.target for f in written.fresh}:
            parked = self._parked.pop(target, None)
            if parked is not None:
                taken = self._claim(tx, target, parked.limit, batch.now, parked.span)
                written.claimed.extend(taken)
                written.handoffs.append((target, parked, [c for c, _ in taken]))

    def _settle(self, tx: PgTx, batch: Batch, written: _Written) -> None:
        """Apply the settles of messages this node still holds; fence the others."""
        settles = [s for op in batch.of(OpKind.SETTLE) for s in op.data]
        if not settles:
            return
        epochs = {s.message_id: self.leases.get(s.message_id, _NO_EPOCH) for s in settles}
        leased = self._leased(tx, epochs)
        applied = [s for s in settles if s.message_id in leased]
        if applied:
            tx.executemany(
                _SETTLE,
                [(*settle_row(s, batch.now), self._node, epochs[s.message_id]) for s in applied],
            )
        written.settled.extend(applied)
        written.fenced.extend(s for s in settles if s.message_id not in leased)

    def _leased(self, tx: PgTx, epochs: dict[int, int]) -> set[int]:
        """Which of these messages are in flight under this node's lease and epoch, locked
        until the commit so that no other node can take them over in between (in id
        order: another transaction locking some of them in that order cannot deadlock)."""
        rows = tx.fetchall(
            "SELECT m.id FROM messages m"
            " JOIN unnest(%s::BIGINT[], %s::BIGINT[]) AS given (id, epoch)"
            " ON m.id = given.id AND m.lease_epoch = given.epoch"
            " WHERE m.status = 'inflight' AND m.lease_node = %s ORDER BY m.id FOR UPDATE OF m",
            (list(epochs), list(epochs.values()), self._node),
        )
        return {int(r[0]) for r in rows}

    def _claim(
        self, tx: PgTx, target: str, limit: int, now: float, span: Span
    ) -> list[tuple[Claimed, int]]:
        lease = Lease(self._node, now + self._lease_seconds)
        by_deadline = self._has_deadlines(tx, target)
        return claim(tx, target, limit, now, span, lease, by_deadline=by_deadline)

    def _has_deadlines(self, tx: PgTx, target: str) -> bool:
        """Whether ``target`` has seen a deadline: known here, or (another node submitted
        it) found in the deadline index, one probe that costs next to nothing."""
        if target not in self.deadline_targets:
            rows = tx.fetchall(
                "SELECT 1 FROM messages WHERE status = 'queued' AND target = %s"
                " AND deliver_by IS NOT NULL LIMIT 1",
                (target,),
            )
            if not rows:
                return False
            self.deadline_targets.add(target)
        return True

    def _committed(self, written: _Written) -> None:
        counters = self._shared.counters
        for f in written.fresh:
            counters.queued(f.message.target, f.message.priority, 1)
        for c, epoch in written.claimed:
            counters.queued(c.target, c.priority, -1)
            counters.inflight(c.target, 1)
            self.leases[c.id] = epoch
        for s in written.settled:
            self._release(s.message_id, s.target)
            if s.kind.status is MessageStatus.QUEUED:
                counters.queued(s.target, s.priority, 1)
        for s in written.fenced:
            self._release(s.message_id, s.target)
            self.fenced += 1
            log.warning("settle fenced", extra=fields(message_id=s.message_id, node=self._node))
        self._hand_off(written)
        if written.fresh:
            self._shared.listener.submitted({f.message.target for f in written.fresh})
        if written.settled:
            self._shared.listener.settled(written.settled)

    def _release(self, message_id: int, target: str) -> None:
        """This node no longer holds ``message_id`` in flight."""
        if self.leases.pop(message_id, None) is not None:
            self._shared.counters.inflight(target, -1)

    def _hand_off(self, written: _Written) -> None:
        for target, parked, handed in written.handoffs:
            if handed:
                parked.handoff(handed)
            else:
                self._parked.setdefault(target, parked)

    def _repark(self, written: _Written) -> None:
        for target, parked, _ in written.handoffs:  # rolled back: park again
            self._parked.setdefault(target, parked)


@attrs.frozen
class _Ids:
    """Provisional ids (from ``base`` up, all negative) and the real ones they stand for."""

    base: int
    taken: list[int]

    def real(self, message_id: int) -> int:
        return self.taken[message_id - self.base] if message_id < 0 else message_id

    def assign(self, op: Op) -> None:
        """Give ``op``'s acknowledgements (or its refusal) the real ids."""
        if op.result is not None:
            op.result = [attrs.evolve(a, id=self.real(a.id)) for a in op.result]
        error = op.error
        if isinstance(error, KeyReused) and error.earlier_id is not None and error.earlier_id < 0:
            earlier = self.real(error.earlier_id)  # a message of an earlier submit of the batch
            op.error = KeyReused(error.index, error.key, earlier, error.earlier_index)


def _take_ids(tx: PgTx, count: int) -> list[int]:
    """``count`` new message ids, ascending (another node's may fall in between)."""
    rows = tx.fetchall("SELECT nextval('messages_id_seq') FROM generate_series(1, %s)", (count,))
    return sorted(int(r[0]) for r in rows)


def _held_keys(tx: PgTx, messages: Sequence[NewMessage]) -> dict[str, KeyHolder]:
    """The stored holders of the keys these messages give (the earliest, should there be two).

    A key PostgreSQL cannot take as a parameter (a NUL, a lone surrogate) is not looked
    up: no message holds it, and ``admit`` refuses its submit, naming the field.
    """
    given = sorted({m.idempotency_key for m in messages if _sendable(m.idempotency_key)})
    if not given:
        return {}
    rows = tx.fetchall(
        "SELECT idempotency_key, id, target, payload FROM messages"
        " WHERE idempotency_key = ANY(%s) ORDER BY id DESC",
        (given,),
    )
    # Descending: the earliest holder of a key is the last written, and stays.
    return {
        key: KeyHolder(message_id, target, json.loads(payload))
        for key, message_id, target, payload in rows
    }


def _sendable(key: str | None) -> TypeGuard[str]:
    if not key or "\x00" in key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
