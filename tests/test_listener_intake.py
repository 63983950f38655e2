"""``POST /v1/messages``: producers submit over the public listener as over the control socket.

The listener's ASGI app is driven directly (one request in, one response
out), with the intake route mounted as ``build_app`` mounts it, and a fake
submit handler that keeps keys as the store does. ``send --url``'s client is
driven against ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
import httpx
import pytest

from ringbearer._cli_base import UsageError
from ringbearer._cli_http import endpoint, submit_over_http, token_from_env
from ringbearer._converter import PositiveInt, problems
from ringbearer._errors import (
    ConfigError,
    ControlError,
    ErrorCode,
    RequestError,
    StoreError,
)
from ringbearer._intake_settings import IntakeSettings, Producer
from ringbearer._logging import LineFormatter
from ringbearer._secrets import Secret, SecretRef
from ringbearer.control import MAX_MESSAGES_PER_SUBMIT, MessageIn, Submit
from ringbearer.control._access import Role
from ringbearer.control._protocol import converter
from ringbearer.control._replies import AcceptedMessage, RefusedMessage, SubmitReply
from ringbearer.deliverability._settings import WebhookSettings
from ringbearer.deliverability._unsubscribe import UnsubscribeTokens
from ringbearer.listener import ListenerApp, ListenerParts, build_app
from ringbearer.listener._app import Route
from ringbearer.listener._intake import (
    PATH,
    Credential,
    IntakeParts,
    MessageIntake,
    Producers,
    producers,
)
from ringbearer.store import Event, EventKind

SEND_TOKEN = "platform-token-6f1c2a9e0b7d4c3a"
OPERATE_TOKEN = "ops-token-9a8b7c6d5e4f3a2b1c0d"
READ_TOKEN = "reader-token-0f1e2d3c4b5a6978"
WRONG_TOKEN = "guessed-token-1234567890abcdef"
LINES = "application/x-ndjson"
PEER = "192.0.2.7"


# --- fakes -----------------------------------------------------------------------------


@attrs.define
class FakeSubmit:
    """Takes messages as the store does: a key seen before is the earlier message again."""

    keys: dict[str, int] = attrs.Factory(dict)
    received: list[Submit] = attrs.Factory(list)
    next_id: int = 1
    failure: Exception | None = None
    refuse_target: str | None = None  # its messages are refused on their own (suppressed)

    async def __call__(self, request: Submit) -> SubmitReply:
        self.received.append(request)
        if self.failure is not None:
            raise self.failure
        accepted, refused = [], []
        for index, message in enumerate(request.messages):
            if message.target == self.refuse_target:
                refused.append(RefusedMessage(index, "suppressed", "the recipient is suppressed"))
                continue
            accepted.append(self._accept(message))
        return SubmitReply(accepted, refused)

    def _accept(self, message: MessageIn) -> AcceptedMessage:
        key = message.key or f"generated-{self.next_id}"
        if key in self.keys:
            return AcceptedMessage(self.keys[key], key, duplicate=True)
        self.keys[key] = self.next_id
        self.next_id += 1
        return AcceptedMessage(self.keys[key], key, duplicate=False)


@attrs.define
class FakeAudit:
    events: list[Event] = attrs.Factory(list)

    def append_event(self, event: Event) -> None:
        self.events.append(event)

    def refusals(self) -> list[dict[str, Any]]:
        return [dict(e.detail or {}) for e in self.events if e.kind == EventKind.WEBHOOK_REFUSED]


class NoIngest:
    async def ingest(self, events: object) -> list[bool]:
        raise AssertionError("no webhook is posted in these tests")


class NoUnsubscriber:
    async def unsubscribe(self, address: str, category: str, *, by: str) -> None:
        raise AssertionError("no unsubscribe is posted in these tests")


@attrs.frozen
class WithIntake(ListenerApp):
    """The listener's app with the intake route mounted, as ``build_app`` mounts it."""

    intake: MessageIntake | None = None

    def route(self, path: str) -> Route | None:
        if self.intake is not None and path == PATH:
            return Route(frozenset({"POST"}), self.intake.answer)
        return super().route(path)


@attrs.define
class Harness:
    app: WithIntake
    submit: FakeSubmit
    audit: FakeAudit


