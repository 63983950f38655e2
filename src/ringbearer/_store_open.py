"""Which store the daemon runs on: the embedded SQLite file, or PostgreSQL (``[store] url``)
shared with other daemons, each a node of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from ._alert_feed import DeadLetterFeed
from ._cluster_actors import ClusterActors
from ._config import Config
from ._errors import cannot
from ._fleet import Fleet
from ._leader_duties import DUTY, LeaderDuties, Starter
from ._limit_share import share_limits
from ._mail_feed import MailEventFeed
from ._node_duty import NodeDuty, NodeMetrics
from ._parts import Parts
from ._shared_books import SharedBooks
from ._shared_controls import SharedControls
from .control._replies import ClusterStatus, NodeStatus
from .store import SqliteStore, Store
from .store._pg._store import PostgresStore

WallClock = Callable[[], float]


@asynccontextmanager
async def open_store(
    config: Config, wall: WallClock, private: Callable[[], None]
) -> AsyncIterator[Store]:
    """The store the config names, open (``private`` makes the state folder private first)."""
    settings = config.store
    if not settings.url:
        private()
        async with SqliteStore.open(
            config.db_path, clock=wall, synchronous=settings.synchronous,
            batch_max=settings.batch_max,
        ) as store:  # fmt: skip
            yield store
        return
    with cannot(f"create the state folder {config.state_dir}"):
        config.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(config.state_dir, 0o700)  # the key file and key store live there
    async with PostgresStore.open(
        settings.postgres_url(), clock=wall, batch_max=settings.batch_max,
        node=settings.node or None, lease_seconds=settings.lease_seconds,
    ) as pg:  # fmt: skip
        yield pg


async def start_node_duty(parts: Parts, nursery: trio.Nursery) -> None:
    """On a shared database: this node's heartbeat, the reclaiming of silent nodes' work,
    and each provider's limits split among the live nodes."""
    store, config = parts.base.store, parts.base.config
    if isinstance(store, PostgresStore):
        duty = NodeDuty(
            store, config.store.heartbeat_seconds, NodeMetrics.on(parts.base.metrics.registry),
            lambda: parts.current.value.targets(),
            lambda n: share_limits(
                parts.fleet, n, parts.current.value.wedding_day.release_per_second
            ),
            await _follows(parts, store),
        )  # fmt: skip
        await nursery.start(duty.run)


async def _follows(parts: Parts, store: PostgresStore) -> list[Callable[[], Awaitable[object]]]:
    """What other nodes set that this one takes up at each beat (``_node_duty``): pauses,
    holds and the override; destroyed keys; the books of suppressions, consents and
    erased subjects; every node's provider events, for the reputation guard, and its
    deliveries, for the frequency caps; every node's actors, for the leader's alerts."""
    controls = SharedControls(
        store, parts.fleet, store, parts.wakeups, parts.events.guard, parts.mode
    )
    book, wall = parts.intake.book, parts.base.wall
    rebuilds: dict[str, Callable[[], Awaitable[object]]] = {
        "suppressions": lambda: book.rebuild(wall())
    }
    caps = parts.intake.caps
    follows: list[Callable[[], Awaitable[object]]] = [
        controls.follow,
        lambda: caps.take_up(store, wall()),
    ]
    if parts.cluster is not None:
        follows.append(parts.cluster.follow)
    if parts.privacy is not None:
        rebuilds["consents"] = parts.privacy.rebuild_consent
        rebuilds["erased_subjects"] = parts.privacy.take_up_erased
        follows.append(parts.privacy.follow_keys)
    mail = await MailEventFeed.start(store, parts.events.guard)
    return [*follows, SharedBooks(store.versions, rebuilds).follow, mail.follow]


def leader_duties(parts: Parts, starters: list[Starter]) -> LeaderDuties:
    """The once-only duties: run always alone on SQLite, while leading on PostgreSQL."""
    store, registry = parts.base.store, parts.base.metrics.registry
    leading = store.leadership(DUTY) if isinstance(store, PostgresStore) else None
    duties = LeaderDuties(
        starters, leading, parts.base.config.store.lease_seconds, parts.alerts.restore,
        LeaderDuties.gauge_on(registry) if leading is not None else None,
    )  # fmt: skip
    if leading is not None:  # every node follows the mode; the leader tells of its changes
        parts.mode.announces = lambda: duties.leads
    return duties


def cluster_status(store: Store) -> Callable[[], Awaitable[ClusterStatus | None]] | None:
    """What ``status`` says of the nodes sharing the database (None: alone, on SQLite)."""
    if not isinstance(store, PostgresStore):
        return None
    pg, leadership = store, store.leadership(DUTY)

    async def status() -> ClusterStatus | None:
        lead = await leadership.leader()
        views = await pg.nodes()
        nodes = [NodeStatus(v.node, v.host, v.heartbeat_at, v.leases) for v in views]
        return ClusterStatus(
            pg.node, lead.node if lead else None, lead.term if lead else None, nodes, pg.fenced
        )

    return status


def cluster_actors(store: Store, fleet: Fleet) -> ClusterActors | None:
    """On a shared store: every node's actors, published and read at each beat, so the
    leader's alerts see a breaker open on any node."""
    return ClusterActors(store, fleet.snapshots) if isinstance(store, PostgresStore) else None


def shared(store: Store) -> bool:
    """Whether other nodes share this store (dead letters then reach alerts through it)."""
    return isinstance(store, PostgresStore)


def dead_letter_starters(parts: Parts) -> list[Starter]:
    """On a shared store: the leader's feed of every node's dead letters to its alerts."""
    if not shared(parts.base.store):
        return []
    tick = parts.base.config.alerting.tick_seconds
    feed = DeadLetterFeed(parts.base.store, parts.alerts, tick, parts.base.wall)
    return [lambda n: n.start(feed.run)]
