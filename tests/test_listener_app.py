"""The public listener, served by real hypercorn on loopback and driven by httpx.

Deliveries are signed by the providers' official libraries (svix, twilio) or
by Mailgun's documented construction. The store is a fake Ingest that can be
held shut, which is how the ordering is proven: no answer leaves before the
commit returns.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import httpx
import pytest
import svix.webhooks
import trio
import trio.testing
from twilio.request_validator import RequestValidator

from ringbearer._converter import HostPort, PositiveFloat
from ringbearer._logging import LineFormatter
from ringbearer._secrets import Secret
from ringbearer.deliverability import Channel, EventType, ProviderEvent
from ringbearer.deliverability._settings import WebhookSettings
from ringbearer.deliverability._unsubscribe import UnsubscribeTokens
from ringbearer.listener import (
    ListenerParts,
    PagerDutyHook,
    WebhookSource,
    build_app,
    serve,
)
from ringbearer.listener._limits import ClientLimiter, Proxies
from ringbearer.listener._providers import Malformed, mailgun_events, resend_events, twilio_events
from ringbearer.listener._serve import hypercorn_config
from ringbearer.resilience import RateLimitSettings
from ringbearer.store import Event, EventKind

HOST = "127.0.0.1"
WALL = 1_800_000_000.0
RESEND_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcd"
PD_SECRET = "pagerduty-subscription-secret"
SOURCES = (
    WebhookSource("resend", "resend", Secret(RESEND_SECRET)),
    WebhookSource("mailgun", "mailgun", Secret(MAILGUN_KEY)),
    WebhookSource("twilio", "twilio", Secret(TWILIO_TOKEN)),
)
TOKENS = UnsubscribeTokens(Secret("unsubscribe-secret"))
ADDRESS = "Ann.Bride@Example.com"


# --- fakes -----------------------------------------------------------------------------


@attrs.define
class FakeIngest:
    """Commits events in memory, once per (source, event id); can be held or made to fail."""

    committed: list[ProviderEvent] = attrs.Factory(list)
    calls: int = 0
    seen: set[tuple[str, str]] = attrs.Factory(set)
    gate: trio.Event | None = None
    entered: trio.Event = attrs.Factory(trio.Event)
    failing: bool = False
    order: list[str] = attrs.Factory(list)

    async def ingest(self, events: Sequence[ProviderEvent]) -> list[bool]:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise RuntimeError("the store is down")
        fresh = []
        for event in events:
            key = (event.source, event.event_id)
            fresh.append(key not in self.seen)
            if key not in self.seen:
                self.committed.append(event)
            self.seen.add(key)
        self.order.append("committed")
        return fresh


@attrs.define
class FakeUnsubscriber:
    done: list[tuple[str, str, str]] = attrs.Factory(list)

    async def unsubscribe(self, address: str, category: str, *, by: str) -> None:
        self.done.append((address, category, by))


@attrs.define
class FakeAudit:
    events: list[Event] = attrs.Factory(list)

    def append_event(self, event: Event) -> None:
        self.events.append(event)

    def refusals(self) -> list[dict[str, Any]]:
        return [dict(e.detail or {}) for e in self.events if e.kind == EventKind.WEBHOOK_REFUSED]


@attrs.define
class Clocks:
    wall: float = WALL
    monotonic: float = 0.0


@attrs.define
class Harness:
    client: httpx.AsyncClient
    port: int
    ingest: FakeIngest
    unsubscriber: FakeUnsubscriber
    audit: FakeAudit
    clocks: Clocks
    acks: list[tuple[str, str]]

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


Opener = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def open_listener(nursery: trio.Nursery) -> AsyncIterator[Opener]:
    """Start a listener (WebhookSettings changed as asked) and an httpx client for it."""
    clients: list[httpx.AsyncClient] = []

    async def opener(**changes: Any) -> Harness:
        settings = attrs.evolve(WebhookSettings(listen=HostPort(f"{HOST}:0")), **changes)
        clocks, acks = Clocks(), []

        async def acknowledge(key: str, by: str) -> bool:
            acks.append((key, by))
            return True

        ingest, unsubscriber, audit = FakeIngest(), FakeUnsubscriber(), FakeAudit()
        parts = ListenerParts(
            ingest=ingest,
            unsubscriber=unsubscriber,
            audit=audit,
            tokens=TOKENS,
            wall=lambda: clocks.wall,
            pagerduty=PagerDutyHook(Secret(PD_SECRET), acknowledge),
            monotonic=lambda: clocks.monotonic,
        )
        port: int = await nursery.start(serve, build_app(settings, SOURCES, parts), settings)
        client = httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=10)
        clients.append(client)
        return Harness(client, port, ingest, unsubscriber, audit, clocks, acks)

    yield opener
    for client in clients:
        await client.aclose()


@pytest.fixture
async def listener(open_listener: Opener) -> Harness:
    return await open_listener()


# --- signed deliveries -----------------------------------------------------------------


def resend_body(kind: str = "email.bounced", **data: Any) -> bytes:
    payload = {"email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "to": [ADDRESS], **data}
    if kind == "email.bounced":
        payload.setdefault("bounce", {"type": "Permanent", "subType": "General"})
    document = {"type": kind, "created_at": "2026-02-22T23:41:12.126Z", "data": payload}
    return json.dumps(document).encode()


def svix_headers(
    body: bytes, *, msg_id: str = "msg_2bQ", at: float = WALL, secret: str = RESEND_SECRET
) -> dict[str, str]:
    when = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(at)),
        "svix-signature": svix.webhooks.Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


def mailgun_body(
    *, token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0", key: str = MAILGUN_KEY
) -> bytes:
    stamp = "1529006854"
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    document = {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": {
            "event": "failed",
            "severity": "permanent",
            "reason": "bounce",
            "recipient": ADDRESS,
            "timestamp": 1534110422.389832,
            "message": {"headers": {"message-id": "20180812214658.1.0DF563D0B3597700@example.org"}},
            "delivery-status": {"code": 550, "message": f"5.1.1 {ADDRESS} does not exist"},
            "user-variables": {"ringbearer-key": "key-7"},
        },
    }
    return json.dumps(document).encode()


TWILIO_FORM = {
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "MessageStatus": "undelivered",
    "ErrorCode": "30003",
    "To": "+15005550001",
    "From": "+15005550006",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
}


def twilio_headers(url: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> dict[str, str]:
    return {"x-twilio-signature": RequestValidator(token).compute_signature(url, form)}


def pagerduty_body(kind: str = "incident.acknowledged", key: str = "breaker_open:resend") -> bytes:
    event = {
        "event_type": kind,
        "agent": {"summary": "Tenex Engineer"},
        "data": {"incident_key": key},
    }
    return json.dumps({"event": event}).encode()


def pagerduty_signature(body: bytes, secret: str = PD_SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- verified deliveries ---------------------------------------------------------------


async def test_a_delivery_is_answered_only_after_its_commit_returns(listener: Harness) -> None:
    """The store holds the commit; no answer arrives until it returns, then 200."""
    listener.ingest.gate = trio.Event()
    answers: list[httpx.Response] = []
    body = resend_body()

    async def deliver() -> None:
        answers.append(
            await listener.client.post("/webhooks/resend", content=body, headers=svix_headers(body))
        )
        listener.ingest.order.append("answered")

    with trio.fail_after(10):  # a guard against a hang, not a wait for something to happen
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deliver)
            await listener.ingest.entered.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert answers == []  # the commit is pending: nothing was answered
            listener.ingest.gate.set()
    assert answers[0].status_code == 200
    assert listener.ingest.order == ["committed", "answered"]


async def test_a_verified_resend_delivery_becomes_an_event(listener: Harness) -> None:
    """Its svix-id is the event's id, data.email_id the message's, to[0] the address."""
    body = resend_body()
    response = await listener.client.post(
        "/webhooks/resend", content=body, headers=svix_headers(body, msg_id="msg_r")
    )
    assert response.status_code == 200
    assert listener.ingest.committed == [
        ProviderEvent(
            source="resend",
            event_id="msg_r",
            type=EventType.HARD_BOUNCE,
            at=datetime.datetime(2026, 2, 22, 23, 41, 12, 126000, datetime.UTC).timestamp(),
            provider_id="4ef9a417-02e9-4d39-ad75-9611e0fcc33c",
            address="ann.bride@example.com",
            detail={"bounce_type": "Permanent", "bounce_subtype": "General"},
        )
    ]
    assert listener.audit.events == []


async def test_a_verified_mailgun_delivery_becomes_an_event(listener: Harness) -> None:
    """Its token is the event's id; the message-id is matched as the send API gave it."""
    response = await listener.client.post("/webhooks/mailgun", content=mailgun_body())
    assert response.status_code == 200
    assert listener.ingest.committed == [
        ProviderEvent(
            source="mailgun",
            event_id="a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
            type=EventType.HARD_BOUNCE,
            at=1534110422.389832,
            provider_id="<20180812214658.1.0DF563D0B3597700@example.org>",
            key="key-7",
            address="ann.bride@example.com",
            detail={"severity": "permanent", "reason": "bounce", "code": 550},
        )
    ]


