"""Several nodes on one database: who is alive (heartbeats), and who leads the duties that
must run once (a leader's row with a term and an expiry).

**Heartbeats.** Each node writes ``nodes.heartbeat_at`` every ``heartbeat_seconds`` and,
in the same transaction, extends the leases of the messages it has in flight, so a long
attempt keeps its messages. A node silent for ``lease_seconds`` lets its leases expire;
the others return that work to the queue (``PgQueue.reclaim_expired``).

**Leadership** is a row per duty in ``leaders``: the node holding it, its term, and when
it expires. A node takes the row only once it has expired (the term then goes up by
one), and keeps it by renewing before then, naming its term; a renewal that finds
another term has lost the lead. This is a row, not an advisory lock: a session-level
advisory lock breaks behind a pooler in transaction mode, which hands each
transaction to any server connection (Oban lost its leadership that way, oban#1488);
a row taken and renewed in short transactions works through any pooler. A leader that
pauses past its expiry (SIGSTOP, a long GC) may believe it still leads until its next
renewal fails: duties that write pass the term to the store where it must be fenced.

Times are the nodes' wall clocks (kept by NTP); a lease of 15 s tolerates skews of a
second or two.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._db import PgTx, Row, Session, WallClock


@attrs.frozen
class NodeView:
    node: str
    host: str
    started_at: float
    heartbeat_at: float
    leases: int  # messages it holds in flight


@attrs.frozen
class NodeActor:
    """One node's actor as the node published it at its last beat (for the leader's
    alerts: ``_cluster_actors``)."""

    node: str
    integration: str
    breaker: str
    forced: bool
    health: str
    state: str


@attrs.frozen
class Lead:
    """A leadership held: the duty, the term it is held under, and until when."""

    duty: str
    node: str
    term: int
    until: float


@attrs.define(eq=False)
class Nodes:
    """This node's side of the registry: beats, and lists the others."""

    session: Session
    node: str
    host: str
    clock: WallClock
    lease_seconds: float
    started_at: float = 0.0

    async def beat(self, held: Sequence[int] = ()) -> int:
        """Say this node is alive; extend the leases of ``held``, the messages it is working
        on (one it claimed in a transaction whose commit it never heard of is not among
        them: that lease runs out, and the message is taken back). How many it extended."""
        now = self.clock()
        started = self.started_at = self.started_at or now

        def beat(tx: PgTx) -> int:
            tx.execute(
                "INSERT INTO nodes (node, host, started_at, heartbeat_at) VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (node) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
                (self.node, self.host, started, now),
            )
            # Locked in id order, as a settle locks them: two never wait on each other.
            rows = tx.fetchall(
                "WITH mine AS (SELECT id FROM messages WHERE status = 'inflight'"
                " AND lease_node = %s AND id = ANY(%s) ORDER BY id FOR UPDATE)"
                " UPDATE messages SET lease_until = %s WHERE id IN (SELECT id FROM mine)"
                " RETURNING id",
                (self.node, sorted(held), now + self.lease_seconds),
            )
            return len(rows)

        return await self.session.transaction(beat)

    async def leave(self) -> None:
        """A clean stop: this node is no longer listed."""

        def leave(tx: PgTx) -> None:
            tx.execute("DELETE FROM nodes WHERE node = %s", (self.node,))
            tx.execute("DELETE FROM node_actors WHERE node = %s", (self.node,))

        await self.session.transaction(leave)

    async def publish_actors(self, rows: Sequence[NodeActor]) -> list[NodeActor]:
        """Replace this node's published actors with ``rows``; the other listed nodes'."""

        def publish(tx: PgTx) -> list[Row]:
            tx.execute("DELETE FROM node_actors WHERE node = %s", (self.node,))
            tx.executemany(
                "INSERT INTO node_actors (node, integration, breaker, forced, health, state)"
                " VALUES (%s,%s,%s,%s,%s,%s)",
                [(self.node, r.integration, r.breaker, int(r.forced), r.health, r.state)
                 for r in rows],
            )  # fmt: skip
            return tx.fetchall(
                "SELECT a.node, a.integration, a.breaker, a.forced, a.health, a.state"
                " FROM node_actors a JOIN nodes n ON n.node = a.node"
                " WHERE a.node <> %s ORDER BY a.node, a.integration",
                (self.node,),
            )

        found = await self.session.transaction(publish)
        return [NodeActor(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in found]

    async def views(self) -> list[NodeView]:
        """Every node that beat, with the leases it holds, by id."""
        rows = await self.session.query(
            "SELECT n.node, n.host, n.started_at, n.heartbeat_at,"
            " (SELECT COUNT(*) FROM messages m WHERE m.status = 'inflight'"
            "  AND m.lease_node = n.node) FROM nodes n ORDER BY n.node"
        )
        return [NodeView(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]

    async def forget_silent(self, silent_for: float) -> list[str]:
        """Drop the nodes silent for ``silent_for`` seconds (listed as gone); their ids."""
        since = self.clock() - silent_for

        def forget(tx: PgTx) -> list[Row]:
            gone = tx.fetchall(
                "DELETE FROM nodes WHERE heartbeat_at < %s AND node <> %s RETURNING node",
                (since, self.node),
            )
            tx.execute("DELETE FROM node_actors WHERE node = ANY(%s)", ([r[0] for r in gone],))
            return gone

        rows = await self.session.transaction(forget)
        return sorted(r[0] for r in rows)


@attrs.define(eq=False)
class Leadership:
    """Taking and keeping the lead of one duty."""

    session: Session
    duty: str
    node: str
    clock: WallClock
    lease_seconds: float

    async def acquire(self) -> Lead | None:
        """Lead if nobody does (or the lead expired), or renew a lead held; None if another
        node leads."""
        now = self.clock()
        until = now + self.lease_seconds

        def take(tx: PgTx) -> Lead | None:
            rows = tx.fetchall(
                "INSERT INTO leaders (duty, node, term, until) VALUES (%s, %s, 1, %s)"
                " ON CONFLICT (duty) DO UPDATE SET node = EXCLUDED.node, until = EXCLUDED.until,"
                " term = CASE WHEN leaders.node = EXCLUDED.node AND leaders.until >= %s"
                " THEN leaders.term ELSE leaders.term + 1 END"
                " WHERE leaders.node = EXCLUDED.node OR leaders.until < %s"
                " RETURNING term",
                (self.duty, self.node, until, now, now),
            )
            return Lead(self.duty, self.node, int(rows[0][0]), until) if rows else None

        return await self.session.transaction(take)

    async def renew(self, lead: Lead) -> Lead | None:
        """Keep ``lead`` (same term); None if it was lost (expired and taken)."""
        until = self.clock() + self.lease_seconds
        rows = await self.session.transaction(
            lambda tx: tx.fetchall(
                "UPDATE leaders SET until = %s WHERE duty = %s AND node = %s AND term = %s"
                " RETURNING term",
                (until, self.duty, self.node, lead.term),
            )
        )
        return attrs.evolve(lead, until=until) if rows else None

    async def resign(self, lead: Lead) -> None:
        """Give the lead up at once (a clean stop): another node may take it now."""
        await self.session.transaction(
            lambda tx: tx.execute(
                "UPDATE leaders SET until = 0 WHERE duty = %s AND node = %s AND term = %s",
                (self.duty, self.node, lead.term),
            )
        )

    async def leader(self) -> Lead | None:
        """Who leads the duty now (None if nobody, or the lead expired)."""
        rows = await self.session.query(
            "SELECT node, term, until FROM leaders WHERE duty = %s AND until >= %s",
            (self.duty, self.clock()),
        )
        return Lead(self.duty, rows[0][0], int(rows[0][1]), rows[0][2]) if rows else None
