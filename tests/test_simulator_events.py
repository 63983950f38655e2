"""The simulator sends delivery events back, signed as each provider signs, to a loopback receiver.

Each signature is checked with the provider's own verifier (svix's
``Webhook``, twilio's ``RequestValidator``) or, for Mailgun, by its
documented HMAC. The outbox's pacing, retries and bounds are checked on
trio's mock clock with a fake poster.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
from collections import deque
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import attrs
import httpx
import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import given
from svix.webhooks import Webhook
from twilio.request_validator import RequestValidator

from ringbearer._errors import InvalidPayload
from ringbearer._httpserver import HttpRequest, HttpResponse, serve_http
from ringbearer._secrets import SecretRef
from ringbearer.integrations import EmailPayload, MailgunSettings, provider_kinds
from ringbearer.integrations._twilio import TwilioSmsSettings
from ringbearer.simulator import (
    EventTiming,
    Fates,
    MailEvent,
    SimulatorState,
    WebhookTarget,
    serve_simulator,
)
from ringbearer.simulator._mail import SentMail
from ringbearer.simulator._outbox import Outbound, Outbox, Script
from ringbearer.simulator._resend_events import scripts as resend_scripts
from ringbearer.simulator._slot import ProviderSlot

from .kit import HOST, Sim, deliver_one, envelope
from .kit import sim_fixture as sim_fixture

SEED = 12
WHSEC = "whsec_" + base64.b64encode(b"simulator-events-test-signing-k").decode()
MAILGUN_KEY = "mailgun-signing-key-for-tests"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-for-tests"
AUTH = {"Authorization": "Bearer re_test"}
MAILGUN_URL = "/mailgun/v3/mg.example.com/messages"
SMS_URL = f"/twilio-sms/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
WAIT = 10.0  # seconds any wait for events may take before the test fails
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def sim_seed() -> int:
    return SEED


@attrs.define
class Receiver:
    """A loopback endpoint that records each request and answers as told (then 200)."""

    url: str = ""
    got: list[HttpRequest] = attrs.Factory(list)
    answers: deque[int] = attrs.Factory(deque)
    _changed: trio.Event = attrs.Factory(trio.Event)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        self.got.append(request)
        self._changed.set()
        self._changed = trio.Event()
        return HttpResponse.text(self.answers.popleft() if self.answers else 200, "ok")

    async def wait(self, path: str, count: int) -> list[HttpRequest]:
        """The first ``count`` requests to ``path``, once they have come."""
        with trio.fail_after(WAIT):
            while len(self.on(path)) < count:
                await self._changed.wait()
        return self.on(path)

    def on(self, path: str) -> list[HttpRequest]:
        return [request for request in self.got if request.path == path]


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    found = Receiver()
    port = await nursery.start(serve_http, found.handle, HOST, 0)
    found.url = f"http://{HOST}:{port}"
    return found


@pytest.fixture
async def wired(sim: Sim, receiver: Receiver) -> Sim:
    """The simulator, sending Resend's and Mailgun's events to the receiver."""
    for kind, secret in (("resend", WHSEC), ("mailgun", MAILGUN_KEY)):
        body = {"provider": kind, "url": f"{receiver.url}/{kind}", "secret": secret}
        response = await sim.client.post("/_sim/webhooks", json=body)
        assert response.status_code == 200, response.text
    return sim


async def settled(sim: Sim, provider: str, count: int) -> dict[str, Any]:
    """The provider's stats once ``count`` of its events were sent or given up."""
    with trio.fail_after(WAIT):
        await sim.state.slots()[sim.state.name_of(provider) or provider].stats.wait_events(count)
    return await sim.stats(provider)


async def send_resend(sim: Sim, to: str, **fields: Any) -> str:
    email = {"from": "Studio <hi@studio.test>", "to": [to], "subject": "Hi", "text": "x"}
    response = await sim.client.post("/resend/emails", json={**email, **fields}, headers=AUTH)
    assert response.status_code == 200, response.text
    email_id: str = response.json()["id"]
    return email_id


async def send_mailgun(sim: Sim, to: str, **fields: str) -> str:
    form = {"from": "hi@studio.test", "to": to, "subject": "Hi", "text": "x", **fields}
    response = await sim.client.post(MAILGUN_URL, data=form, auth=("api", "key-test"))
    assert response.status_code == 200, response.text
    message_id: str = response.json()["id"]
    return message_id