async def test_a_verified_twilio_callback_becomes_an_event(listener: Harness) -> None:
    """Signed over http://<Host><path> when no public URL is set; timed by our wall clock."""
    url = f"{listener.base}/webhooks/twilio"
    response = await listener.client.post(
        "/webhooks/twilio", data=TWILIO_FORM, headers=twilio_headers(url, TWILIO_FORM)
    )
    assert response.status_code == 200
    assert listener.ingest.committed == [
        ProviderEvent(
            source="twilio",
            event_id="SM0123456789abcdef0123456789abcdef:undelivered",
            type=EventType.UNDELIVERED,
            at=WALL,
            channel=Channel.SMS,
            provider_id="SM0123456789abcdef0123456789abcdef",
            address="+15005550001",
            detail={"error_code": "30003"},
        )
    ]


async def test_twilio_is_checked_against_the_public_url(open_listener: Opener) -> None:
    """Behind the proxy Twilio signs the public URL (query included), not our own address."""
    listener = await open_listener(public_url="https://hooks.example.com")
    path = "/webhooks/twilio?account=main"
    signed_public = twilio_headers(f"https://hooks.example.com{path}", TWILIO_FORM)
    ok = await listener.client.post(path, data=TWILIO_FORM, headers=signed_public)
    signed_local = twilio_headers(f"{listener.base}{path}", TWILIO_FORM)
    refused = await listener.client.post(path, data=TWILIO_FORM, headers=signed_local)
    assert (ok.status_code, refused.status_code) == (200, 401)
    assert len(listener.ingest.committed) == 1


