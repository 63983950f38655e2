"""The multi-step and batching provider shapes of the HTTP adapter, on httpx.MockTransport."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import httpx
import pytest

from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Priority, Retry, Taken
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import Secret, SecretRef
from ringbearer.integrations import AdapterContext, BatchLimits, HttpCall
from ringbearer.integrations._base import BatchCall, BatchLane, batch_kind, steps_kind

SSL = ssl.create_default_context()


@attrs.frozen
class Settings:
    token: SecretRef = SecretRef(env="TOKEN")


def envelope(n: int, progress: Mapping[str, Any] | None = None) -> Envelope:
    return Envelope(
        id=n,
        target="t",
        integration="t",
        priority=Priority.NORMAL,
        payload={"n": n},
        idempotency_key=f"key-{n}",
        attempts=0,
        created_at=0.0,
        progress=dict(progress or {}),
    )


@attrs.frozen
class Publisher:
    """Create a container, then publish it: two steps, the first one's id kept."""

    token: Secret

    def validate(self, payload: Mapping[str, Any]) -> None:
        pass

    def next_call(self, envelope: Envelope, progress: Mapping[str, Any]) -> HttpCall:
        auth = {"Authorization": f"Bearer {self.token.reveal()}"}
        if "container" not in progress:
            return HttpCall("POST", "https://api.test/media", headers=auth, json=envelope.payload)
        body = {"creation_id": progress["container"]}
        return HttpCall("POST", "https://api.test/publish", headers=auth, json=body)

    def after_call(
        self, envelope: Envelope, progress: Mapping[str, Any], response: httpx.Response
    ) -> Outcome | Mapping[str, Any]:
        if response.status_code >= 500:
            return Retry(f"HTTP {response.status_code}: {response.text}", taken=Taken.MAYBE)
        if "container" not in progress:
            return {"container": response.json()["id"]}
        return Delivered(provider_id=response.json()["id"])