def resend_events(requests: list[HttpRequest]) -> list[dict[str, Any]]:
    """Each request's JSON body, after svix's own verifier passed it."""
    for request in requests:
        Webhook(WHSEC).verify(request.body, dict(request.headers))
    return [json.loads(request.body) for request in requests]


def mailgun_verified(body: Mapping[str, Any]) -> bool:
    """Mailgun's documented check: hex HMAC-SHA256 of timestamp + token with the signing key."""
    signature = body["signature"]
    content = (signature["timestamp"] + signature["token"]).encode()
    expected = hmac.new(MAILGUN_KEY.encode(), content, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature["signature"])


# --- what each address yields, signed as each provider signs ---------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bounce@simulator.test", [("email.bounced", "Permanent")]),
        ("softbounce@simulator.test", [("email.bounced", "Temporary")]),
        ("complaint@simulator.test", [("email.delivered", None), ("email.complained", None)]),
    ],
)
async def test_resend_events_are_the_mailbox_fate_signed_by_svix(
    wired: Sim, receiver: Receiver, address: str, expected: list[tuple[str, str | None]]
) -> None:
    """Bounce, soft bounce and complaint addresses yield their events, in order, svix-verified."""
    email_id = await send_resend(wired, address)
    stats = await settled(wired, "resend", len(expected))
    events = resend_events(await receiver.wait("/resend", len(expected)))
    got = [(event["type"], event["data"].get("bounce", {}).get("type")) for event in events]
    assert got == expected
    assert all(e["data"]["email_id"] == email_id for e in events)
    assert all(e["data"]["to"] == [address] for e in events)
    ids = {request.headers["svix-id"] for request in receiver.on("/resend")}
    assert len(ids) == len(expected)  # one svix-id per event
    assert (stats["events_sent"], stats["events_failed"]) == (len(expected), 0)


async def test_an_ordinary_address_is_delivered_and_maybe_opened_and_clicked(
    wired: Sim, receiver: Receiver
) -> None:
    """Every other address is delivered; its opens and clicks are the seeded draw's."""
    email_ids = [await send_resend(wired, f"guest{n}@example.com") for n in range(12)]
    fates = [Fates(SEED).mail(f"guest{n}@example.com", i) for n, i in enumerate(email_ids)]
    total = sum(len(fate) for fate in fates)
    await settled(wired, "resend", total)
    events = resend_events(await receiver.wait("/resend", total))
    for email_id, fate in zip(email_ids, fates, strict=True):
        types = [e["type"] for e in events if e["data"]["email_id"] == email_id]
        assert types == [f"email.{event.value}" for event in fate]
        assert types[0] == "email.delivered"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bounce@simulator.test", [("failed", "permanent")]),
        ("softbounce@simulator.test", [("failed", "temporary")]),
        ("complaint@simulator.test", [("delivered", None), ("complained", None)]),
        ("unsubscribe@simulator.test", [("delivered", None), ("unsubscribed", None)]),
    ],
)
async def test_mailgun_events_carry_their_signature_and_our_key(
    wired: Sim, receiver: Receiver, address: str, expected: list[tuple[str, str | None]]
) -> None:
    """Mailgun's events pass its HMAC check and echo v: variables and the message id."""
    message_id = await send_mailgun(wired, address, **{"v:ringbearer-key": "msg-0007"})
    await settled(wired, "mailgun", len(expected))
    bodies = [json.loads(r.body) for r in await receiver.wait("/mailgun", len(expected))]
    assert all(mailgun_verified(body) for body in bodies)
    data = [body["event-data"] for body in bodies]
    assert [(d["event"], d.get("severity")) for d in data] == expected
    for one in data:
        assert one["recipient"] == address
        assert one["message"]["headers"]["message-id"] == message_id.strip("<>")
        assert one["user-variables"] == {"ringbearer-key": "msg-0007"}
    tokens = [body["signature"]["token"] for body in bodies]
    assert all(len(token) == 50 for token in tokens) and len(set(tokens)) == len(tokens)


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("+15005550001", [("undelivered", "30003")]),
        ("+15558675310", [("sent", None), ("delivered", None)]),
    ],
)
async def test_twilio_callbacks_are_signed_with_the_sending_token(
    sim: Sim, receiver: Receiver, to: str, expected: list[tuple[str, str | None]]
) -> None:
    """Each status goes to the text's StatusCallback, valid for twilio's RequestValidator."""
    callback = f"{receiver.url}/sms?integration=alerts"
    form = {"To": to, "From": "+15017122661", "Body": "hi", "StatusCallback": callback}
    response = await sim.client.post(SMS_URL, data=form, auth=(ACCOUNT, TOKEN))
    assert response.status_code == 201, response.text
    await settled(sim, "twilio_sms", len(expected))
    requests = await receiver.wait("/sms", len(expected))
    params = [dict(parse_qsl(r.body.decode(), keep_blank_values=True)) for r in requests]
    for request, fields in zip(requests, params, strict=True):
        signature = request.headers["x-twilio-signature"]
        assert RequestValidator(TOKEN).validate(callback, fields, signature)
        assert not RequestValidator("another-token").validate(callback, fields, signature)
    assert [(p["MessageStatus"], p.get("ErrorCode")) for p in params] == expected
    sid = response.json()["sid"]
    assert all(
        p["MessageSid"] == sid and p["To"] == to and p["AccountSid"] == ACCOUNT for p in params
    )