@pytest.mark.parametrize(
    "kind", ["email.sent", "email.delivery_delayed", "contact.created", "domain.updated"]
)
async def test_events_we_do_not_act_on_are_still_answered_2xx(listener: Harness, kind: str) -> None:
    """No event to commit, so the store is not asked; the provider must not retry it."""
    body = json.dumps({"type": kind, "created_at": "2026-02-22T23:41:12Z", "data": {}}).encode()
    response = await listener.client.post(
        "/webhooks/resend", content=body, headers=svix_headers(body)
    )
    assert response.status_code == 200
    assert listener.ingest.calls == 0


async def test_a_verified_but_malformed_body_is_400_and_changes_nothing(listener: Harness) -> None:
    """Signed, but not the documented shape: 400 with the reason; the store is not asked."""
    for body in (resend_body(email_id=None), b"[1, 2]", b"not json"):
        response = await listener.client.post(
            "/webhooks/resend", content=body, headers=svix_headers(body)
        )
        assert response.status_code == 400, body
        assert response.text.startswith("expected") or "JSON" in response.text
    form = {"MessageSid": "SM1", "AccountSid": "AC1"}  # no MessageStatus
    url = f"{listener.base}/webhooks/twilio"
    response = await listener.client.post(
        "/webhooks/twilio", data=form, headers=twilio_headers(url, form)
    )
    assert response.status_code == 400
    assert listener.ingest.calls == 0
    assert listener.audit.events == []