@attrs.frozen
class Importer:
    """Many events a request; the provider names the ones it refused by index."""

    limits: BatchLimits = BatchLimits(3, 0.1)

    def validate(self, payload: Mapping[str, Any]) -> None:
        pass

    def build_batch(self, envelopes: Sequence[Envelope]) -> BatchCall:
        bad = {e.id: Permanent("invalid payload: n is negative") for e in envelopes if e.id < 0}
        sent = tuple(e for e in envelopes if e.id >= 0)
        call = HttpCall("POST", "https://api.test/import", json=[e.payload for e in sent])
        return BatchCall(call if sent else None, sent, bad)

    def classify_batch(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        refused = set(response.json().get("refused", []))
        return [
            Permanent("refused", status=400) if i in refused else Delivered()
            for i in range(len(sent))
        ]


def publisher(settings: Settings, ctx: AdapterContext) -> Publisher:
    return Publisher(ctx.secrets(settings.token))


def context(handler: Any, checkpoints: list[tuple[int, dict[str, Any]]]) -> AdapterContext:
    async def checkpoint(message_id: int, progress: Mapping[str, Any]) -> None:
        checkpoints.append((message_id, dict(progress)))

    return AdapterContext(
        name="t",
        timeout=5.0,
        ssl_context=SSL,
        secrets=lambda ref: Secret("s3cret-token"),
        transport=httpx.MockTransport(handler),
        checkpoint=checkpoint,
    )


async def test_steps_save_progress_and_a_retry_resumes_after_the_last_done() -> None:
    """A failed second step keeps the first one's id; the retry publishes, creating nothing."""
    paths: list[str] = []
    failures = iter([True, False])

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/media":
            return httpx.Response(200, json={"id": "container-1"})
        if next(failures):
            return httpx.Response(503, text="busy; token s3cret-token")
        return httpx.Response(200, json={"id": "media-9"})

    checkpoints: list[tuple[int, dict[str, Any]]] = []
    row = steps_kind(
        "publisher", "social", Settings, lambda s, ctx: Publisher(ctx.secrets(s.token))
    )
    adapter = row.build(Settings(), context(handler, checkpoints))
    async with adapter.open_lane() as lane:
        first = await lane.deliver(envelope(7))
        assert isinstance(first, Retry) and "s3cret" not in first.reason
        assert checkpoints == [(7, {"container": "container-1"})]
        second = await lane.deliver(envelope(7, progress=checkpoints[-1][1]))
    assert second == Delivered(provider_id="media-9")
    assert paths == ["/media", "/publish", "/publish"]


async def test_a_step_that_fails_before_any_progress_saves_nothing() -> None:
    """Nothing is checkpointed until a step has succeeded."""
    checkpoints: list[tuple[int, dict[str, Any]]] = []
    row = steps_kind(
        "publisher", "social", Settings, lambda s, ctx: Publisher(ctx.secrets(s.token))
    )
    adapter = row.build(Settings(), context(lambda r: httpx.Response(500), checkpoints))
    async with adapter.open_lane() as lane:
        outcome = await lane.deliver(envelope(1))
    assert isinstance(outcome, Retry) and checkpoints == []


async def test_a_batch_answers_every_message_in_order() -> None:
    """Messages settled before sending, refused and delivered ones each get their own outcome."""
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(400, json={"refused": [1]})

    row = batch_kind("importer", "analytics", Settings, lambda s, ctx: Importer())
    adapter = row.build(Settings(), context(handler, []))
    assert adapter.batching == BatchLimits(3, 0.1)
    async with adapter.open_lane() as lane:
        assert isinstance(lane, BatchLane)
        outcomes = await lane.deliver_batch([envelope(-1), envelope(10), envelope(11)])
    assert outcomes == [
        Permanent("invalid payload: n is negative"),
        Delivered(),
        Permanent("refused", status=400),
    ]
    assert bodies == [b'[{"n":10},{"n":11}]']


async def test_a_failed_batch_request_retries_every_message_it_carried() -> None:
    """A transport failure is one Retry for each message of the request."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    row = batch_kind("importer", "analytics", Settings, lambda s, ctx: Importer())
    adapter = row.build(Settings(), context(handler, []))
    async with adapter.open_lane() as lane:
        assert isinstance(lane, BatchLane)
        outcomes = await lane.deliver_batch([envelope(1), envelope(2)])
    assert all(isinstance(o, Retry) and o.taken is Taken.NO for o in outcomes)
    assert len(outcomes) == 2


async def test_a_batch_with_nothing_left_to_send_makes_no_request() -> None:
    """When every message was settled before sending, no request goes out."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    row = batch_kind("importer", "analytics", Settings, lambda s, ctx: Importer())
    adapter = row.build(Settings(), context(handler, []))
    async with adapter.open_lane() as lane:
        assert isinstance(lane, BatchLane)
        outcomes = await lane.deliver_batch([envelope(-1), envelope(-2)])
    assert [type(o) for o in outcomes] == [Permanent, Permanent]


async def test_a_payload_error_while_building_a_step_is_permanent() -> None:
    """InvalidPayload raised while describing a step ends the message as permanent, unsent."""

    @attrs.frozen
    class Picky(Publisher):
        def next_call(self, envelope: Envelope, progress: Mapping[str, Any]) -> HttpCall:
            raise InvalidPayload("'image_url' must be https")

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    row = steps_kind("picky", "social", Settings, lambda s, ctx: Picky(ctx.secrets(s.token)))
    adapter = row.build(Settings(), context(handler, []))
    async with adapter.open_lane() as lane:
        outcome = await lane.deliver(envelope(1))
    assert outcome == Permanent("invalid payload: 'image_url' must be https")


@pytest.mark.parametrize("answers", [0, 2])
async def test_a_batch_provider_that_miscounts_is_a_programming_error(answers: int) -> None:
    """An outcome count that does not match the request's messages raises, never guesses."""

    @attrs.frozen
    class Miscounting(Importer):
        def classify_batch(
            self, sent: Sequence[Envelope], response: httpx.Response
        ) -> list[Outcome]:
            return [Delivered()] * answers

    row = batch_kind("importer", "analytics", Settings, lambda s, ctx: Miscounting())
    adapter = row.build(Settings(), context(lambda r: httpx.Response(200, json={}), []))
    async with adapter.open_lane() as lane:
        assert isinstance(lane, BatchLane)
        with pytest.raises(RuntimeError, match="outcomes"):
            await lane.deliver_batch([envelope(1)])
