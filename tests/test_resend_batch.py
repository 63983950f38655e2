"""Resend batch sending (opt-in): one /emails/batch request, one outcome per email."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import resend
from resend.http_client_requests import RequestsClient

from ringbearer import ConfigError
from ringbearer._config import parse
from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Scope, Taken
from ringbearer._secrets import SecretRef
from ringbearer.integrations import ResendSettings, _base, provider_kinds

from .kit import Sim, answer, envelope, in_thread, mock_context, retry
from .kit import sim_fixture as sim_fixture
from .test_sdk_fidelity import assert_same_request, json_body

KEYS = {"RESEND": "re_batch_5ecret"}
SINGLE = ResendSettings(api_key=SecretRef(env="RESEND"))
BATCH = attrs.evolve(SINGLE, batch_size=10, batch_wait_ms=50)
EMAIL: dict[str, Any] = {
    "from": "Studio <hello@studio.example>",
    "to": ["ann@example.com"],
    "subject": "Your gallery is ready",
    "text": "Hello!",
}
TAGS = [{"name": "category", "value": "gallery"}]
HELD = Retry(
    "sent next time: another email in the batch had to go alone",
    taken=Taken.NO,
    after=0.0,
    scope=Scope.MESSAGE,
)


@pytest.fixture
def sim_seed() -> int:
    return 11


def emails(count: int, **changes: Any) -> list[Envelope]:
    """``count`` first-attempt envelopes, each its own key and subject."""
    return [
        envelope({**EMAIL, "subject": f"Gallery {i}"}, key=f"msg-{i:04}", message_id=i, **changes)
        for i in range(1, count + 1)
    ]


async def send(adapter: Any, envelopes: Sequence[Envelope]) -> list[Outcome]:
    async with adapter.open_lane() as lane:
        assert isinstance(lane, _base.BatchLane)
        outcomes: list[Outcome] = await lane.deliver_batch(envelopes)
        return outcomes


async def sim_send(
    sim: Sim, envelopes: Sequence[Envelope], settings: ResendSettings = BATCH
) -> list[Outcome]:
    adapter = provider_kinds()["resend"].build(settings, sim.context("resend", KEYS))
    return await send(adapter, envelopes)


async def test_first_attempts_go_as_one_batch(sim: Sim) -> None:
    """Five first-attempt emails are one permissive /emails/batch request and five ids."""
    batch = emails(5)
    outcomes = await sim_send(sim, batch)
    assert all(isinstance(o, Delivered) and o.provider_id for o in outcomes), outcomes
    assert len({o.provider_id for o in outcomes if isinstance(o, Delivered)}) == 5
    (seen,) = await sim.requests("resend")
    assert (seen["method"], seen["path"]) == ("POST", "/emails/batch")
    assert seen["headers"]["x-batch-validation"] == "permissive"
    assert seen["headers"]["idempotency-key"].startswith("batch-")
    assert [email["subject"] for email in json_body(seen)] == [f"Gallery {i}" for i in range(1, 6)]


async def test_batch_replay_gives_the_same_ids(sim: Sim) -> None:
    """The same batch again carries the same key, and Resend answers with the same ids."""
    first = await sim_send(sim, emails(3))
    again = await sim_send(sim, emails(3))
    assert first == again
    keys = {seen["headers"]["idempotency-key"] for seen in await sim.requests("resend")}
    assert len(keys) == 1


async def test_refused_email_is_permanent_the_rest_delivered(sim: Sim) -> None:
    """Permissive validation: the refused email is Permanent in Resend's words, the others go."""
    batch = emails(3)
    batch[1] = attrs.evolve(batch[1], payload={**EMAIL, "to": "@example.com"})
    outcomes = await sim_send(sim, batch)
    assert isinstance(outcomes[0], Delivered) and isinstance(outcomes[2], Delivered)
    assert outcomes[0].provider_id != outcomes[2].provider_id
    refused = outcomes[1]
    assert isinstance(refused, Permanent)
    assert "Invalid `to` field" in refused.reason