async def test_a_redelivery_is_200_and_changes_nothing(listener: Harness) -> None:
    """Svix and Twilio resend an event under the same id: answered 200, kept once."""
    body = resend_body("email.complained")
    headers = svix_headers(body, msg_id="msg_again")
    url = f"{listener.base}/webhooks/twilio"
    for _ in range(2):
        response = await listener.client.post("/webhooks/resend", content=body, headers=headers)
        assert response.status_code == 200
        response = await listener.client.post(
            "/webhooks/twilio", data=TWILIO_FORM, headers=twilio_headers(url, TWILIO_FORM)
        )
        assert response.status_code == 200
    assert [e.type for e in listener.ingest.committed] == [
        EventType.COMPLAINED,
        EventType.UNDELIVERED,
    ]
    assert listener.audit.events == []


async def test_a_failed_commit_is_503_so_the_provider_retries(listener: Harness) -> None:
    """The store raised: not 2xx, or the provider would never send the event again."""
    listener.ingest.failing = True
    body = resend_body()
    response = await listener.client.post(
        "/webhooks/resend", content=body, headers=svix_headers(body)
    )
    assert response.status_code == 503
    assert listener.ingest.committed == []


# --- refusals --------------------------------------------------------------------------


async def test_forged_stale_and_replayed_deliveries_get_401(
    listener: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Each is 401 with an audit event and a log line; none reaches the store as new."""
    body = resend_body()
    url = f"{listener.base}/webhooks/twilio"
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("resend", {"content": body, "headers": svix_headers(body, secret="whsec_" + "A" * 32)}),
        ("resend", {"content": body, "headers": svix_headers(body, at=WALL - 301)}),
        ("resend", {"content": body + b" ", "headers": svix_headers(body)}),
        ("mailgun", {"content": mailgun_body(key="someone else's key")}),
        ("twilio", {"data": TWILIO_FORM, "headers": twilio_headers(url, TWILIO_FORM, "x" * 32)}),
        ("twilio", {"data": TWILIO_FORM}),
    ]
    with caplog.at_level(logging.WARNING, logger="ringbearer.webhooks"):
        for name, request in attempts:
            response = await listener.client.post(f"/webhooks/{name}", **request)
            assert response.status_code == 401, (name, response.text)
    assert listener.ingest.calls == 0
    assert listener.audit.refusals() == [
        {"source": "resend", "why": "forged"},
        {"source": "resend", "why": "stale"},
        {"source": "resend", "why": "forged"},
        {"source": "mailgun", "why": "forged"},
        {"source": "twilio", "why": "forged"},
        {"source": "twilio", "why": "malformed"},
    ]
    assert all(e.at == WALL and e.integration for e in listener.audit.events)
    lines = [r for r in caplog.records if r.name == "ringbearer.webhooks"]
    assert [getattr(r, "fields", {}).get("why") for r in lines] == [
        "forged",
        "stale",
        "forged",
        "forged",
        "forged",
        "malformed",
    ]
    written = "\n".join(LineFormatter(journal=False).format(r) for r in lines)
    assert "detail=" in written
    assert "ann" not in written.lower() and "+1500" not in written


async def test_a_replayed_mailgun_token_is_401(listener: Harness) -> None:
    """Mailgun signs each delivery with a fresh token: one seen before is a replay."""
    body = mailgun_body()
    first = await listener.client.post("/webhooks/mailgun", content=body)
    again = await listener.client.post("/webhooks/mailgun", content=body)
    assert (first.status_code, again.status_code) == (200, 401)
    assert len(listener.ingest.committed) == 1
    assert listener.audit.refusals() == [{"source": "mailgun", "why": "replayed"}]


# --- limits ----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(open_listener: Opener) -> None:
    """Declared too long, or streamed past the limit without a length: 413, nothing read on."""
    listener = await open_listener(max_body_bytes=1024)
    body = resend_body(padding="x" * 2000)
    declared = await listener.client.post(
        "/webhooks/resend", content=body, headers=svix_headers(body)
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    streamed = await listener.client.post("/webhooks/mailgun", content=chunks())
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert listener.ingest.calls == 0
    small = resend_body()
    ok = await listener.client.post("/webhooks/resend", content=small, headers=svix_headers(small))
    assert ok.status_code == 200


async def test_a_client_past_its_rate_gets_429(open_listener: Opener) -> None:
    """A burst, then 429 with Retry-After until the bucket refills; clients are apart."""
    listener = await open_listener(
        per_client_per_second=0.5, per_client_burst=3, trusted_proxies=("127.0.0.1",)
    )
    statuses = [(await listener.client.get("/nowhere")).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    limited = await listener.client.get("/nowhere")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    other = await listener.client.get("/nowhere", headers={"x-forwarded-for": "203.0.113.9"})
    assert other.status_code == 404  # another client behind the trusted proxy
    listener.clocks.monotonic += 2.0
    assert (await listener.client.get("/nowhere")).status_code == 404


async def test_unknown_paths_are_404_and_wrong_methods_405(listener: Harness) -> None:
    """Only the routes there are; the Allow header names what a path takes."""
    cases = [
        ("GET", "/", 404),
        ("POST", "/webhooks/nobody", 404),
        ("POST", "/webhooks/", 404),
        ("POST", "/webhooks/resend/extra", 404),
        ("GET", "/pagerduty/other", 404),
        ("GET", "/webhooks/resend", 405),
        ("PUT", "/unsubscribe/" + TOKENS.make(ADDRESS, "marketing"), 405),
        ("GET", "/pagerduty/webhook", 405),
    ]
    for method, path, status in cases:
        response = await listener.client.request(method, path)
        assert response.status_code == status, (method, path)
    allowed = await listener.client.get("/webhooks/resend")
    assert allowed.headers["allow"] == "POST"
    unsubscribe = await listener.client.delete("/unsubscribe/" + TOKENS.make(ADDRESS, "m"))
    assert unsubscribe.headers["allow"] == "GET, POST"


async def test_connections_past_the_bound_wait_for_a_free_one(open_listener: Opener) -> None:
    """Two connections held open fill a bound of two; a third is served once one closes."""
    listener = await open_listener(max_connections=2)
    held = [await trio.open_tcp_stream(HOST, listener.port) for _ in range(2)]
    answers: list[int] = []

    async def ask() -> None:
        answers.append((await listener.client.get("/nowhere")).status_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert answers == []  # accepted by the kernel, not by us: no slot is free
        await held.pop().aclose()
    assert answers == [404]
    for stream in held:
        await stream.aclose()


# --- one-click unsubscribe -------------------------------------------------------------


async def test_get_shows_a_form_and_does_not_unsubscribe(
    listener: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A link scanner's GET: a page with a button that POSTs back here, no script, no change."""
    token = TOKENS.make(ADDRESS, "marketing")
    path = "/unsubscribe/" + token
    with caplog.at_level(logging.DEBUG):
        page = await listener.client.get(path)
        await listener.client.post(path)
    served = [r for r in caplog.records if r.name.startswith(("ringbearer", "hypercorn"))]
    written = "\n".join(LineFormatter(journal=False).format(r) for r in served)
    assert token not in written  # no access log on our side: the token names the address
    listener.unsubscriber.done.clear()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "<script" not in page.text.lower()
    assert "marketing" in page.text and ADDRESS.lower() not in page.text
    assert listener.unsubscriber.done == []


@pytest.mark.parametrize(
    "body",
    [
        {
            "content": b"List-Unsubscribe=One-Click",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        {"files": {"List-Unsubscribe": (None, "One-Click")}},
        {},
    ],
    ids=["urlencoded", "multipart", "empty"],
)
async def test_post_unsubscribes_at_once(listener: Harness, body: dict[str, Any]) -> None:
    """RFC 8058's one-click POST, in either encoding or none: suppressed, 200, no redirect."""
    path = "/unsubscribe/" + TOKENS.make(ADDRESS, "marketing")
    response = await listener.client.post(path, **body)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert listener.unsubscriber.done == [
        ("ann.bride@example.com", "marketing", "one-click unsubscribe")
    ]


async def test_a_bad_token_is_400_and_audited(listener: Harness) -> None:
    """A token we did not sign changes nothing, for GET and POST alike."""
    other = UnsubscribeTokens(Secret("not ours")).make(ADDRESS, "marketing")
    for path in (f"/unsubscribe/{other}", "/unsubscribe/v1.garbage.x"):
        assert (await listener.client.get(path)).status_code == 400
        assert (await listener.client.post(path)).status_code == 400
    assert listener.unsubscriber.done == []
    assert listener.audit.refusals() == [{"source": "unsubscribe", "why": "bad_token"}] * 4


# --- PagerDuty -------------------------------------------------------------------------


async def test_pagerduty_acknowledges_on_the_listener(listener: Harness) -> None:
    """A signed acknowledgement acks the alert; a forged one is 401 and audited."""
    body = pagerduty_body()
    forged = await listener.client.post(
        "/pagerduty/webhook",
        content=body,
        headers={"x-pagerduty-signature": pagerduty_signature(body, "wrong")},
    )
    assert forged.status_code == 401
    assert listener.acks == []
    rotated = f"{pagerduty_signature(body, 'old')}, {pagerduty_signature(body)}"
    ok = await listener.client.post(
        "/pagerduty/webhook", content=body, headers={"x-pagerduty-signature": rotated}
    )
    assert ok.status_code == 200
    assert listener.acks == [("breaker_open:resend", "pagerduty (Tenex Engineer)")]
    assert listener.audit.refusals() == [{"source": "pagerduty", "why": "forged"}]


# --- the app alone, on trio's virtual clock --------------------------------------------


def bare_app(**changes: Any) -> tuple[Any, FakeAudit]:
    """The app without a server, for what needs exact control of the ASGI messages."""
    settings = attrs.evolve(WebhookSettings(), **changes)

    async def acknowledge(key: str, by: str) -> bool:
        raise RuntimeError(f"no alert for {ADDRESS}")

    audit = FakeAudit()
    parts = ListenerParts(
        ingest=FakeIngest(),
        unsubscriber=FakeUnsubscriber(),
        audit=audit,
        tokens=TOKENS,
        wall=lambda: WALL,
        pagerduty=PagerDutyHook(Secret(PD_SECRET), acknowledge),
    )
    return build_app(settings, SOURCES, parts), audit


def http_scope(path: str, *headers: tuple[bytes, bytes], method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(headers),
        "client": (HOST, 50000),
    }


async def run_app(app: Any, scope: dict[str, Any], receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_reading_stops_at_the_limit() -> None:
    """A body streamed without end is read only until it passes the limit, then 413."""
    app, _ = bare_app(max_body_bytes=1024)
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 600, "more_body": True}

    sent = await run_app(app, http_scope("/webhooks/mailgun"), receive)
    assert sent[0]["status"] == 413
    assert pulled == 2  # 600, then 1,200 bytes: past 1,024, and no further


async def test_a_body_that_does_not_arrive_is_408(autojump_clock: trio.testing.MockClock) -> None:
    """A client that stops sending mid-body is answered 408 after idle_seconds."""
    app, _ = bare_app(idle_seconds=7.0)

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    start = trio.current_time()
    sent = await run_app(app, http_scope("/webhooks/resend"), receive)
    assert sent[0]["status"] == 408
    assert trio.current_time() - start == pytest.approx(7.0)


async def test_a_handler_that_raises_is_500_and_names_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One request's failure is its own 500; the log line says where, not the message."""
    app, _ = bare_app()
    body = pagerduty_body()
    signature = (b"x-pagerduty-signature", pagerduty_signature(body).encode())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    with caplog.at_level(logging.ERROR, logger="ringbearer.webhooks"):
        sent = await run_app(app, http_scope("/pagerduty/webhook", signature), receive)
    assert sent[0]["status"] == 500
    (line,) = [r for r in caplog.records if r.name == "ringbearer.webhooks"]
    detail = getattr(line, "fields", {})
    assert detail["error"] == "RuntimeError" and detail["at"].startswith("test_listener_app.py:")
    assert ADDRESS not in caplog.text + repr(detail)


async def test_a_client_that_leaves_mid_body_gets_no_answer() -> None:
    """A disconnect before the body is whole: nothing to answer, nothing recorded."""
    app, audit = bare_app()

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert await run_app(app, http_scope("/webhooks/resend"), receive) == []
    assert audit.events == []


async def test_lifespan_is_answered() -> None:
    """A server that runs the lifespan protocol is told start-up and shut-down are done."""
    app, _ = bare_app()
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    sent = await run_app(app, {"type": "lifespan"}, receive)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_signed_pagerduty_deliveries_that_ack_nothing_are_still_2xx(
    listener: Harness,
) -> None:
    """Other event types and unknown incidents are taken (PagerDuty retries failures)."""
    for body in (
        pagerduty_body("incident.triggered"),
        json.dumps({"event": {"event_type": "pagey.ping", "data": None}}).encode(),
    ):
        headers = {"x-pagerduty-signature": pagerduty_signature(body)}
        response = await listener.client.post("/pagerduty/webhook", content=body, headers=headers)
        assert response.status_code == 200
    assert listener.acks == []
    bad = b'{"event": [1, 2]}'
    headers = {"x-pagerduty-signature": pagerduty_signature(bad)}
    response = await listener.client.post("/pagerduty/webhook", content=bad, headers=headers)
    assert response.status_code == 400


# --- the limiter's table and the proxies -----------------------------------------------


def test_the_limiter_forgets_the_oldest_client_past_its_capacity() -> None:
    """Memory stays bounded; a forgotten client starts again with a full bucket."""
    now = [0.0]
    limiter = ClientLimiter(RateLimitSettings(per_second=1.0, burst=1), lambda: now[0], capacity=3)
    for client in ("a", "b", "c"):
        assert limiter.admit(client) is None
        limiter.refused(client)
    assert limiter.admit("a") == 1.0  # "a" is now the most recently seen
    limiter.refused("d")  # evicts "b", the one seen longest ago
    assert len(limiter) == 3
    assert limiter.admit("c") == 1.0 and limiter.admit("a") == 1.0
    assert limiter.admit("b") is None  # forgotten: a fresh bucket


def test_only_refused_requests_take_tokens() -> None:
    """A client whose requests verify is never throttled; its refusals alone count."""
    now = [0.0]
    limiter = ClientLimiter(RateLimitSettings(per_second=1.0, burst=2), lambda: now[0])
    assert all(limiter.admit("provider") is None for _ in range(10_000))
    limiter.refused("prober")
    assert limiter.admit("prober") is None
    limiter.refused("prober")
    assert limiter.admit("prober") == 1.0
    now[0] += 1.0
    assert limiter.admit("prober") is None


async def test_verified_deliveries_past_the_rate_are_not_throttled(open_listener: Opener) -> None:
    """A provider's burst of real events goes through a limit its refusals would hit."""
    listener = await open_listener(per_client_per_second=0.5, per_client_burst=3)
    for n in range(10):
        body = resend_body(email_id=f"em_{n}")
        answer = await listener.client.post(
            "/webhooks/resend", content=body, headers=svix_headers(body, msg_id=f"msg_{n}")
        )
        assert answer.status_code == 200
    assert [(await listener.client.get("/nowhere")).status_code for _ in range(4)] == [
        404,
        404,
        404,
        429,
    ]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # not our proxy: its header is ignored
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "1.1.1.1, 203.0.113.9", "203.0.113.9"),  # the left is the client's to forge
        ("10.0.0.2", "203.0.113.9, 10.0.0.3", "203.0.113.9"),  # two proxies deep
        ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4"),
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_the_client_behind_a_trusted_proxy(peer: str, forwarded: str | None, client: str) -> None:
    """X-Forwarded-For counts only from the operator's proxies, read from the right."""
    proxies = Proxies.of(["10.0.0.0/8", "::1"])
    assert proxies.client(peer, forwarded) == client


def test_a_proxy_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ValueError):
        Proxies.of(["proxy.internal"])