def harness(**settings: Any) -> Harness:
    submit, audit = FakeSubmit(), FakeAudit()
    parts = ListenerParts(
        ingest=NoIngest(),
        unsubscriber=NoUnsubscriber(),
        audit=audit,
        tokens=UnsubscribeTokens(Secret("unsubscribe-secret")),
        wall=lambda: 1_800_000_000.0,
        monotonic=lambda: 0.0,
    )
    base = build_app(WebhookSettings(**settings), (), parts)
    credentials = (
        Credential.of("platform", "send", Secret(SEND_TOKEN)),
        Credential.of("ops", "operate", Secret(OPERATE_TOKEN)),
        Credential.of("dashboards", "read", Secret(READ_TOKEN)),
    )
    intake = MessageIntake(IntakeParts(Producers(credentials), submit), base.refusals)
    app = WithIntake(**{**attrs.asdict(base, recurse=False), "intake": intake})
    return Harness(app, submit, audit)


@pytest.fixture
def listener() -> Harness:
    return harness()


@attrs.frozen
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


async def post(
    app: ListenerApp,
    body: bytes,
    *,
    token: str | None = SEND_TOKEN,
    content_type: str = LINES,
    method: str = "POST",
) -> Answer:
    """One request to the app, as hypercorn hands it over; the whole response."""
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": headers,
        "client": (PEER, 50123),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, whole = sent
    names = {k.decode(): v.decode("latin-1") for k, v in start["headers"]}
    return Answer(start["status"], names, whole["body"])


def lines(*messages: object) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\n" for m in messages)


EMAIL = {"target": "email", "payload": {"to": "ann@example.com"}, "key": "welcome-1"}
SMS = {"target": "sms", "payload": {"to": "+15005550006", "body": "hi"}, "priority": "critical"}


# --- authentication and role -----------------------------------------------------------


async def test_no_token_is_401_with_a_bearer_challenge_audited_and_counted(
    listener: Harness,
) -> None:
    """Without a token: 401 and WWW-Authenticate: Bearer; audited; the client's bucket pays."""
    answer = await post(listener.app, lines(EMAIL), token=None)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "forbidden"
    assert listener.audit.refusals() == [{"source": "intake", "why": "malformed"}]
    assert len(listener.app.limiter) == 1  # the peer now has a bucket: it took a token
    assert listener.submit.received == []