# --- retries, one-click, adapters ---------------------------------------------------------------


async def test_a_refused_event_is_retried_under_the_same_svix_id(
    wired: Sim, receiver: Receiver
) -> None:
    """A 500 gets the event again, same svix-id, each attempt signed and verified anew."""
    receiver.answers.append(500)
    await send_resend(wired, "bounce@simulator.test")
    stats = await settled(wired, "resend", 1)
    first, again = await receiver.wait("/resend", 2)
    assert first.headers["svix-id"] == again.headers["svix-id"] and first.body == again.body
    resend_events([first, again])
    assert (stats["events_sent"], stats["events_failed"], stats["event_retries"]) == (1, 0, 1)


async def test_resend_unsubscribe_is_the_mailbox_one_click_post(
    wired: Sim, receiver: Receiver
) -> None:
    """unsubscribe@ via Resend: delivered, then RFC 8058's POST to the https/http URI."""
    headers = {
        "List-Unsubscribe": f"<mailto:unsub@studio.test>, <{receiver.url}/unsubscribe/T0KEN>",
        "List-Unsubscribe-Post": ONE_CLICK,
    }
    await send_resend(wired, "unsubscribe@simulator.test", headers=headers)
    await settled(wired, "resend", 2)
    (post,) = await receiver.wait("/unsubscribe/T0KEN", 1)
    assert post.method == "POST" and post.body == ONE_CLICK.encode()
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    assert not {"cookie", "authorization"} & set(post.headers)
    (delivered,) = resend_events(receiver.on("/resend"))
    assert delivered["type"] == "email.delivered"
    assert receiver.got.index(receiver.on("/resend")[0]) < receiver.got.index(post)


async def test_no_one_click_without_list_unsubscribe_post(wired: Sim, receiver: Receiver) -> None:
    """A List-Unsubscribe without List-Unsubscribe-Post offers no one-click: no POST."""
    headers = {"List-Unsubscribe": f"<{receiver.url}/unsubscribe/T0KEN>"}
    await send_resend(wired, "unsubscribe@simulator.test", headers=headers)
    stats = await settled(wired, "resend", 1)
    assert stats["events_sent"] == 1
    assert [request.path for request in receiver.got] == ["/resend"]


async def test_mailgun_adapter_key_comes_back_in_user_variables(
    wired: Sim, receiver: Receiver
) -> None:
    """The adapter sends the key as v:ringbearer-key (no MIME header); its event echoes it."""
    settings = MailgunSettings(api_key=SecretRef(env="MAILGUN"), domain="mg.example.com")
    adapter = provider_kinds()["mailgun"].build(
        settings, wired.context("mailgun", {"MAILGUN": "key-sim"})
    )
    payload = {"from": "hi@studio.test", "to": "bounce@simulator.test", "subject": "s", "text": "x"}
    await deliver_one(adapter, envelope(payload, key="msg-0042"))
    (seen,) = await wired.requests("mailgun")
    assert not any(name.lower().startswith("h:x-idem") for name in parse_qs(seen["body"]))
    (request,) = await receiver.wait("/mailgun", 1)
    assert json.loads(request.body)["event-data"]["user-variables"] == {
        "ringbearer-key": "msg-0042"
    }


def test_a_tag_may_not_take_the_key_variable() -> None:
    """Mailgun sends tags as v: variables, so a tag named ringbearer-key is refused at submit."""
    payload = {"from": "a@b.test", "to": "c@d.test", "subject": "s", "text": "x"}
    tags = [{"name": "ringbearer-key", "value": "forged"}]
    with pytest.raises(InvalidPayload, match="reserved"):
        EmailPayload.parse({**payload, "tags": tags})


