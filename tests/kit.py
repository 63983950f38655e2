"""What the adapter and simulator tests share: secrets, envelopes, canned answers, a simulator.

A test module keeps its own tables (keys, settings, payloads) and passes them
in. To use the ``sim`` fixture, import ``sim_fixture as sim_fixture`` and
define a ``sim_seed`` fixture returning the module's seed.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from types import EllipsisType
from typing import Any, TypeGuard, TypeVar

import attrs
import httpx
import pytest
import trio

from ringbearer._delivery import Envelope, Outcome, Permanent, Priority, Retry, Scope, Taken
from ringbearer._secrets import Secret, SecretRef
from ringbearer.integrations import AdapterContext, BatchingLane, provider_kinds
from ringbearer.integrations._base import Adapter, BatchLane
from ringbearer.simulator import SimulatorAddress, SimulatorState, serve_simulator

HOST = "127.0.0.1"
SSL = ssl.create_default_context()
T0 = 1_700_000_000.0  # an envelope's created_at: 2023-11-14 22:13:20 UTC
SDK_CALL_LIMIT = 10.0  # seconds any call into a synchronous SDK may take

T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]
Expect = Callable[[Outcome], bool]


# --- building adapters ---------------------------------------------------------


def secrets(keys: Mapping[str, str]) -> Callable[[SecretRef], Secret]:
    """Resolve a reference by its env name in ``keys``, read at each call (tests patch it)."""

    def resolve(ref: SecretRef) -> Secret:
        assert ref.env is not None
        return Secret(keys[ref.env])

    return resolve


def context(
    keys: Mapping[str, str], handler: Callable[[httpx.Request], Any] | None = None, **changes: Any
) -> AdapterContext:
    """An adapter context with secrets from ``keys``; ``handler`` (a MockTransport) answers."""
    transport = None if handler is None else httpx.MockTransport(handler)
    ctx = AdapterContext(
        name="test", timeout=5.0, ssl_context=SSL, secrets=secrets(keys), transport=transport
    )
    return attrs.evolve(ctx, **changes)


def mock_context(
    keys: Mapping[str, str], handler: Callable[[httpx.Request], Any], **changes: Any
) -> tuple[AdapterContext, list[httpx.Request]]:
    """A context mocked by ``handler``, and the list of the requests it is sent."""
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> Any:
        sent.append(request)
        return handler(request)

    return context(keys, record, **changes), sent


def envelope(
    payload: Mapping[str, Any],
    *,
    key: str = "msg-0001",
    message_id: int = 1,
    target: str = "t",
    priority: Priority = Priority.NORMAL,
    attempts: int = 0,
    created_at: float = T0,
    progress: Mapping[str, Any] | None = None,
) -> Envelope:
    """One claimed message carrying ``payload``; ``target`` is its integration too."""
    return Envelope(
        id=message_id,
        target=target,
        integration=target,
        priority=priority,
        payload=dict(payload),
        idempotency_key=key,
        attempts=attempts,
        created_at=created_at,
        progress=dict(progress or {}),
    )


async def deliver_one(adapter: Adapter, env: Envelope) -> Outcome:
    """Deliver ``env`` on a lane of its own."""
    async with adapter.open_lane() as lane:
        return await lane.deliver(env)


async def in_thread(call: Callable[[], T], limit: float = SDK_CALL_LIMIT) -> T:
    """Run a synchronous SDK call off the event loop, which keeps serving the simulator."""
    with trio.fail_after(limit):
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)


# --- answers and outcomes --------------------------------------------------------


def answer(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Handler:
    """A handler answering every request with ``status``: a str body as text, else JSON."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


# A TypeGuard, so that a test may go on to read the Retry's or Permanent's own fields.
def retry(
    taken: Taken, after: float | None = None, scope: Scope | None = None
) -> Callable[[Outcome], TypeGuard[Retry]]:
    """A Retry with this ``taken`` and ``after``, and ``scope`` when one is given."""

    def expect(o: Outcome) -> TypeGuard[Retry]:
        return (
            isinstance(o, Retry)
            and o.taken is taken
            and o.after == after
            and (scope is None or o.scope == scope)
        )

    return expect