async def test_a_wrong_token_is_401_and_no_token_shows_in_the_answer_or_the_log(
    listener: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A token no producer has: 401 (invalid_token); neither token appears anywhere."""
    with caplog.at_level(logging.DEBUG):
        answer = await post(listener.app, lines(EMAIL), token=WRONG_TOKEN)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert listener.audit.refusals() == [{"source": "intake", "why": "forged"}]
    assert listener.submit.received == []
    written = "\n".join(LineFormatter(journal=False).format(r) for r in caplog.records)
    assert "intake" in written  # the refusal is logged...
    shown = [answer.body.decode(), *answer.headers.values(), written, repr(listener.app)]
    for token in (WRONG_TOKEN, SEND_TOKEN, OPERATE_TOKEN, READ_TOKEN):
        assert not any(token in text for text in shown)  # ...and no token is


@pytest.mark.parametrize("header", ["Basic cGxhdGZvcm0=", "Bearer", "Bearer   ", SEND_TOKEN])
async def test_an_authorization_that_is_not_a_bearer_token_is_401(header: str) -> None:
    """Another scheme, an empty token, a bare token: each is a missing bearer token."""
    found = Producers((Credential.of("platform", "send", Secret(SEND_TOKEN)),)).identify(header)
    assert not isinstance(found, Credential)
    assert found.why.value == "malformed"


async def test_the_scheme_is_case_insensitive_and_the_producer_is_named() -> None:
    """``bearer`` works as ``Bearer`` does (RFC 7235); the token names its producer."""
    table = Producers(
        (
            Credential.of("platform", "send", Secret(SEND_TOKEN)),
            Credential.of("ops", "operate", Secret(OPERATE_TOKEN)),
        )
    )
    found = table.identify(f"bearer {OPERATE_TOKEN}")
    assert isinstance(found, Credential)
    assert (found.name, found.role) == ("ops", Role.OPERATE)


async def test_a_read_only_token_is_403_and_nothing_is_submitted(listener: Harness) -> None:
    """A producer whose role is read may not submit: 403, naming the role needed."""
    answer = await post(listener.app, lines(EMAIL), token=READ_TOKEN)
    assert answer.status == 403
    assert answer.json() == {
        "error": {
            "code": "forbidden",
            "message": "'submit' needs the send role; producer 'dashboards' has read",
        }
    }
    assert listener.submit.received == []


async def test_an_operate_token_may_submit(listener: Harness) -> None:
    """Operate is above send, as on the socket."""
    answer = await post(listener.app, lines(EMAIL), token=OPERATE_TOKEN)
    assert answer.status == 200


# --- bodies ----------------------------------------------------------------------------


async def test_json_lines_are_submitted_and_the_reply_is_the_sockets(listener: Harness) -> None:
    """Two lines (a blank one between): one submit of two MessageIn; 200 with its reply."""
    body = lines(EMAIL) + b"\n" + lines(SMS)
    answer = await post(listener.app, body)
    assert answer.status == 200
    assert answer.json() == {
        "accepted": [
            {"id": 1, "key": "welcome-1", "duplicate": False, "held": None},
            {"id": 2, "key": "generated-2", "duplicate": False, "held": None},
        ],
        "refused": [],
    }
    assert listener.submit.received == [
        Submit(
            [
                MessageIn("email", {"to": "ann@example.com"}, key="welcome-1"),
                MessageIn("sms", {"to": "+15005550006", "body": "hi"}, priority="critical"),
            ]
        )
    ]


@pytest.mark.parametrize(
    "content_type", ["application/jsonl", "Application/X-NDJSON; charset=utf-8"]
)
async def test_each_json_lines_type_is_read(listener: Harness, content_type: str) -> None:
    """Both JSON lines types, in any case and with parameters."""
    answer = await post(listener.app, lines(EMAIL), content_type=content_type)
    assert answer.status == 200
    assert len(listener.submit.received[0].messages) == 1


async def test_a_json_array_is_submitted_and_refusals_come_back_by_index(
    listener: Harness,
) -> None:
    """An array body; a message refused on its own is listed by its place, the rest kept."""
    listener.submit.refuse_target = "sms"
    answer = await post(
        listener.app, json.dumps([SMS, EMAIL]).encode(), content_type="application/json"
    )
    assert answer.status == 200
    assert answer.json() == {
        "accepted": [{"id": 1, "key": "welcome-1", "duplicate": False, "held": None}],
        "refused": [{"index": 0, "code": "suppressed", "reason": "the recipient is suppressed"}],
    }


async def test_the_same_key_twice_is_the_same_message_again(listener: Harness) -> None:
    """A producer's retry: the key it gave is answered duplicate, with the first id."""
    first = await post(listener.app, lines(EMAIL))
    again = await post(listener.app, lines(EMAIL))
    assert first.json()["accepted"] == [
        {"id": 1, "key": "welcome-1", "duplicate": False, "held": None}
    ]
    assert again.json()["accepted"] == [
        {"id": 1, "key": "welcome-1", "duplicate": True, "held": None}
    ]


BAD_FOURTH_LINES = [
    (b'{"target": "email", "payload": ', "bad_json", "messages[3]: not valid JSON: "),
    (b'{"target": "email", "payload": {}, "colour": "red"}', "bad_args", "messages[3]: "),
    (b'{"target": 7, "payload": {}}', "bad_args", "messages[3].target: expected a string"),
    (b'{"target": "email", "payload": {"n": NaN}}', "bad_json", "messages[3].payload.n: NaN"),
    (b'{"target": "email", "payload": {}}\xff', "bad_json", "messages[3]: not UTF-8"),
]


@pytest.mark.parametrize(("line", "code", "starts"), BAD_FOURTH_LINES)
async def test_a_bad_line_is_400_naming_it_and_nothing_is_submitted(
    listener: Harness, line: bytes, code: str, starts: str
) -> None:
    """Not JSON, an unknown field, a wrong type, NaN, not UTF-8: 400 naming messages[3]."""
    body = lines(EMAIL, EMAIL, SMS) + line + b"\n" + lines(SMS)
    answer = await post(listener.app, body)
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(starts)
    if b"colour" in line:
        assert "colour" in error["message"]
    assert listener.submit.received == []


async def test_a_line_cannot_reach_beyond_its_own_place(listener: Harness) -> None:
    """A line that would close the messages and name another command is refused whole."""
    sneaky = b'{"target": "email", "payload": {}}]}, "cmd": "pause", "args": {"name": "email"'
    answer = await post(listener.app, lines(EMAIL) + sneaky + b"\n")
    assert answer.status == 400
    assert answer.json()["error"]["message"].startswith("messages[1]: not valid JSON")
    assert listener.submit.received == []


async def test_a_json_body_that_is_not_an_array_is_400(listener: Harness) -> None:
    answer = await post(listener.app, json.dumps(EMAIL).encode(), content_type="application/json")
    assert answer.status == 400
    assert answer.json()["error"] == {
        "code": "bad_request",
        "message": "the body is a JSON array of messages",
    }


async def test_another_content_type_is_415(listener: Harness) -> None:
    answer = await post(listener.app, lines(EMAIL), content_type="text/plain")
    assert answer.status == 415
    assert listener.submit.received == []


async def test_a_body_over_the_limit_is_413_and_never_reaches_the_handler() -> None:
    """The listener's max_body_bytes holds for the intake route as for webhooks."""
    listener = harness(max_body_bytes=PositiveInt(1024))
    body = lines(*[EMAIL] * 20)
    assert len(body) > 1024
    answer = await post(listener.app, body)
    assert answer.status == 413
    assert listener.submit.received == []


async def test_more_messages_than_one_submit_carries_is_413_too_many() -> None:
    """MAX_MESSAGES_PER_SUBMIT + 1 lines: refused before any is read, as too_many."""
    listener = harness(max_body_bytes=PositiveInt(1 << 20))
    answer = await post(listener.app, b"{}\n" * (MAX_MESSAGES_PER_SUBMIT + 1))
    assert answer.status == 413
    assert answer.json()["error"] == {
        "code": "too_many",
        "message": f"at most {MAX_MESSAGES_PER_SUBMIT} messages a request",
    }
    assert listener.submit.received == []


async def test_get_is_405(listener: Harness) -> None:
    answer = await post(listener.app, b"", method="GET")
    assert answer.status == 405
    assert answer.headers["allow"] == "POST"


# --- the handler's errors --------------------------------------------------------------


HANDLER_ERRORS = [
    (StoreError("database is locked"), 503, "store_unavailable"),
    (RequestError(ErrorCode.STORE_UNAVAILABLE, "the disk is full"), 503, "store_unavailable"),
    (RequestError(ErrorCode.UNKNOWN_TARGET, "messages[0]: unknown target"), 400, "unknown_target"),
    (RequestError(ErrorCode.INVALID_PAYLOAD, "messages[0]: no subject"), 400, "invalid_payload"),
    (RequestError(ErrorCode.KEY_REUSED, "messages[0]: key reused"), 409, "key_reused"),
]


@pytest.mark.parametrize(("failure", "status", "code"), HANDLER_ERRORS)
async def test_the_handlers_errors_keep_their_codes(
    listener: Harness, failure: Exception, status: int, code: str
) -> None:
    """The store down is 503 with Retry-After; a refused request is its code's status."""
    listener.submit.failure = failure
    answer = await post(listener.app, lines(EMAIL))
    assert answer.status == status
    assert answer.json()["error"]["code"] == code
    assert ("retry-after" in answer.headers) == (status == 503)
    if isinstance(failure, RequestError):
        assert answer.json()["error"]["message"] == failure.message
    else:  # the store's own words stay in the daemon
        assert "locked" not in answer.body.decode()


# --- configuration ---------------------------------------------------------------------


def structure(raw: dict[str, Any]) -> IntakeSettings:
    return converter().structure(raw, IntakeSettings)


def test_settings_read_producers_with_send_as_the_default_role() -> None:
    settings = structure(
        {
            "enabled": True,
            "producers": {
                "platform": {"token": {"env": "PLATFORM_TOKEN"}},
                "ops": {"token": {"credential": "ops-token"}, "role": "operate"},
            },
        }
    )
    assert settings.producers == {
        "platform": Producer(SecretRef(env="PLATFORM_TOKEN")),
        "ops": Producer(SecretRef(credential="ops-token"), "operate"),
    }
    assert settings.producers["platform"].role == "send"


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ({"enabled": True}, "at least one producer"),
        ({"producers": {"p": {"token": {"env": "T"}, "role": "admin"}}}, "admin"),
        ({"producers": {"p": {"token": "s3cret-inline"}}}, "never inline values"),
        ({"producers": {"Bad Name": {"token": {"env": "T"}}}}, "a-z, 0-9"),
    ],
)
def test_settings_refuse_what_cannot_work(raw: dict[str, Any], said: str) -> None:
    """Enabled with no producer, an unknown role, an inline token, a bad name."""
    with pytest.raises(cattrs.BaseValidationError) as caught:
        structure(raw)
    text = "\n".join(str(p) for p in problems(caught.value, "intake"))
    assert said in text
    assert "s3cret-inline" not in text