def test_hypercorn_keeps_no_access_log() -> None:
    """Paths carry unsubscribe tokens, which name addresses: hypercorn logs no requests."""
    config = hypercorn_config(WebhookSettings(idle_seconds=PositiveFloat(12.5)))
    assert config.log.access_logger is None
    assert config.log.error_logger is logging.getLogger("ringbearer.webhooks.server")
    assert (config.keep_alive_timeout, config.read_timeout) == (12.5, None)


# --- reading each provider's events ----------------------------------------------------


def resend_document(kind: str, **data: Any) -> dict[str, Any]:
    return json.loads(resend_body(kind, **data))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("email.delivered", {}, EventType.DELIVERED),
        ("email.bounced", {}, EventType.HARD_BOUNCE),
        ("email.bounced", {"bounce": None}, EventType.HARD_BOUNCE),
        ("email.bounced", {"bounce": {"type": "Temporary"}}, EventType.SOFT_BOUNCE),
        ("email.bounced", {"bounce": {"type": "Transient"}}, EventType.SOFT_BOUNCE),
        ("email.complained", {}, EventType.COMPLAINED),
        ("email.opened", {}, EventType.OPENED),
        ("email.clicked", {"click": {"link": "https://x.test/?u=ann"}}, EventType.CLICKED),
        ("email.sent", {}, None),
        ("email.delivery_delayed", {}, None),
        ("email.failed", {}, None),
        ("contact.updated", {}, None),
    ],
)
def test_resend_event_types(kind: str, data: dict[str, Any], expected: EventType | None) -> None:
    """Each Resend type we act on, and the bounce types; links and the like stay out."""
    events = resend_events("resend", "msg_1", resend_document(kind, **data))
    assert [e.type for e in events] == ([expected] if expected else [])
    assert all("link" not in repr(e.detail) for e in events)