async def test_rate_limited_batch_retries_every_email(sim: Sim) -> None:
    """A 429 refuses the whole batch: every email waits its Retry-After, not taken."""
    await sim.faults("resend", storm=True, retry_after=5)
    outcomes = await sim_send(sim, emails(4))
    assert all(retry(Taken.NO, after=5.0)(o) for o in outcomes), outcomes


async def test_a_retry_goes_alone_under_its_own_key(sim: Sim) -> None:
    """A retried email is sent alone on /emails with its key; the others wait for next time."""
    batch = emails(3)
    batch[1] = attrs.evolve(batch[1], attempts=1)
    outcomes = await sim_send(sim, batch)
    assert isinstance(outcomes[1], Delivered)
    assert (outcomes[0], outcomes[2]) == (HELD, HELD)
    (seen,) = await sim.requests("resend")
    assert seen["path"] == "/emails"
    assert seen["headers"]["idempotency-key"] == "msg-0002"
    assert "x-batch-validation" not in seen["headers"]
    assert json_body(seen)["subject"] == "Gallery 2"


async def test_an_email_with_tags_goes_alone(sim: Sim) -> None:
    """An email with tags (maybe unsupported in batches) is sent alone on /emails, tags and all."""
    batch = emails(3)
    batch[1] = attrs.evolve(batch[1], payload={**batch[1].payload, "tags": TAGS})
    outcomes = await sim_send(sim, batch)
    assert isinstance(outcomes[1], Delivered)
    assert (outcomes[0], outcomes[2]) == (HELD, HELD)
    (seen,) = await sim.requests("resend")
    assert (seen["path"], seen["headers"]["idempotency-key"]) == ("/emails", "msg-0002")
    assert json_body(seen)["tags"] == TAGS


def test_the_actor_is_told_which_emails_go_alone() -> None:
    """The batching limits single out a retry and an email with tags, and nothing else."""
    ctx, _ = mock_context(KEYS, answer(200, {"id": "re-1"}))
    limits = provider_kinds()["resend"].build(BATCH, ctx).batching
    assert limits is not None
    assert not limits.alone(envelope(EMAIL))
    assert not limits.alone(envelope({**EMAIL, "tags": []}))
    assert limits.alone(envelope({**EMAIL, "tags": TAGS}))
    assert limits.alone(envelope(EMAIL, attempts=1))


async def test_one_email_is_one_email_request(sim: Sim) -> None:
    """A gathered batch of one is today's /emails request, under the message's key."""
    (outcome,) = await sim_send(sim, emails(1))
    assert isinstance(outcome, Delivered)
    (seen,) = await sim.requests("resend")
    assert (seen["path"], seen["headers"]["idempotency-key"]) == ("/emails", "msg-0001")


async def test_batch_size_one_is_todays_adapter() -> None:
    """batch_size 1 (the default) builds the one-request adapter: no gathering, an HttpLane."""
    ctx, sent = mock_context(KEYS, answer(200, {"id": "re-1"}))
    adapter = provider_kinds()["resend"].build(SINGLE, ctx)
    assert adapter.batching is None
    async with adapter.open_lane() as lane:
        assert isinstance(lane, _base.HttpLane)
        assert await lane.deliver(envelope(EMAIL)) == Delivered("re-1")
    (request,) = sent
    assert str(request.url) == "https://api.resend.com/emails"
    assert request.headers["idempotency-key"] == "msg-0001"
    batching = provider_kinds()["resend"].build(BATCH, ctx).batching
    assert batching == _base.BatchLimits(max_size=10, max_wait=0.05)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"data": [{"id": "a"}]}, "malformed answer"),  # three sent, one id
        ({"data": [{"id": "a"}, {"id": "b"}], "errors": [{"index": 7, "message": "x"}]}, "malf"),
        ({"data": [{"id": "a"}, {"id": "b"}, {"id": ""}]}, "malformed answer"),
        ({"id": "a"}, "malformed answer"),
    ],
)
async def test_ids_that_do_not_add_up_are_malformed(body: Mapping[str, Any], words: str) -> None:
    """A 200 whose ids and errors do not account for every email: each may have been taken."""
    ctx, _ = mock_context(KEYS, answer(200, body))
    outcomes = await send(provider_kinds()["resend"].build(BATCH, ctx), emails(3))
    assert all(isinstance(o, Retry) and o.taken is Taken.MAYBE for o in outcomes), outcomes
    assert all(words in o.reason for o in outcomes if isinstance(o, Retry))