def test_producers_read_their_tokens_and_compare_by_digest() -> None:
    settings = IntakeSettings(
        True,
        {
            "platform": Producer(SecretRef(env="PLATFORM_TOKEN")),
            "ops": Producer(SecretRef(env="OPS_TOKEN"), "operate"),
        },
    )
    table = producers(settings, {"PLATFORM_TOKEN": SEND_TOKEN, "OPS_TOKEN": OPERATE_TOKEN})
    assert [(c.name, c.role) for c in table.credentials] == [
        ("ops", Role.OPERATE),
        ("platform", Role.SEND),
    ]
    assert SEND_TOKEN not in repr(table)
    found = table.identify(f"Bearer {SEND_TOKEN}")
    assert isinstance(found, Credential) and found.name == "platform"


def test_a_missing_short_or_shared_token_is_a_config_error_naming_each() -> None:
    """Every problem at once, by key path; no token's text in any of them."""
    settings = IntakeSettings(
        True,
        {
            "a": Producer(SecretRef(env="A")),
            "b": Producer(SecretRef(env="B")),
            "c": Producer(SecretRef(env="C")),
            "d": Producer(SecretRef(env="MISSING")),
        },
    )
    environ = {"A": SEND_TOKEN, "B": SEND_TOKEN, "C": "short"}
    with pytest.raises(ConfigError) as caught:
        producers(settings, environ)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("intake.producers.b.token", "the same token as producer 'a'"),
        ("intake.producers.c.token", "shorter than 16 characters: use a long random token"),
        ("intake.producers.d.token", "secret not found (env MISSING)"),
    ]
    assert SEND_TOKEN not in str(caught.value) and "short" not in str(caught.value).split(":")[0]


