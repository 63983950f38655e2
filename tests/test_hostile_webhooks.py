"""Hostile deliveries to the public listener that pass the signature check.

A signature proves who sent a body, not that the body is sane: a provider's
bug, a leaked key or a future format can sign anything. Each case here is
signed correctly, then fed through the real listener app, the real ingest,
suppression book and reputation guard, and a real store. Whatever the body,
the answer is 200 or 400 (never 5xx: a provider would retry it for hours),
nothing raises, and an innocent event right after it is still kept once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import prometheus_client
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svix.webhooks import Webhook
from twilio.request_validator import RequestValidator

from ringbearer._converter import PositiveFloat, PositiveInt
from ringbearer._journal import Journal
from ringbearer._secrets import Secret
from ringbearer.deliverability import (
    DeliverabilityMetrics,
    Ingest,
    ReputationGuard,
    SuppressionBook,
    Unsubscriber,
)
from ringbearer.deliverability._settings import (
    ReputationSettings,
    SuppressionRules,
    WebhookSettings,
)
from ringbearer.deliverability._unsubscribe import UnsubscribeTokens
from ringbearer.listener import ListenerParts, WebhookSource, build_app
from ringbearer.store import MemoryStore

RESEND_SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ=="
MAILGUN_KEY = "mailgun-signing-key"
TWILIO_TOKEN = "twilio-auth-token"
HOST = "hooks.test"

# JSON values of every shape, nested, with text a parser finds awkward.
awkward_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "e\u0301", "<script>", "a" * 5000, "1e309", "NaN"]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    awkward_text,
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(awkward_text, inner, max_size=4),
    max_leaves=20,
)
resend_types = st.sampled_from(
    ["email.delivered", "email.bounced", "email.complained", "email.opened", "email.clicked",
     "email.sent", "contact.created", "", "email.bounced.extra"]
)  # fmt: skip


@st.composite
def resend_bodies(draw: st.DrawFn) -> bytes:
    """A Resend envelope whose fields may each be anything at all, or the body itself junk."""
    if draw(st.booleans()):
        return json.dumps(draw(values)).encode()
    document: dict[str, Any] = {"type": draw(st.one_of(resend_types, values))}
    if draw(st.booleans()):
        document["created_at"] = draw(st.one_of(st.just("2026-12-07T10:00:00.000Z"), values))
    if draw(st.booleans()):
        data = draw(st.dictionaries(st.sampled_from(
            ["email_id", "to", "from", "bounce", "created_at", "tags", "click"]), values, max_size=6
        ))  # fmt: skip
        document["data"] = data
    return json.dumps(document).encode()


@st.composite
def mailgun_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A Mailgun delivery with a correct signature block and event data of any shape."""
    event_data = draw(
        st.one_of(
            values,
            st.fixed_dictionaries(
                {},
                optional={
                    "event": st.one_of(
                        st.sampled_from(["delivered", "failed", "complained"]), values
                    ),
                    "severity": values,
                    "recipient": values,
                    "timestamp": values,
                    "message": values,
                    "user-variables": values,
                },
            ),
        )
    )
    return {"event-data": event_data}


twilio_forms = st.dictionaries(
    st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "To", "From", "Extra"]),
    st.text(max_size=30),
    max_size=6,
)


class Rig:
    """The real listener app over the real deliverability parts and an in-memory store."""

    def __init__(self) -> None:
        now = time.time
        self.store = MemoryStore(now)
        self.now = now

    async def build(self) -> Any:
        store, wall = self.store, self.now
        metrics = DeliverabilityMetrics(prometheus_client.CollectorRegistry())
        rules = SuppressionRules()
        book = await SuppressionBook.load(store, rules, wall())
        guard = await ReputationGuard.load(
            ReputationSettings(), store, Journal(store, wall), _Alerts(), wall, metrics
        )
        parts = ListenerParts(
            ingest=Ingest(store, book, guard, rules, wall, metrics),
            unsubscriber=Unsubscriber(book, wall, metrics),
            audit=store,
            tokens=UnsubscribeTokens(Secret("tokens")),
            wall=wall,
        )
        sources = [
            WebhookSource("resend", "resend", Secret(RESEND_SECRET)),
            WebhookSource("mailgun", "mailgun", Secret(MAILGUN_KEY)),
            WebhookSource("sms", "twilio", Secret(TWILIO_TOKEN)),
        ]
        settings = WebhookSettings(
            enabled=True,
            per_client_per_second=PositiveFloat(1e9),
            per_client_burst=PositiveInt(10**9),
        )
        return build_app(settings, sources, parts)


class _Alerts:
    def found(self, key: str, severity: object, summary: str) -> None:
        pass

    def cleared(self, key: str) -> None:
        pass


async def post(app: Any, path: str, body: bytes, headers: dict[str, str]) -> int:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", HOST.encode())],
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
        "http_version": "1.1",
    }
    given_body = False

    async def receive() -> dict[str, Any]:
        nonlocal given_body
        if given_body:
            await trio.sleep_forever()
        given_body = True
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def svix_headers(msg_id: str, body: bytes) -> dict[str, str]:
    from datetime import UTC, datetime

    now = datetime.now(tz=UTC)
    signature = Webhook(RESEND_SECRET).sign(msg_id, now, body.decode("utf-8", "surrogatepass"))
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }


def mailgun_signed(document: dict[str, Any], token: str) -> bytes:
    stamp = str(int(time.time()))
    digest = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {**document, "signature": {"timestamp": stamp, "token": token, "signature": digest}}
    ).encode()


INNOCENT = json.dumps(
    {"type": "email.complained", "created_at": "2026-12-07T10:00:00.000Z",
     "data": {"email_id": "em_innocent", "to": ["innocent@example.com"]}}
).encode()  # fmt: skip


async def innocent_still_kept(app: Any, rig: Rig, n: int) -> None:
    """An innocent event after the hostile one is answered 200 and suppresses its address."""
    assert await post(app, "/webhooks/resend", INNOCENT, svix_headers(f"ok_{n}", INNOCENT)) == 200
    kept = await rig.store.suppressions(address="innocent@example.com")
    assert [s.reason.value for s in kept] == ["complaint"]


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@SETTINGS
@given(body=resend_bodies())
def test_any_signed_resend_body_is_answered_200_or_400(body: bytes) -> None:
    async def main() -> None:
        rig = Rig()
        app = await rig.build()
        status = await post(app, "/webhooks/resend", body, svix_headers("hostile", body))
        assert status in (200, 400), status
        await innocent_still_kept(app, rig, 0)

    trio.run(main)


@SETTINGS
@given(document=mailgun_bodies(), token=st.text(alphabet="abcdef0123456789", min_size=50,
                                                max_size=50))  # fmt: skip
def test_any_signed_mailgun_body_is_answered_200_or_400(
    document: dict[str, Any], token: str
) -> None:
    async def main() -> None:
        rig = Rig()
        app = await rig.build()
        body = mailgun_signed(document, token)
        status = await post(app, "/webhooks/mailgun", body, {"content-type": "application/json"})
        assert status in (200, 400), status
        await innocent_still_kept(app, rig, 0)

    trio.run(main)


@SETTINGS
@given(form=twilio_forms)
def test_any_signed_twilio_form_is_answered_200_or_400(form: dict[str, str]) -> None:
    async def main() -> None:
        rig = Rig()
        app = await rig.build()
        url = f"http://{HOST}/webhooks/sms"
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
        }
        status = await post(app, "/webhooks/sms", urlencode(form).encode(), headers)
        assert status in (200, 400), status
        await innocent_still_kept(app, rig, 0)

    trio.run(main)
