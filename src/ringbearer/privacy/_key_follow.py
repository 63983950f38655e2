"""Following the key store's destroy log: a key destroyed on one node leaves every node's cache.

Each node's vault caches unwrapped data keys, and a destroy on one node forgets the key
only in that node's cache: another node that read the key before could still open a
sealed copy made before the erasure, for as long as the key stayed in its cache. The
shared key store (:class:`~._keystore_pg.PgKeyStore`) therefore logs every destroy, in
the transaction that deletes the key, under an increasing sequence number, and each
node's :class:`KeyFollower`, run by the node's heartbeat every few seconds, forgets what
was destroyed since its cursor. The window in which another node can still open an
erased subject's payloads is thus the heartbeat's period, not the life of the cache.

The log is kept for a retention (days), then pruned. A node that did not follow for
longer than that (paused, partitioned) may have missed destroys: the log says so
(:class:`DestroyLogPruned`), and the node drops its whole cache, the one answer that
does not depend on what it missed.

A node's own destroys come back to it through the log too: forgetting a key twice is
harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

from .._errors import RingbearerError

if TYPE_CHECKING:
    from ._vault import Vault

DESTROY_BATCH = 10_000  # log rows per read: a node that fell far behind reads in rounds


class DestroyLogPruned(RingbearerError):
    """Destroys after the cursor may be pruned: drop the whole cache, go on from ``newest``."""

    def __init__(self, since: int, pruned_through: int, newest: int) -> None:
        self.since = since  # the cursor the reader gave
        self.pruned_through = pruned_through  # the newest sequence number pruned from the log
        self.newest = newest  # the newest sequence number now: where to go on from
        super().__init__(
            f"the destroy log is pruned through {pruned_through}, past the cursor {since}:"
            " destroys may have been missed"
        )


class DestroyLog(Protocol):
    """The key store's log of destroys, as a follower reads it (PostgreSQL's key store)."""

    async def destroyed_since(
        self, seq: int, *, limit: int = DESTROY_BATCH
    ) -> tuple[list[str], int]:
        """Up to ``limit`` subjects destroyed after ``seq``, in order, and the newest seq read
        (``seq`` when none); :class:`DestroyLogPruned` if some after ``seq`` are pruned."""
        ...

    async def last_destroyed(self) -> int:
        """The newest sequence number now (0 if nothing was ever destroyed)."""
        ...


@attrs.define
class KeyFollower:
    """One node's reader of the destroy log: forgets in its vault what other nodes destroyed."""

    keys: DestroyLog
    vault: Vault
    cursor: int  # the newest destroy applied to the vault's cache
    batch: int = DESTROY_BATCH

    @classmethod
    async def start(
        cls, keys: DestroyLog, vault: Vault, *, batch: int = DESTROY_BATCH
    ) -> KeyFollower:
        """A follower from the log's newest destroy on; the vault's cache is emptied.

        Anything the vault cached before the cursor was read may be a key whose destroy the
        cursor already counts as applied: it goes (a node starts with an empty cache anyway,
        so this costs a few reads only if the vault was used before its follower started).
        """
        cursor = await keys.last_destroyed()
        vault.forget_all()
        return cls(keys, vault, cursor, batch)

    async def follow(self) -> int:
        """Forget every key destroyed since the cursor, reading the log in rounds until it is
        read to its end; how many cached keys were dropped."""
        forgotten = 0
        while True:
            try:
                subjects, newest = await self.keys.destroyed_since(self.cursor, limit=self.batch)
            except DestroyLogPruned as behind:
                # What was missed is unknown: nothing cached may be kept.
                forgotten += self.vault.forget_all()
                self.cursor = behind.newest
                continue
            forgotten += self.vault.forget(subjects)
            self.cursor = newest
            if len(subjects) < self.batch:
                return forgotten