# --- send --url ------------------------------------------------------------------------


def test_submit_over_http_sends_json_lines_with_the_bearer_token() -> None:
    """The request is what the route reads; its reply comes back as the socket's dict."""
    seen: list[httpx.Request] = []
    reply = {"accepted": [{"id": 4, "key": "welcome-1", "duplicate": False}], "refused": []}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=reply)

    got = submit_over_http(
        "https://node-2.internal:8787/",
        SEND_TOKEN,
        [EMAIL, SMS],
        transport=httpx.MockTransport(answer),
    )
    assert got == reply
    (request,) = seen
    assert str(request.url) == "https://node-2.internal:8787/v1/messages"
    assert request.headers["authorization"] == f"Bearer {SEND_TOKEN}"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(x) for x in request.content.splitlines()] == [EMAIL, SMS]


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (
            httpx.Response(400, json={"error": {"code": "bad_args", "message": "m[0]"}}),
            RequestError,
            ErrorCode.BAD_ARGS,
        ),
        (
            httpx.Response(401, json={"error": {"code": "forbidden", "message": "no"}}),
            RequestError,
            ErrorCode.FORBIDDEN,
        ),
        (httpx.Response(413, text="too large\n"), RequestError, ErrorCode.TOO_MANY),
        (httpx.Response(429, text="too many requests\n"), RequestError, ErrorCode.BUSY),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), ControlError, None),
        (httpx.Response(200, text="ok"), ControlError, None),
    ],
)
def test_submit_over_http_raises_as_the_socket_client_does(
    response: httpx.Response, error: type[Exception], code: ErrorCode | None
) -> None:
    """The listener's error replies are RequestErrors with their codes; anything else is not."""
    with pytest.raises(error) as caught:
        submit_over_http(
            "http://n", SEND_TOKEN, [EMAIL], transport=httpx.MockTransport(lambda r: response)
        )
    if code is not None:
        assert isinstance(caught.value, RequestError) and caught.value.code == code
    assert SEND_TOKEN not in str(caught.value)


def test_submit_over_http_unreachable_is_a_control_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ControlError, match="cannot reach http://n/v1/messages"):
        submit_over_http("http://n", SEND_TOKEN, [EMAIL], transport=httpx.MockTransport(refuse))


def test_the_token_comes_from_the_environment() -> None:
    assert token_from_env("TOKEN", {"TOKEN": f" {SEND_TOKEN}\n"}) == SEND_TOKEN
    with pytest.raises(UsageError, match=r"set \$TOKEN"):
        token_from_env("TOKEN", {})
    assert endpoint("https://h/v1/messages/") == "https://h/v1/messages"