@pytest.mark.parametrize("webhook", [None, "/webhooks/alerts-sms"])
async def test_twilio_adapter_names_its_webhook_as_status_callback(
    sim: Sim, receiver: Receiver, webhook: str | None
) -> None:
    """With a webhook URL the SMS carries StatusCallback, and callbacks come; without, none."""
    url = None if webhook is None else receiver.url + webhook
    settings = TwilioSmsSettings(
        account_sid=ACCOUNT, auth_token=SecretRef(env="TOKEN"), sender="+15017122661"
    )
    ctx = sim.context("twilio_sms", {"TOKEN": TOKEN}, webhook_url=lambda: url)
    adapter = provider_kinds()["twilio_sms"].build(settings, ctx)
    await deliver_one(adapter, envelope({"to": "+15005550001", "body": "hi"}))
    (seen,) = await sim.requests("twilio_sms")
    assert parse_qs(seen["body"]).get("StatusCallback") == (None if url is None else [url])
    if webhook is None:
        assert sim.state.events.outbox.queued == 0
        return
    (callback,) = await receiver.wait(webhook, 1)
    fields = dict(parse_qsl(callback.body.decode()))
    assert RequestValidator(TOKEN).validate(url, fields, callback.headers["x-twilio-signature"])


async def test_a_resend_batch_reports_each_email(wired: Sim, receiver: Receiver) -> None:
    """Each email of /emails/batch has its own events under its own id."""
    emails = [
        {"from": "hi@studio.test", "to": [to], "subject": "s", "text": "x"}
        for to in ("bounce@simulator.test", "softbounce@simulator.test")
    ]
    response = await wired.client.post("/resend/emails/batch", json=emails, headers=AUTH)
    ids = [item["id"] for item in response.json()["data"]]
    await settled(wired, "resend", 2)
    events = resend_events(await receiver.wait("/resend", 2))
    by_id = {e["data"]["email_id"]: e["data"]["bounce"]["type"] for e in events}
    assert by_id == {ids[0]: "Permanent", ids[1]: "Temporary"}


# --- the hot path, the read-outs and the control API ----------------------------------------------


async def test_without_a_target_nothing_is_queued(sim: Sim) -> None:
    """No webhook registered: a send to a bouncing address queues no event at all."""
    await send_resend(sim, "bounce@simulator.test")
    await send_mailgun(sim, "complaint@simulator.test")
    assert sim.state.events.outbox.queued == 0
    assert (await sim.stats("resend"))["events_sent"] == 0
    mail = SentMail("id", "a@b.test", ("bounce@simulator.test",), "s")
    assert list(resend_scripts(mail, None, Fates(), 0.0)) == []


async def test_a_replayed_send_is_neither_counted_nor_reported_again(wired: Sim) -> None:
    """Resend's idempotent replay sends nothing: no second count for the address, no events."""
    email = {"from": "a@b.test", "to": ["Bounce@Simulator.test"], "subject": "s", "text": "x"}
    for _ in range(2):
        headers = {**AUTH, "Idempotency-Key": "same"}
        response = await wired.client.post("/resend/emails", json=email, headers=headers)
        assert response.status_code == 200
    counts = await wired.client.get("/_sim/recipients", params={"provider": "resend"})
    assert counts.json() == {"resend": {"bounce@simulator.test": 1}}
    assert wired.state.events.outbox.queued == 1


async def test_recipients_and_headers_are_read_out_for_every_email_provider(
    nursery: trio.Nursery,
) -> None:
    """/_sim/recipients counts sends per address; /_sim/mail shows the headers as sent."""
    state = SimulatorState(seed=SEED)
    address = await nursery.start(serve_simulator, state, HOST, 0, 0)
    unsubscribe = {"List-Unsubscribe": "<https://u.test/x>", "List-Unsubscribe-Post": ONE_CLICK}
    async with httpx.AsyncClient(base_url=address.url, timeout=5) as client:
        sim = Sim(state, address, client)
        await send_resend(sim, "Guest <Ann@Example.com>", headers=unsubscribe)
        await send_mailgun(sim, "ann@example.com", **{f"h:{k}": v for k, v in unsubscribe.items()})
        await trio.to_thread.run_sync(smtp_send, address.smtp_port, unsubscribe)
        for provider in ("resend", "mailgun", "smtp"):
            counts = await client.get(
                "/_sim/recipients", params={"provider": provider, "address": "ann@example.com"}
            )
            assert counts.json() == {provider: {"ann@example.com": 1}}
            (mail,) = (await client.get("/_sim/mail", params={"provider": provider})).json()[
                provider
            ]
            assert {k: mail["headers"][k] for k in unsubscribe} == unsubscribe
            assert mail["to"] == ["ann@example.com"]
        never = await client.get(
            "/_sim/recipients", params={"provider": "resend", "address": "bob@example.com"}
        )
        assert never.json() == {"resend": {"bob@example.com": 0}}