@pytest.mark.parametrize(
    ("status", "name", "expect"),
    [
        (429, "daily_quota_exceeded", retry(Taken.NO, after=3600.0)),
        (500, "application_error", retry(Taken.MAYBE)),
        (409, "concurrent_idempotent_requests", retry(Taken.MAYBE)),
        (403, "invalid_api_key", lambda o: isinstance(o, Permanent) and o.status == 403),
    ],
)
async def test_batch_errors_classify_as_one_emails(status: int, name: str, expect: Any) -> None:
    """A non-2xx answer to a batch is classified as for one email, for every email."""
    error = {"statusCode": status, "name": name, "message": f"{name}!"}
    ctx, _ = mock_context(KEYS, answer(status, error))
    outcomes = await send(provider_kinds()["resend"].build(BATCH, ctx), emails(2))
    assert len(outcomes) == 2 and all(expect(o) for o in outcomes), outcomes


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("batch_size = 0", "'batch_size' must be >= 1"),
        ("batch_size = 101", "'batch_size' must be <= 100"),
        ("batch_wait_ms = -1", "'batch_wait_ms' must be >= 0"),
        ("batch_wait_ms = 60001", "'batch_wait_ms' must be <= 60000"),
    ],
)
def test_batch_settings_are_bounded(tmp_path: Path, line: str, words: str) -> None:
    """batch_size is 1..100 and batch_wait_ms 0..60000, checked when the config is read."""
    text = f'[integrations.re]\nkind = "resend"\napi_key = {{ env = "K" }}\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path / "config.toml")
    assert words in "\n".join(str(problem) for problem in caught.value.problems)


def test_batch_settings_parse(tmp_path: Path) -> None:
    """In-bounds batching settings are read into ResendSettings."""
    text = '[integrations.re]\nkind = "resend"\napi_key = { env = "K" }\nbatch_size = 100\n'
    config = parse(text, tmp_path / "config.toml")
    settings = config.integrations["re"].provider
    assert (settings.batch_size, settings.batch_wait_ms) == (100, 200)


async def test_batch_matches_resend_sdk(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """/emails/batch: the SDK's Batch.send and ours agree on method, path, auth and bodies."""
    monkeypatch.setattr(resend, "api_key", KEYS["RESEND"])
    monkeypatch.setattr(resend, "api_url", sim.prefix("resend"))
    monkeypatch.setattr(resend, "default_http_client", RequestsClient(timeout=5))
    batch = emails(2)
    bodies: Any = [env.payload for env in batch]
    options: Any = {"idempotency_key": "sdk-batch", "batch_validation": "permissive"}
    sent = await in_thread(lambda: resend.Batch.send(bodies, options))
    assert len(sent["data"]) == 2

    outcomes = await sim_send(sim, batch)
    assert all(isinstance(o, Delivered) for o in outcomes)

    sdk, ours = await sim.requests("resend")
    assert_same_request(sdk, ours)
    assert ours["auth"] == "Bearer"
    for header in ("accept", "x-batch-validation"):
        assert ours["headers"][header] == sdk["headers"][header], header
    assert json_body(ours) == json_body(sdk) == json.loads(json.dumps(bodies))