def permanent(
    words: str, status: int | EllipsisType | None = ...
) -> Callable[[Outcome], TypeGuard[Permanent]]:
    """A Permanent whose reason has ``words``, and ``status`` (None too) when one is given."""

    def expect(o: Outcome) -> TypeGuard[Permanent]:
        return (
            isinstance(o, Permanent) and words in o.reason and (status is ... or o.status == status)
        )

    return expect


def malformed(o: Outcome) -> bool:
    """A Retry, maybe taken, for a 2xx whose body is not what the provider documents."""
    return isinstance(o, Retry) and o.taken is Taken.MAYBE and "malformed answer" in o.reason


# --- the simulator -------------------------------------------------------------------


def _provider(kind: str) -> str:
    """A simulated provider's name: the kind ``foo_bar`` is served at ``/foo-bar``."""
    return kind.replace("_", "-")


@attrs.frozen
class Sim:
    """A simulator serving in the test, its state, and a client for its ``/_sim`` API.

    Each ``provider`` may be a kind (``light_blue``) or a provider (``light-blue``).
    """

    state: SimulatorState
    address: SimulatorAddress
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.address.url

    def prefix(self, provider: str) -> str:
        """The sandbox prefix of a provider: its simulated API's base URL."""
        return f"{self.url}/{_provider(provider)}"

    def context(self, kind: str, keys: Mapping[str, str], **changes: Any) -> AdapterContext:
        """A sandbox context for ``kind``, aimed at its simulated provider."""
        return context(keys, name=kind, base_url_override=self.prefix(kind), **changes)

    def logic(self, provider: str) -> Any:
        return self.state.endpoints[_provider(provider)].logic

    async def faults(self, provider: str, **fields: Any) -> None:
        """Replace the provider's faults (fields left out take their defaults)."""
        body = {"provider": _provider(provider), **fields}
        response = await self.client.post("/_sim/faults", json=body)
        assert response.status_code == 200, response.text

    async def stats(self, provider: str) -> dict[str, Any]:
        name = _provider(provider)
        response = await self.client.get("/_sim/stats", params={"provider": name})
        stats: dict[str, Any] = response.json()[name]
        return stats

    async def requests(self, provider: str) -> list[dict[str, Any]]:
        """The requests the provider received, as ``GET /_sim/requests`` shows them."""
        name = _provider(provider)
        response = await self.client.get("/_sim/requests", params={"provider": name})
        seen: list[dict[str, Any]] = response.json()[name]
        return seen


@pytest.fixture(name="sim")
async def sim_fixture(nursery: trio.Nursery, sim_seed: int) -> AsyncIterator[Sim]:
    """A simulator seeded with the module's ``sim_seed``, serving until the test ends."""
    state = SimulatorState(seed=sim_seed)
    address = await nursery.start(serve_simulator, state, HOST, 0, None)
    async with httpx.AsyncClient(base_url=address.url, timeout=5) as client:
        yield Sim(state, address, client)


@attrs.define
class BatchRig:
    """One batching adapter with one open lane; records what it sent when mocked."""

    lane: BatchingLane
    sent: list[httpx.Request]

    async def deliver(self, *envelopes: Envelope) -> list[Outcome]:
        return await self.lane.deliver_batch(envelopes)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.sent]


async def open_batch_rig(
    nursery: trio.Nursery,
    keys: Mapping[str, str],
    kind: str,
    settings: Any,
    handler: Handler | None = None,
    base_url: str | None = None,
) -> BatchRig:
    """Build ``kind``'s adapter (mocked by ``handler``, or at ``base_url``) and open a lane,
    held open in ``nursery`` for the rest of the test."""
    sent: list[httpx.Request] = []
    if handler is None:
        ctx = context(keys, base_url_override=base_url)
    else:
        ctx, sent = mock_context(keys, handler, base_url_override=base_url)
    adapter = provider_kinds()[kind].build(settings, ctx)
    ready = trio.Event()
    holder: list[BatchingLane] = []

    async def hold_lane() -> None:
        async with adapter.open_lane() as lane:
            assert isinstance(lane, BatchLane)
            holder.append(lane)
            ready.set()
            await trio.sleep_forever()

    nursery.start_soon(hold_lane)
    await ready.wait()
    return BatchRig(holder[0], sent)