def smtp_send(port: int | None, headers: Mapping[str, str]) -> None:
    assert port is not None
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "hi@studio.test", "ann@example.com", "s"
    for name, value in headers.items():
        mail[name] = value
    mail.set_content("x")
    with smtplib.SMTP(HOST, port, timeout=5) as client:
        client.send_message(mail)


async def test_webhook_targets_are_set_shown_and_cleared(sim: Sim) -> None:
    """POST registers a target, GET shows its URL but never its secret, DELETE removes it."""
    body = {"provider": "mailgun", "url": "http://127.0.0.1:9/mg", "secret": "k"}
    assert (await sim.client.post("/_sim/webhooks", json=body)).status_code == 200
    shown = (await sim.client.get("/_sim/webhooks")).json()
    assert shown == {"mailgun": {"url": "http://127.0.0.1:9/mg", "secret": "set"}}
    cleared = await sim.client.delete("/_sim/webhooks", params={"provider": "mailgun"})
    assert cleared.json() == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"provider": "resend", "url": "http://h/r", "secret": "not-whsec"}, "whsec_"),
        ({"provider": "resend", "url": "http://h/r", "secret": "whsec_***"}, "base64"),
        ({"provider": "twilio_sms", "url": "http://h/t", "secret": "x"}, "StatusCallback"),
        ({"provider": "mailgun", "url": "ftp://h/m", "secret": "x"}, "http"),
        ({"provider": "mailgun", "url": "http://h/m"}, "each a string"),
        ({"provider": "nope", "url": "http://h/m", "secret": "x"}, "unknown provider"),
    ],
)
async def test_a_bad_webhook_target_is_refused(sim: Sim, body: dict[str, str], words: str) -> None:
    """A target that could not sign or reach anything is a 400 saying why."""
    response = await sim.client.post("/_sim/webhooks", json=body)
    assert response.status_code == 400 and words in response.json()["error"], response.text


async def test_wait_for_events_over_http(wired: Sim) -> None:
    """/_sim/wait?events=N returns once N events of the provider were settled."""
    await send_resend(wired, "bounce@simulator.test")
    params: dict[str, str | float] = {"provider": "resend", "events": 1, "timeout": WAIT}
    response = await wired.client.get("/_sim/wait", params=params, timeout=WAIT + 5)
    assert (response.status_code, response.json()) == (200, {"events": 1})


def test_in_process_targets_are_checked() -> None:
    """SimulatorState(webhooks=...) refuses a target that cannot sign."""
    with pytest.raises(ValueError, match="whsec_"):
        SimulatorState(webhooks={"resend": WebhookTarget("http://h/r", "plain")})


# --- the fates -------------------------------------------------------------------------------


def test_opens_and_clicks_are_a_seeded_share() -> None:
    """About 30% open and 10% click; the same seed draws the same, another seed others."""
    ids = [f"email-{n}" for n in range(4000)]
    fates = [Fates(SEED).mail("guest@example.com", i) for i in ids]
    opened = sum(MailEvent.OPENED in fate for fate in fates) / len(ids)
    clicked = sum(MailEvent.CLICKED in fate for fate in fates) / len(ids)
    assert 0.27 < opened < 0.33 and 0.08 < clicked < 0.12
    assert fates == [Fates(SEED).mail("guest@example.com", i) for i in ids]
    assert fates != [Fates(SEED + 1).mail("guest@example.com", i) for i in ids]


@given(st.emails(), st.text(min_size=1, max_size=40), st.integers())
def test_an_ordinary_fate_is_delivered_then_perhaps_opened_then_clicked(
    address: str, email_id: str, seed: int
) -> None:
    """Anyone but the special addresses: delivered, then opened, then clicked, a prefix of it."""
    fate = Fates(seed).mail(address.lower(), email_id)
    order = (MailEvent.DELIVERED, MailEvent.OPENED, MailEvent.CLICKED)
    assert address.lower().endswith("@simulator.test") or fate == order[: len(fate)]