@pytest.mark.parametrize(
    ("event", "severity", "expected"),
    [
        ("delivered", None, EventType.DELIVERED),
        ("failed", "permanent", EventType.HARD_BOUNCE),
        ("failed", "temporary", EventType.DEFERRED),
        ("complained", None, EventType.COMPLAINED),
        ("unsubscribed", None, EventType.UNSUBSCRIBED),
        ("opened", None, EventType.OPENED),
        ("clicked", None, EventType.CLICKED),
        ("accepted", None, None),
        ("rejected", None, None),
    ],
)
def test_mailgun_event_types(event: str, severity: str | None, expected: EventType | None) -> None:
    """Each Mailgun event we act on; failed splits on its severity."""
    document = json.loads(mailgun_body())
    document["event-data"].update(event=event, severity=severity)
    events = mailgun_events("mailgun", document)
    assert [e.type for e in events] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", EventType.DELIVERED),
        ("undelivered", EventType.UNDELIVERED),
        ("failed", EventType.FAILED),
        ("sent", None),
        ("queued", None),
        ("read", None),
    ],
)
def test_twilio_statuses(status: str, expected: EventType | None) -> None:
    """Delivered, undelivered and failed are events on an SMS; the rest are not."""
    form = dict(TWILIO_FORM, MessageStatus=status)
    events = twilio_events("twilio", form, now=WALL)
    assert [e.type for e in events] == ([expected] if expected else [])
    assert all(e.channel is Channel.SMS and e.event_id.endswith(f":{status}") for e in events)


@pytest.mark.parametrize(
    "document",
    [
        {"type": "email.delivered", "created_at": "yesterday", "data": {"email_id": "e"}},
        {"type": "email.delivered", "created_at": "2026-02-22T23:41:12Z", "data": []},
        {"type": "email.delivered", "created_at": "2026-02-22T23:41:12Z", "data": {"to": ["a"]}},
        {
            "type": "email.bounced",
            "created_at": "2026-02-22T23:41:12Z",
            "data": {"email_id": "e", "bounce": "Permanent"},
        },
        {"type": 7},
    ],
)
def test_malformed_resend_bodies(document: object) -> None:
    with pytest.raises(Malformed):
        resend_events("resend", "msg_1", document)


def test_a_mailgun_failure_without_a_severity_is_malformed() -> None:
    document = json.loads(mailgun_body())
    del document["event-data"]["severity"]
    with pytest.raises(Malformed, match="severity"):
        mailgun_events("mailgun", document)
