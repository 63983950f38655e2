"""Which store the daemon runs on: the embedded SQLite file, or PostgreSQL (``[store] url``)
shared with other daemons, each a node of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
from prometheus_client import CollectorRegistry

from ._config import Config
from ._errors import cannot
from ._node_duty import NodeDuty, NodeMetrics
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


async def start_node_duty(
    store: Store, config: Config, registry: CollectorRegistry, nursery: trio.Nursery
) -> None:
    """On a shared database: this node's heartbeat and the reclaiming of silent nodes' work."""
    if isinstance(store, PostgresStore):
        duty = NodeDuty(store, config.store.heartbeat_seconds, NodeMetrics.on(registry))
        await nursery.start(duty.run)