# --- the outbox, on the mock clock ------------------------------------------------------------


@attrs.define
class FakePoster:
    """Answers each attempt from ``answers`` (then 200), noting when and what it was sent."""

    answers: deque[int | None] = attrs.Factory(deque)
    sent: list[tuple[float, str]] = attrs.Factory(list)

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int | None:
        self.sent.append((trio.current_time(), url))
        return self.answers.popleft() if self.answers else 200


def script(slot: ProviderSlot, *urls: str, final: frozenset[int] = frozenset()) -> Script:
    return Script(
        tuple(Outbound(url, b"{}", "application/json", final=final) for url in urls), slot
    )


TIMING = EventTiming(first=0.02, gap=0.05, retries=(0.1, 0.2))


async def test_events_of_a_message_go_in_order_at_their_pace(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Each script's events go first after ``first``, then one per ``gap``, in order."""
    slot, poster = ProviderSlot("resend", 0), FakePoster()
    outbox = Outbox(TIMING)
    await nursery.start(outbox.run, poster)
    start = trio.current_time()
    outbox.put(script(slot, "a1", "a2", "a3"))
    outbox.put(script(slot, "b1", "b2"))
    await slot.stats.wait_events(5)
    by_url = {url: round(at - start, 6) for at, url in poster.sent}
    assert [url for _, url in poster.sent if url.startswith("a")] == ["a1", "a2", "a3"]
    assert by_url == {"a1": 0.02, "a2": 0.07, "a3": 0.12, "b1": 0.02, "b2": 0.07}


async def test_an_event_nobody_takes_is_given_up_after_its_retries(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """No answer, then 503s: tried 1 + len(retries) times on their schedule, then failed."""
    slot, poster = ProviderSlot("resend", 0), FakePoster(deque([None, 503, 503]))
    outbox = Outbox(TIMING)
    await nursery.start(outbox.run, poster)
    start = trio.current_time()
    outbox.put(script(slot, "lost", "next"))
    await slot.stats.wait_events(2)
    assert [(round(at - start, 6), url) for at, url in poster.sent] == [
        (0.02, "lost"),
        (0.12, "lost"),
        (0.32, "lost"),
        (0.37, "next"),  # the message's next event still goes, after its gap
    ]
    snapshot = slot.stats.snapshot()
    assert (snapshot.events_sent, snapshot.events_failed, snapshot.event_retries) == (1, 1, 2)


async def test_a_final_status_ends_the_tries(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Mailgun gives an event up on 406: one attempt, no retry."""
    slot, poster = ProviderSlot("mailgun", 0), FakePoster(deque([406]))
    outbox = Outbox(TIMING)
    await nursery.start(outbox.run, poster)
    outbox.put(script(slot, "m", final=frozenset({406})))
    await slot.stats.wait_events(1)
    assert len(poster.sent) == 1 and slot.stats.snapshot().events_failed == 1


def test_a_full_queue_drops_and_counts() -> None:
    """Past its capacity the queue drops a script and counts each of its events as dropped."""
    slot = ProviderSlot("resend", 0)
    outbox = Outbox(EventTiming(capacity=2))
    for _ in range(3):
        outbox.put(script(slot, "x", "y"))
    assert outbox.waiting() == 2
    assert slot.stats.snapshot().events_dropped == 2


async def test_a_send_never_waits_for_its_events(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The provider answers before any event goes: the report only queues."""
    state = SimulatorState(webhooks={"mailgun": WebhookTarget("http://127.0.0.1:9/m", "k")})
    outbox, poster = state.events.outbox, FakePoster()
    await nursery.start(outbox.run, poster)
    form = "from=a%40b.test&to=bounce%40simulator.test&subject=s&text=x"
    request = HttpRequest(
        "POST",
        MAILGUN_URL,
        MAILGUN_URL,
        "",
        {
            "content-type": "application/x-www-form-urlencoded",
            "authorization": "Basic " + base64.b64encode(b"api:key").decode(),
        },
        form.encode(),
    )
    endpoint = state.endpoint("mailgun")
    assert endpoint is not None
    start = trio.current_time()
    response = await endpoint.answer(request, MAILGUN_URL.removeprefix("/mailgun"))
    assert (response.status, trio.current_time(), poster.sent) == (200, start, [])
    assert outbox.queued == 1
    await state.slots()["mailgun"].stats.wait_events(1)
    (at, url), *_ = poster.sent
    assert (url, round(at - start, 6)) == ("http://127.0.0.1:9/m", state.timing.first)
