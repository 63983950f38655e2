"""A scriptable adapter, the adapter seam's fake (as httpx ships MockTransport).

Tests give each fake integration a behaviour: an async function from an
envelope to an outcome, which may also sleep (virtual time) or raise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from .._delivery import Delivered, Envelope, Outcome
from .._errors import InvalidPayload
from ._base import (
    AdapterContext,
    BatchingLane,
    BatchLimits,
    Checkpoint,
    ProviderKind,
    _no_checkpoint,
)

Behaviour = Callable[[Envelope], Awaitable[Outcome]]


async def always_delivered(envelope: Envelope) -> Outcome:
    return Delivered(provider_id=f"fake-{envelope.id}")


@attrs.frozen
class FakeSettings:
    family: str = "email"
    batch_size: int | None = None  # set to make the actor gather batches
    batch_wait_seconds: float = 0.05


@attrs.define
class _FakeLane:
    adapter: FakeAdapter

    async def deliver(self, envelope: Envelope) -> Outcome:
        self.adapter.calls.append(envelope)
        return await self.adapter.behaviour(envelope)

    async def deliver_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        self.adapter.batches.append([envelope.id for envelope in envelopes])
        return [await self.deliver(envelope) for envelope in envelopes]


@attrs.define
class FakeAdapter:
    """Records every envelope it is asked to deliver, and answers as told."""

    name: str
    behaviour: Behaviour = always_delivered
    calls: list[Envelope] = attrs.Factory(list)
    batching: BatchLimits | None = None
    checkpoint: Checkpoint = _no_checkpoint  # the daemon's, for multi-step behaviours
    batches: list[list[int]] = attrs.Factory(list)  # envelope ids of each batch delivered
    lanes_opened: int = 0

    @property
    def kind(self) -> str:
        return "fake"

    def validate(self, payload: Mapping[str, Any]) -> None:
        if "invalid" in payload:
            raise InvalidPayload("field 'invalid' is not allowed")

    @asynccontextmanager
    async def open_lane(self) -> AsyncIterator[BatchingLane]:
        self.lanes_opened += 1
        yield _FakeLane(self)


def fake_kinds(adapters: dict[str, FakeAdapter]) -> dict[str, ProviderKind]:
    """A provider table whose ``fake`` kind hands out (and remembers) FakeAdapters."""

    def build(settings: Any, ctx: AdapterContext) -> FakeAdapter:
        adapter = adapters.get(ctx.name)
        if adapter is None:
            adapter = adapters[ctx.name] = FakeAdapter(ctx.name)
        if settings.batch_size is not None and adapter.batching is None:  # a test's own first
            adapter.batching = BatchLimits(settings.batch_size, settings.batch_wait_seconds)
        adapter.checkpoint = ctx.checkpoint
        return adapter

    return {
        "fake": ProviderKind(kind="fake", settings_type=FakeSettings, build=build, family="email")
    }
