"""Shared test harness: the daemon's core on a fake store and fake providers."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from ringbearer import _config, _daemon
from ringbearer._metrics import Metrics
from ringbearer.integrations import FakeAdapter, fake_kinds
from ringbearer.store import MemoryStore

EPOCH = 1_800_000_000.0  # the wall clock's start in virtual-time tests

FAKE_CONFIG = """
[wedding_day]
weekdays = []
[daemon]
grace_seconds = 5
[supervisor]
max_restarts = 3
within_seconds = 60
backoff_initial_seconds = 1
backoff_max_seconds = 8
[defaults]
lanes = 2
mailbox = 4
[defaults.retry]
initial_seconds = 1
max_seconds = 60
max_attempts = 5
[defaults.breaker]
window_seconds = 30
minimum_calls = 4
failure_rate = 0.5
open_seconds = 20
half_open_probes = 1
[integrations.alpha]
kind = "fake"
[integrations.beta]
kind = "fake"
[integrations.gamma]
kind = "fake"
[groups]
trio = ["alpha", "beta", "gamma"]
"""


def wall() -> float:
    """A wall clock that moves with trio's (virtual) clock."""
    return EPOCH + trio.current_time()


@attrs.define
class Core:
    daemon: _daemon.Daemon
    store: MemoryStore
    adapters: dict[str, FakeAdapter]
    stop: trio.Event


@asynccontextmanager
async def running_core(
    tmp_path: Path,
    text: str = FAKE_CONFIG,
    setup: Callable[[dict[str, FakeAdapter]], None] = lambda a: None,
    store: MemoryStore | None = None,
) -> AsyncIterator[Core]:
    """The actors, dispatchers and supervisor of a daemon, on fakes, under trio's clock."""
    adapters: dict[str, FakeAdapter] = {}
    kinds = fake_kinds(adapters)
    config = _config.parse(text, tmp_path / "config.toml", kinds)
    store = MemoryStore(wall) if store is None else store  # reuse one: a restart
    daemon = _daemon.Daemon(config=config, store=store, wall=wall, metrics=Metrics(), sandbox=None)
    daemon.build(ssl.create_default_context(), kinds)
    setup(adapters)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ready = trio.Event()
        nursery.start_soon(lambda: _daemon.run_core(daemon, stop, lambda d: ready.set()))
        await ready.wait()
        yield Core(daemon, store, adapters, stop)
        stop.set()
