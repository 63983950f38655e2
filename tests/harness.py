"""Shared test harness: the daemon's core on a fake store and fake providers."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
import trio

from ringbearer import _config, _daemon
from ringbearer._actor import IntegrationActor
from ringbearer._alerting import AlertManager
from ringbearer._dispatcher import Dispatcher
from ringbearer._metrics import Metrics
from ringbearer._parts import Base, Parts
from ringbearer._systemd import Notifier
from ringbearer._wedding import Mode, Override
from ringbearer.control import (
    Breaker,
    BreakerAction,
    MessageIn,
    Pause,
    Request,
    Resume,
    Submit,
    Wait,
    WeddingDay,
    _protocol,
)
from ringbearer.control._protocol import Asks
from ringbearer.handlers import StatusHandler, answer
from ringbearer.integrations import FakeAdapter, fake_kinds
from ringbearer.store import MemoryStore

R = TypeVar("R")
CONVERTER = _protocol.converter()

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


def wire(value: Any) -> Any:
    """A reply as it crosses the wire (plain JSON values)."""
    return CONVERTER.unstructure(value)


@attrs.define
class Driver:
    """Drives the running parts as the control socket would: each call goes through the
    handler table and returns the wire's JSON, so tests assert on what clients see."""

    parts: Parts

    async def handle(self, request: Asks[R]) -> R:
        """The typed reply to one request."""
        assert isinstance(request, Request)
        # The table holds each request type's handler, whose reply is that request's ``R``.
        return cast(R, await answer(self.parts.table, request))

    async def submit(self, messages: Sequence[MessageIn]) -> list[dict[str, Any]]:
        return list(wire((await self.handle(Submit(list(messages)))).accepted))

    async def wait_idle(self, seconds: float) -> dict[str, Any]:
        return dict(wire(await self.handle(Wait(timeout=seconds))))

    def status(self) -> dict[str, Any]:
        handler = self.parts.table[_protocol.Status]
        assert isinstance(handler, StatusHandler)
        return dict(wire(handler.status()))

    async def set_paused(self, name: str, paused: bool, *, force: bool = False) -> dict[str, Any]:
        request = Pause(name, force) if paused else Resume(name, force)
        return dict(wire(await self.handle(request)))

    async def breaker(self, name: str, action: str, *, force: bool = False) -> dict[str, Any]:
        return dict(wire(await self.handle(Breaker(name, BreakerAction(action), force))))

    async def set_override(self, state: str, until: float | None) -> dict[str, Any]:
        """As a client sends it: through the wire's parser, which checks the state."""
        line = _protocol.request_line(1, "wedding-day", {"state": state, "until": until})
        request = _protocol.parse(line, CONVERTER).request
        assert isinstance(request, WeddingDay)
        return dict(wire(await self.handle(request)))

    async def reload(self, new: _config.Config) -> dict[str, Any]:
        return dict(wire(await self.parts.reloader.reload(new)))

    async def reload_file(self, *, force: bool = False) -> dict[str, Any]:
        return dict(wire(await self.parts.reloader.reload_file(force=force)))

    def is_idle(self) -> bool:
        return self.parts.wakeups.is_idle()

    @property
    def config(self) -> _config.Config:
        return self.parts.current.value

    @property
    def actors(self) -> dict[str, IntegrationActor]:
        return self.parts.fleet.actors

    @property
    def dispatchers(self) -> dict[str, Dispatcher]:
        return self.parts.fleet.dispatchers

    @property
    def mode(self) -> Mode:
        return self.parts.mode.mode

    @property
    def override(self) -> Override | None:
        return self.parts.mode.override

    @property
    def alerts(self) -> AlertManager:
        return self.parts.alerts


@attrs.define
class Core:
    daemon: Driver
    store: MemoryStore
    adapters: dict[str, FakeAdapter]
    stop: trio.Event

    @property
    def parts(self) -> Parts:
        return self.daemon.parts


@asynccontextmanager
async def running_core(
    tmp_path: Path,
    text: str = FAKE_CONFIG,
    setup: Callable[[dict[str, FakeAdapter]], None] = lambda a: None,
    store: MemoryStore | None = None,
    notifier: Notifier | None = None,
) -> AsyncIterator[Core]:
    """The actors, dispatchers and supervisor of a daemon, on fakes, under trio's clock."""
    adapters: dict[str, FakeAdapter] = {}
    kinds = fake_kinds(adapters)
    config = _config.parse(text, tmp_path / "config.toml", kinds)
    # Built here, so behaviours are set before anything runs (the daemon reuses them).
    adapters.update({n: FakeAdapter(n) for n, s in config.integrations.items() if s.enabled})
    setup(adapters)
    store = MemoryStore(wall) if store is None else store  # reuse one: a restart
    base = Base(
        config, store, wall, Metrics(), None, kinds, ssl.create_default_context(),
        notifier=notifier or Notifier({}),
    )  # fmt: skip
    started: list[Parts] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ready = trio.Event()

        def on_ready(parts: Parts) -> None:
            started.append(parts)
            ready.set()

        nursery.start_soon(lambda: _daemon.run_core(base, stop, on_ready))
        await ready.wait()
        yield Core(Driver(started[0]), store, adapters, stop)
        stop.set()
