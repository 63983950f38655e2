"""Mixpanel and Amplitude: batching adapters against MockTransport and the real simulator."""

from __future__ import annotations

import base64
import functools
import gzip
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
import trio

from ringbearer import ConfigError, _converter
from ringbearer._config import parse
from ringbearer._delivery import (
    Delivered,
    Envelope,
    Outcome,
    Permanent,
    Priority,
    Retry,
    Scope,
    Taken,
)
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import SecretRef
from ringbearer.integrations import (
    Adapter,
    BatchLimits,
    HttpAdapter,
    provider_kinds,
)
from ringbearer.integrations.analytics import (
    PAUSE_SECONDS,
    Amplitude,
    AmplitudeSettings,
    Mixpanel,
    MixpanelSettings,
    amplitude_insert_id,
    mixpanel_insert_id,
)
from ringbearer.simulator._amplitude import Amplitude as AmplitudeSim
from ringbearer.simulator._mixpanel import Geolocation, GeoSource
from ringbearer.simulator._mixpanel import Mixpanel as MixpanelSim

from . import kit
from .kit import Handler, Sim, answer, context, permanent, retry
from .kit import sim_fixture as sim_fixture

KEYS = {"MP_TOKEN": "mp-5ecret-token", "MP_SA": "mp-5ecret-sa", "AMP": "amp5ecretkey"}
MIXPANEL = MixpanelSettings(project_token=SecretRef(env="MP_TOKEN"))
MIXPANEL_SA = MixpanelSettings(
    service_account_username="sa.user",
    service_account_secret=SecretRef(env="MP_SA"),
    project_id="12345",
)
AMPLITUDE = AmplitudeSettings(api_key=SecretRef(env="AMP"))
SIGNUP = {"event": "Signup", "distinct_id": "user-1", "properties": {"plan": "pro"}}
ORDER = {"event_type": "Order", "user_id": "user-1", "event_properties": {"total": 12}}
P = TypeVar("P")


def envelope(number: int, payload: Mapping[str, Any]) -> Envelope:
    """Message ``number`` of a batch, keyed ``key-{number:04d}``."""
    return kit.envelope(
        payload,
        key=f"key-{number:04d}",
        message_id=number,
        target="analytics",
        priority=Priority.BULK,
    )


def provider_of(adapter: Adapter, kind: type[P]) -> P:
    """The provider behind an adapter that a row built (an HttpAdapter)."""
    assert isinstance(adapter, HttpAdapter) and isinstance(adapter.provider, kind)
    return adapter.provider


Rig = kit.BatchRig


@pytest.fixture
async def rig_for(nursery: trio.Nursery) -> Callable[..., Any]:
    """``rig_for(kind, settings, handler=None, base_url=None)``: an adapter with one open lane."""
    return functools.partial(kit.open_batch_rig, nursery, KEYS)


MP_OK = answer(200, {"code": 200, "num_records_imported": 2, "status": "OK"})
AMP_OK = answer(200, {"code": 200, "events_ingested": 2, "payload_size_bytes": 9})


def basic(request: httpx.Request) -> str:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


@pytest.fixture
def sim_seed() -> int:
    return 3


def mixpanel_sim(sim: Sim) -> MixpanelSim:
    logic = sim.logic("mixpanel")
    assert isinstance(logic, MixpanelSim)
    return logic


def amplitude_sim(sim: Sim) -> AmplitudeSim:
    logic = sim.logic("amplitude")
    assert isinstance(logic, AmplitudeSim)
    return logic


# --- the table and settings ------------------------------------------------------


def test_rows_are_batching_analytics_kinds() -> None:
    """Both kinds are analytics rows whose adapters batch, by default and as configured."""
    kinds = provider_kinds()
    assert (kinds["mixpanel"].family, kinds["amplitude"].family) == ("analytics", "analytics")
    mixpanel = kinds["mixpanel"].build(MIXPANEL, context(KEYS, MP_OK))
    amplitude = kinds["amplitude"].build(AMPLITUDE, context(KEYS, AMP_OK))
    assert mixpanel.batching == BatchLimits(max_size=1000, max_wait=1.0)
    assert amplitude.batching == BatchLimits(max_size=200, max_wait=1.0)
    tuned = attrs.evolve(AMPLITUDE, batch_size=2000, batch_wait_ms=250)
    assert kinds["amplitude"].build(tuned, context(KEYS, AMP_OK)).batching == BatchLimits(
        2000, 0.25
    )


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("mixpanel", {"project_token": {"env": "T"}, "base_url": "https://api-eu.mixpanel.com"}),
        (
            "mixpanel",
            {
                "service_account_username": "sa.user",
                "service_account_secret": {"credential": "mixpanel"},
                "project_id": "12345",
                "batch_size": 2000,
                "batch_wait_ms": 0,
            },
        ),
        ("amplitude", {"api_key": {"env": "K"}, "endpoint": "batch", "min_id_length": 3}),
    ],
)
def test_settings_structure_with_project_converter(kind: str, raw: dict[str, Any]) -> None:
    """Each settings form structures from TOML-shaped data with the project's converter."""
    settings_type = provider_kinds()[kind].settings_type
    assert isinstance(_converter.make().structure(raw, settings_type), settings_type)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ('kind = "mixpanel"', "integrations.mp: Mixpanel needs credentials: project_token, or"),
        (
            'kind = "mixpanel"\nproject_token = { env = "T" }\nproject_id = "1"',
            "integrations.mp: set either project_token or a service account, not both "
            "(remove project_id",
        ),
        (
            'kind = "mixpanel"\nservice_account_username = "u"\nproject_id = "1"',
            "integrations.mp: a Mixpanel service account also needs service_account_secret",
        ),
        ('kind = "mixpanel"\nproject_token = "inline"', "integrations.mp.project_token: secrets"),
        (
            'kind = "mixpanel"\nproject_token = { env = "T" }\nbatch_size = 2001',
            "integrations.mp: 'batch_size' must be <= 2000",
        ),
        (
            'kind = "mixpanel"\nproject_token = { env = "T" }\nbatch_size = 0',
            "integrations.mp: 'batch_size' must be >= 1",
        ),
        (
            'kind = "mixpanel"\nproject_token = { env = "T" }\nbatch_wait_ms = -1',
            "integrations.mp: 'batch_wait_ms' must be >= 0",
        ),
        (
            'kind = "mixpanel"\nproject_token = { env = "T" }\nproject_id = 12345',
            "integrations.mp.project_id: expected a string",
        ),
        ('kind = "amplitude"\napi_key = { env = "K" }\nendpoint = "v1"', "mp.endpoint"),
        ('kind = "amplitude"\napi_key = { env = "K" }\nmin_id_length = 0', "min_id_length"),
    ],
)
def test_settings_reject_bad_config(tmp_path: Path, section: str, words: str) -> None:
    """Missing, mixed or half credentials and out-of-bounds batching are config errors."""
    with pytest.raises(ConfigError) as caught:
        parse(f"[integrations.mp]\n{section}\n", tmp_path / "config.toml")
    found = "\n".join(str(problem) for problem in caught.value.problems)
    assert words in found


# --- Mixpanel requests -------------------------------------------------------------


async def test_mixpanel_token_request(rig_for: Any) -> None:
    """POST /import?strict=1&ip=0, the token as Basic user, a JSON array with derived fields."""
    rig = await rig_for("mixpanel", MIXPANEL, MP_OK)
    outcomes = await rig.deliver(
        envelope(1, SIGNUP), envelope(2, {**SIGNUP, "time": 1_650_000_000.25})
    )
    assert outcomes == [Delivered("key-0001"), Delivered("key-0002")]
    [request] = rig.sent
    assert (request.method, str(request.url)) == (
        "POST",
        "https://api.mixpanel.com/import?strict=1&ip=0",
    )
    assert basic(request) == "mp-5ecret-token:"
    assert request.headers["content-type"] == "application/json"
    assert rig.bodies()[0] == [
        {
            "event": "Signup",
            "properties": {
                "plan": "pro",
                "time": 1_700_000_000_000,
                "distinct_id": "user-1",
                "$insert_id": "key-0001",
            },
        },
        {
            "event": "Signup",
            "properties": {
                "plan": "pro",
                "time": 1_650_000_000_250,
                "distinct_id": "user-1",
                "$insert_id": "key-0002",
            },
        },
    ]


async def test_mixpanel_service_account_request(rig_for: Any) -> None:
    """A service account authenticates as user:secret and names its project_id."""
    rig = await rig_for("mixpanel", MIXPANEL_SA, MP_OK)
    await rig.deliver(envelope(1, SIGNUP))
    [request] = rig.sent
    assert str(request.url) == "https://api.mixpanel.com/import?strict=1&ip=0&project_id=12345"
    assert basic(request) == "sa.user:mp-5ecret-sa"


async def test_mixpanel_region_and_sandbox_hosts(rig_for: Any) -> None:
    """base_url picks the residency host; a sandbox prefix replaces it."""
    eu = await rig_for(
        "mixpanel", attrs.evolve(MIXPANEL, base_url="https://api-eu.mixpanel.com"), MP_OK
    )
    await eu.deliver(envelope(1, SIGNUP))
    assert str(eu.sent[0].url) == "https://api-eu.mixpanel.com/import?strict=1&ip=0"
    adapter = provider_kinds()["mixpanel"].build(
        MIXPANEL, context(KEYS, MP_OK, base_url_override="http://sim:1/mixpanel")
    )
    provider = provider_of(adapter, Mixpanel)
    assert provider.url == "http://sim:1/mixpanel/import?strict=1&ip=0"


async def test_mixpanel_events_are_not_geolocated_to_the_daemon(rig_for: Any) -> None:
    """Every request says ip=0 (not by the sender's address); an event's own ip is kept."""
    rig = await rig_for("mixpanel", MIXPANEL_SA, MP_OK)
    located = {**SIGNUP, "properties": {"plan": "pro", "ip": "203.0.113.7"}}
    await rig.deliver(envelope(1, SIGNUP), envelope(2, located))
    [request] = rig.sent
    assert request.url.params.get_list("ip") == ["0"]
    plain, own = rig.bodies()[0]
    assert "ip" not in plain["properties"]
    assert own["properties"]["ip"] == "203.0.113.7"


@pytest.mark.parametrize(
    ("key", "insert_id"),
    [
        ("0b4f6a0e9c3d4f8bb2d1e5f6a7b8c9d0", "0b4f6a0e9c3d4f8bb2d1e5f6a7b8c9d0"),
        ("order-88231-completed", "order-88231-completed"),
        ("order 88231/completed", "hash"),
        ("x" * 37, "hash"),
        ("null", "hash"),
    ],
)
def test_mixpanel_insert_id_fits_mixpanels_rule(key: str, insert_id: str) -> None:
    """A key that fits $insert_id's rule is used as is; any other maps to a stable hash."""
    made = mixpanel_insert_id(key)
    if insert_id == "hash":
        assert len(made) == 32 and made == mixpanel_insert_id(key) != key
        assert made != mixpanel_insert_id(key + "!")
    else:
        assert made == insert_id


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"distinct_id": "u"}, "'event' is required"),
        ({"event": "E"}, "'distinct_id' is required"),
        ({**SIGNUP, "properties": {"time": 1}}, "use the top-level 'time'"),
        ({**SIGNUP, "properties": {"$insert_id": "x"}}, "idempotency key"),
        ({**SIGNUP, "time": 1_700_000_000_000}, "'time' must be seconds"),
        ({**SIGNUP, "time": "yesterday"}, "'time' must be seconds"),
        ({**SIGNUP, "time": True}, "'time' must be seconds"),
        ({**SIGNUP, "token": "t"}, "unknown field(s) 'token'"),
        ({**SIGNUP, "properties": {f"p{i}": i for i in range(252)}}, "at most 251"),
        ({**SIGNUP, "event": "e" * 256}, "at most 255"),
    ],
)
def test_mixpanel_payload_rejected(payload: dict[str, Any], words: str) -> None:
    """validate names the field that does not fit Mixpanel's payload schema."""
    adapter = provider_kinds()["mixpanel"].build(MIXPANEL, context(KEYS, MP_OK))
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate(payload)
    assert words in caught.value.message


async def test_invalid_payload_at_delivery_settles_alone(rig_for: Any) -> None:
    """An envelope whose payload no longer fits is Permanent; the rest of the batch goes out."""
    rig = await rig_for("mixpanel", MIXPANEL, MP_OK)
    outcomes = await rig.deliver(envelope(1, {"event": "E"}), envelope(2, SIGNUP))
    assert permanent("invalid payload: 'distinct_id' is required")(outcomes[0])
    assert outcomes[1] == Delivered("key-0002")
    assert len(rig.bodies()[0]) == 1
    only_bad = await rig.deliver(envelope(3, {"event": "E"}))
    assert isinstance(only_bad[0], Permanent) and len(rig.sent) == 1  # nothing left to send


MAYBE = retry(Taken.MAYBE, None, Scope.INTEGRATION)
UNAUTHORIZED = {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}


def delivered(outcome: Outcome) -> bool:
    return isinstance(outcome, Delivered) and outcome.provider_id in ("key-0001", "key-0002")


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (MP_OK, delivered),
        (answer(401, UNAUTHORIZED), permanent("HTTP 401: Invalid credentials")),
        (answer(403, {"code": 403, "error": "forbidden"}), permanent("HTTP 403: forbidden")),
        (answer(400, {"code": 400, "error": "cannot parse"}), permanent("HTTP 400: cannot parse")),
        (
            answer(429, {"code": 429, "error": "slow down"}),
            retry(Taken.NO, None, Scope.INTEGRATION),
        ),
        (answer(500, "oops"), MAYBE),
        (answer(502, "bad gateway"), MAYBE),
        (answer(503, "down", {"retry-after": "7"}), retry(Taken.MAYBE, 7.0, Scope.INTEGRATION)),
        (answer(200, "<html>ok</html>"), MAYBE),
    ],
)
async def test_mixpanel_answers(
    rig_for: Any, handler: Handler, expect: Callable[[Outcome], bool]
) -> None:
    """Every documented whole-request answer maps to the same outcome for each event."""
    rig = await rig_for("mixpanel", MIXPANEL, handler)
    outcomes = await rig.deliver(envelope(1, SIGNUP), envelope(2, SIGNUP))
    assert all(expect(outcome) for outcome in outcomes), outcomes


async def test_mixpanel_partial_failure(rig_for: Any) -> None:
    """A strict 400 fails the listed records with Mixpanel's words; the rest WERE imported."""
    body = {
        "code": 400,
        "error": "some data points in the request failed validation",
        "status": "Bad Request",
        "num_records_imported": 1,
        "failed_records": [
            {
                "index": 0,
                "insert_id": "key-0001",
                "field": "properties.time",
                "message": "'properties.time' is invalid: must be specified as seconds since epoch",
            },
            {"insert_id": "key-0003", "field": "event", "message": "'event' is invalid"},
        ],
    }
    rig = await rig_for("mixpanel", MIXPANEL, answer(400, body))
    first, second, third = await rig.deliver(*(envelope(n, SIGNUP) for n in (1, 2, 3)))
    assert first == Permanent(
        "HTTP 400: properties.time: 'properties.time' is invalid: must be specified as "
        "seconds since epoch",
        status=400,
    )
    assert second == Delivered("key-0002")
    assert permanent("HTTP 400: event: 'event' is invalid")(third)  # found by its insert id


async def test_auth_failure_hides_the_secret(rig_for: Any) -> None:
    """A provider that echoes the API key gets it scrubbed from the reason."""
    body = {"code": 400, "error": "Invalid API key: amp5ecretkey"}
    rig = await rig_for("amplitude", AMPLITUDE, answer(400, body))
    [outcome] = await rig.deliver(envelope(1, ORDER))
    assert isinstance(outcome, Permanent)
    assert "Invalid API key" in outcome.reason and "amp5ecretkey" not in outcome.reason


# --- 413: shrinking the requests -----------------------------------------------------


async def test_too_large_halves_the_requests_until_they_pass(rig_for: Any) -> None:
    """A 413 retries its events and halves later requests; successes double them back."""
    statuses = iter([413, 200, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"code": 200, "num_records_imported": 1, "status": "OK"}
        return httpx.Response(next(statuses), json=body)

    settings = attrs.evolve(MIXPANEL, batch_size=4)
    rig = await rig_for("mixpanel", settings, handler)
    batch = [envelope(n, SIGNUP) for n in range(1, 5)]
    refused = await rig.deliver(*batch)
    assert all(retry(Taken.NO, 0.0, Scope.MESSAGE)(o) for o in refused)
    assert all(o.status == 413 for o in refused if isinstance(o, Retry))
    halved = await rig.deliver(*batch)
    assert halved[:2] == [Delivered("key-0001"), Delivered("key-0002")]
    for held in halved[2:]:
        assert retry(Taken.NO, 0.0, Scope.MESSAGE)(held)
        assert isinstance(held, Retry) and held.reason.startswith("held back")
    assert [len(body) for body in rig.bodies()] == [4, 2]
    assert all(isinstance(o, Delivered) for o in await rig.deliver(*batch[2:]))
    assert all(isinstance(o, Delivered) for o in await rig.deliver(*batch))
    assert [len(body) for body in rig.bodies()] == [4, 2, 2, 4]  # back to the full size


async def test_too_large_single_event_is_permanent(rig_for: Any) -> None:
    """A 413 for one event alone cannot be split: it is Permanent."""
    body = {"code": 413, "error": "request exceeds max limit of 2097152 bytes"}
    rig = await rig_for("mixpanel", MIXPANEL, answer(413, body))
    [outcome] = await rig.deliver(envelope(1, SIGNUP))
    assert permanent("the event alone is over the size limit")(outcome)


# --- Amplitude requests ------------------------------------------------------------


async def test_amplitude_request(rig_for: Any) -> None:
    """POST /2/httpapi: the key and events in one JSON body, insert_id from the key."""
    rig = await rig_for("amplitude", AMPLITUDE, AMP_OK)
    with_time = {**ORDER, "device_id": "device-9", "time": 1_650_000_000_123}
    outcomes = await rig.deliver(envelope(1, ORDER), envelope(2, with_time))
    assert outcomes == [Delivered("key-0001"), Delivered("key-0002")]
    [request] = rig.sent
    assert (request.method, str(request.url)) == ("POST", "https://api2.amplitude.com/2/httpapi")
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert rig.bodies()[0] == {
        "api_key": "amp5ecretkey",
        "events": [
            {
                "event_type": "Order",
                "time": 1_700_000_000_000,
                "insert_id": "key-0001",
                "user_id": "user-1",
                "event_properties": {"total": 12},
            },
            {
                "event_type": "Order",
                "time": 1_650_000_000_123,
                "insert_id": "key-0002",
                "user_id": "user-1",
                "device_id": "device-9",
                "event_properties": {"total": 12},
            },
        ],
    }


async def test_amplitude_batch_endpoint_region_and_options(rig_for: Any) -> None:
    """endpoint="batch" posts to /batch on the configured host, with options.min_id_length."""
    settings = attrs.evolve(
        AMPLITUDE, endpoint="batch", base_url="https://api.eu.amplitude.com", min_id_length=2
    )
    rig = await rig_for("amplitude", settings, AMP_OK)
    await rig.deliver(envelope(1, {"event_type": "E", "user_id": "ab"}))
    assert str(rig.sent[0].url) == "https://api.eu.amplitude.com/batch"
    assert rig.bodies()[0]["options"] == {"min_id_length": 2}


def test_amplitude_insert_id() -> None:
    """A short printable key is the insert_id; a long or spaced one maps to a stable hash."""
    assert amplitude_insert_id("order-88231-completed") == "order-88231-completed"
    assert len(amplitude_insert_id("a b")) == 32
    assert amplitude_insert_id("k" * 65) == amplitude_insert_id("k" * 65) != "k" * 65


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"user_id": "user-1"}, "'event_type' is required"),
        ({"event_type": "E"}, "one of 'user_id' or 'device_id'"),
        ({"event_type": "E", "user_id": "abc"}, "at least 5 (min_id_length)"),
        ({"event_type": "E", "device_id": "0000-0000"}, "all zeros"),
        ({**ORDER, "time": 1_700_000_000}, "integer milliseconds"),
        ({**ORDER, "time": 1.7e12}, "integer milliseconds"),
        ({**ORDER, "event_properties": [1]}, "'event_properties' must be an object"),
        ({**ORDER, "insert_id": "x"}, "unknown field(s) 'insert_id'"),
    ],
)
def test_amplitude_payload_rejected(payload: dict[str, Any], words: str) -> None:
    """validate names the field that does not fit Amplitude's payload schema."""
    adapter = provider_kinds()["amplitude"].build(AMPLITUDE, context(KEYS, AMP_OK))
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate(payload)
    assert words in caught.value.message


def test_amplitude_min_id_length_setting_relaxes_the_check() -> None:
    """min_id_length lowers the id length the payload check asks for."""
    relaxed = attrs.evolve(AMPLITUDE, min_id_length=3)
    provider_kinds()["amplitude"].build(relaxed, context(KEYS, AMP_OK)).validate(
        {"event_type": "E", "user_id": "abc"}
    )


MISSING_KEY = {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}
BAD_KEY = {
    "code": 400,
    "error": "Invalid API key: amp5ecretkey",
    "events_with_invalid_fields": {"time": [0]},
}
NO_EVENTS_NAMED = {"code": 429, "error": "Too many requests", "throttled_events": []}


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (AMP_OK, delivered),
        (answer(200, {"code": 200}), MAYBE),
        (answer(400, MISSING_KEY), permanent("missing required field: api_key")),
        (answer(400, BAD_KEY), permanent("HTTP 400: Invalid API key: ***")),
        (answer(400, "bad request"), permanent("HTTP 400: bad request")),
        (answer(429, NO_EVENTS_NAMED), retry(Taken.NO, PAUSE_SECONDS, Scope.INTEGRATION)),
        (answer(429, "Too Many Requests"), retry(Taken.NO, PAUSE_SECONDS, Scope.INTEGRATION)),
        (answer(503, "Service Unavailable"), MAYBE),
        (
            answer(302, "", {"location": "https://api.amplitude.com/"}),
            permanent("redirects to https://api.amplitude.com/; check the integration's", 302),
        ),
        (answer(500, {"code": 500, "error": "boom"}), MAYBE),
        (answer(504, "gateway timeout"), MAYBE),
    ],
)
async def test_amplitude_answers(
    rig_for: Any, handler: Handler, expect: Callable[[Outcome], bool]
) -> None:
    """Every documented whole-request answer maps to the same outcome for each event."""
    rig = await rig_for("amplitude", AMPLITUDE, handler)
    outcomes = await rig.deliver(envelope(1, ORDER), envelope(2, ORDER))
    assert all(expect(outcome) for outcome in outcomes), outcomes


async def test_amplitude_invalid_events_are_permanent_and_the_rest_retried(rig_for: Any) -> None:
    """A 400 with index maps fails the listed events, naming the field; the rest go again."""
    body = {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": {"time": [0]},
        "events_with_missing_fields": {"event_type": [1]},
        "events_with_invalid_id_lengths": {"device_id": [2]},
        "silenced_events": [3],
    }
    rig = await rig_for("amplitude", AMPLITUDE, answer(400, body))
    outcomes = await rig.deliver(*(envelope(n, ORDER) for n in range(5)))
    assert permanent("invalid 'time' (events_with_invalid_fields)")(outcomes[0])
    assert permanent("missing 'event_type'")(outcomes[1])
    assert permanent("too short 'device_id'")(outcomes[2])
    assert permanent("silenced")(outcomes[3])
    assert retry(Taken.NO, 0.0, Scope.MESSAGE)(outcomes[4])


async def test_amplitude_throttled_answer(rig_for: Any) -> None:
    """A 429 drops events over daily quota, retries throttled ones after 30 s, the rest at once."""
    body = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_users": {"hot-user": 31},
        "throttled_devices": {},
        "throttled_events": [0, 1],
        "exceeded_daily_quota_users": {"spent-user": 500200},
    }
    rig = await rig_for("amplitude", AMPLITUDE, answer(429, body))
    outcomes = await rig.deliver(
        envelope(1, {**ORDER, "user_id": "hot-user"}),
        envelope(2, {**ORDER, "user_id": "spent-user"}),
        envelope(3, ORDER),
    )
    assert retry(Taken.NO, PAUSE_SECONDS, Scope.MESSAGE)(outcomes[0])
    assert outcomes[1] == Permanent(
        "HTTP 429: exceeded daily quota (user_id 'spent-user')", status=429
    )
    assert retry(Taken.NO, 0.0, Scope.MESSAGE)(outcomes[2])


async def test_amplitude_pauses_only_throttled_users(
    rig_for: Any, autojump_clock: trio.abc.Clock
) -> None:
    """After a 429 the throttled user's events wait unsent for 30 s; everyone else's go out."""
    throttled = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "throttled_users": {"hot-user": 31},
        "throttled_devices": {"hot-device": 31},
        "throttled_events": [0, 1],
    }
    answers = iter([(429, throttled)] + [(200, {"code": 200, "events_ingested": 1})] * 3)

    def handler(request: httpx.Request) -> httpx.Response:
        status, body = next(answers)
        return httpx.Response(status, json=body)

    rig = await rig_for("amplitude", AMPLITUDE, handler)
    hot = {**ORDER, "user_id": "hot-user"}
    by_device = {"event_type": "E", "device_id": "hot-device"}
    await rig.deliver(envelope(1, hot), envelope(2, by_device), envelope(3, ORDER))
    await trio.sleep(10)
    waiting_user, waiting_device, cold = await rig.deliver(
        envelope(1, hot), envelope(2, by_device), envelope(3, ORDER)
    )
    assert cold == Delivered("key-0003")
    for waiting in (waiting_user, waiting_device):
        assert isinstance(waiting, Retry) and "paused" in waiting.reason
        assert (waiting.taken, waiting.scope) == (Taken.NO, Scope.MESSAGE)
        assert waiting.after == pytest.approx(PAUSE_SECONDS - 10)
    assert [len(body["events"]) for body in rig.bodies()] == [3, 1]
    await trio.sleep(PAUSE_SECONDS - 10)
    assert await rig.deliver(envelope(1, hot), envelope(2, by_device)) == [
        Delivered("key-0001"),
        Delivered("key-0002"),
    ]
    assert [len(body["events"]) for body in rig.bodies()] == [3, 1, 2]


async def test_amplitude_pause_table_expires(autojump_clock: trio.abc.Clock) -> None:
    """Paused ids leave the table once their pause is over, so it does not grow."""
    adapter = provider_kinds()["amplitude"].build(AMPLITUDE, context(KEYS, AMP_OK))
    provider = provider_of(adapter, Amplitude)
    provider.pauses.hold([("user_id", "a"), ("device_id", "b")], trio.current_time() + 5)
    provider.build_batch([envelope(1, ORDER)])
    assert len(provider.pauses.until) == 2
    await trio.sleep(5)
    provider.build_batch([envelope(1, ORDER)])
    assert provider.pauses.until == {}


# --- against the real simulator --------------------------------------------------------


async def test_mixpanel_against_the_simulator(sim: Sim, rig_for: Any) -> None:
    """The simulator imports the valid events, refuses one from the future, and dedups a resend."""
    rig = await rig_for("mixpanel", MIXPANEL_SA, base_url=sim.prefix("mixpanel"))
    future = {**SIGNUP, "time": 4_000_000_000}
    batch = [envelope(1, SIGNUP), envelope(2, future), envelope(3, SIGNUP)]
    first, refused, third = await rig.deliver(*batch)
    assert (first, third) == (Delivered("key-0001"), Delivered("key-0003"))
    assert permanent("HTTP 400: properties.time: 'properties.time' is invalid")(refused)
    assert await rig.deliver(batch[0]) == [Delivered("key-0001")]  # a resend...
    logic = mixpanel_sim(sim)
    assert (logic.copies("key-0001"), logic.copies("key-0002"), logic.duplicates) == (2, 0, 1)
    seen = (await sim.client.get("/_sim/requests", params={"provider": "mixpanel"})).json()
    request = seen["mixpanel"][0]
    assert (request["path"], request["query"], request["auth"]) == (
        "/import",
        "strict=1&ip=0&project_id=12345",
        "Basic sa.user",
    )
    stats = (await sim.client.get("/_sim/stats", params={"provider": "mixpanel"})).json()
    assert stats["mixpanel"]["status_counts"] == {"400": 1, "200": 1}
    # Nothing the adapter sent would carry this host's city.
    assert len(logic.located) == 2 and logic.sender_located == 0
    assert logic.location("key-0001") == Geolocation(GeoSource.NONE)


async def test_mixpanel_simulator_geolocates_as_mixpanel_would(sim: Sim, rig_for: Any) -> None:
    """Without ip=0 an event gets the sender's location; an event's own ip beats both."""
    auth = ("token", "")

    def event(insert_id: str, **properties: Any) -> dict[str, Any]:
        return {
            **MP_EVENT,
            "properties": {**MP_EVENT["properties"], "$insert_id": insert_id, **properties},
        }

    await sim.client.post("/mixpanel/import?strict=1", json=[event("bare")], auth=auth)
    await sim.client.post("/mixpanel/import?strict=1&ip=0", json=[event("off")], auth=auth)
    form = {"data": json.dumps(event("sdk")), "verbose": "1", "ip": "0"}
    await sim.client.post("/mixpanel/import", data=form, auth=auth)
    own = [event("own", ip="203.0.113.7"), event("zero", ip="0")]
    await sim.client.post("/mixpanel/import?strict=1", json=own, auth=auth)
    logic = mixpanel_sim(sim)
    assert logic.location("bare") == Geolocation(GeoSource.SENDER)
    assert logic.location("off") == logic.location("sdk") == Geolocation(GeoSource.NONE)
    assert logic.location("own") == Geolocation(GeoSource.EVENT, "203.0.113.7")
    assert logic.location("zero") == Geolocation(GeoSource.NONE)
    assert logic.sender_located == 1
    rig = await rig_for("mixpanel", MIXPANEL, base_url=sim.prefix("mixpanel"))
    located = {**SIGNUP, "properties": {"ip": "203.0.113.7"}}
    assert await rig.deliver(envelope(1, SIGNUP), envelope(2, located)) == [
        Delivered("key-0001"),
        Delivered("key-0002"),
    ]
    assert logic.location("key-0001") == Geolocation(GeoSource.NONE)
    assert logic.location("key-0002") == Geolocation(GeoSource.EVENT, "203.0.113.7")
    assert logic.sender_located == 1  # still only the bare request's


async def test_mixpanel_simulator_refuses_bad_credentials(
    sim: Sim, rig_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong token, or a service account without its secret, gets Mixpanel's 401."""
    monkeypatch.setitem(KEYS, "MP_BAD", "invalid")
    bad = MixpanelSettings(project_token=SecretRef(env="MP_BAD"))
    rig = await rig_for("mixpanel", bad, base_url=sim.prefix("mixpanel"))
    [outcome] = await rig.deliver(envelope(1, SIGNUP))
    assert outcome == Permanent("HTTP 401: Invalid credentials", status=401)
    no_password = await sim.client.post(
        "/mixpanel/import", params={"project_id": "1"}, auth=("sa", ""), json=[]
    )
    assert no_password.json() == {
        "code": 401,
        "error": "Invalid credentials",
        "status": "Unauthorized",
    }


async def test_amplitude_against_the_simulator(
    sim: Sim, rig_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator ingests a batch, counts a resend per insert_id, and refuses a bad key."""
    rig = await rig_for("amplitude", AMPLITUDE, base_url=sim.prefix("amplitude"))
    batch = [envelope(1, ORDER), envelope(2, {"event_type": "E", "device_id": "dev-42"})]
    assert await rig.deliver(*batch) == [Delivered("key-0001"), Delivered("key-0002")]
    await rig.deliver(batch[0])
    logic = amplitude_sim(sim)
    assert (logic.copies("key-0001"), logic.copies("key-0002"), logic.duplicates) == (2, 1, 1)
    monkeypatch.setitem(KEYS, "AMP_BAD", "invalid")
    bad = await rig_for(
        "amplitude",
        AmplitudeSettings(api_key=SecretRef(env="AMP_BAD")),
        base_url=sim.prefix("amplitude"),
    )
    [outcome] = await bad.deliver(envelope(3, ORDER))
    assert permanent("HTTP 400: Invalid API key")(outcome)


async def test_amplitude_simulator_throttles_one_hot_user(sim: Sim, rig_for: Any) -> None:
    """Over 30 events/s for one user gets a real 429 naming it; the others are paused by nobody."""
    settings = attrs.evolve(AMPLITUDE, batch_size=2000)
    rig = await rig_for("amplitude", settings, base_url=sim.prefix("amplitude"))
    hot = {**ORDER, "user_id": "hot-user"}
    burst = [envelope(n, hot) for n in range(901)] + [envelope(901, ORDER)]
    outcomes = await rig.deliver(*burst)
    assert all(retry(Taken.NO, PAUSE_SECONDS, Scope.MESSAGE)(o) for o in outcomes[:901])
    assert retry(Taken.NO, 0.0, Scope.MESSAGE)(outcomes[901])
    assert amplitude_sim(sim).copies("key-0901") == 0  # the request was refused whole
    # The next batch: the hot user waits unsent, everyone else is ingested.
    waiting, cold = await rig.deliver(envelope(1000, hot), envelope(1001, ORDER))
    assert isinstance(waiting, Retry) and "paused" in waiting.reason
    assert cold == Delivered("key-1001")
    assert amplitude_sim(sim).copies("key-1000") == 0


async def test_amplitude_simulator_429_body(sim: Sim) -> None:
    """The simulator's throttle answer has Amplitude's fields, quota included."""
    logic = amplitude_sim(sim)
    logic.eps_threshold, logic.window, logic.daily_quota = 1, 2, 3
    events = [{"event_type": "E", "user_id": "user-a", "insert_id": f"i{n}"} for n in range(3)]
    events.append({"event_type": "E", "device_id": "device-b"})
    response = await sim.client.post(
        "/amplitude/2/httpapi", json={"api_key": "k", "events": events}
    )
    assert response.status_code == 429
    assert response.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 1,
        "throttled_devices": {},
        "throttled_users": {"user-a": 2},
        "throttled_events": [0, 1, 2],
    }
    assert logic.copies("i0") == 0  # nothing of a refused request is ingested
    ok = await sim.client.post("/amplitude/2/httpapi", json={"api_key": "k", "events": events[:2]})
    assert ok.status_code == 200
    over = await sim.client.post(
        "/amplitude/2/httpapi", json={"api_key": "k", "events": events[:2]}
    )
    assert over.json()["exceeded_daily_quota_users"] == {"user-a": 4}


# --- the simulators' own answers ---------------------------------------------------------

MP_EVENT: dict[str, Any] = {
    "event": "Signup",
    "properties": {"time": 1_700_000_000, "distinct_id": "u-1", "$insert_id": "abc-1"},
}


async def test_mixpanel_simulator_legacy_form_and_track(sim: Sim) -> None:
    """The SDK's form posts get {"status":1}; /track takes the token inside each event."""
    form = {"data": json.dumps(MP_EVENT), "verbose": "1", "ip": "0"}
    imported = await sim.client.post("/mixpanel/import", data=form, auth=("token", ""))
    assert imported.json() == {"status": 1, "error": None}
    event = {"event": "Open", "properties": {"token": "t0k3n", "distinct_id": "u-1"}}
    encoded = base64.b64encode(json.dumps([event]).encode()).decode()
    tracked = await sim.client.post("/mixpanel/track", data={"data": encoded})
    assert (tracked.status_code, tracked.text) == (200, "1")
    no_token = {"event": "Open", "properties": {}}
    refused = await sim.client.post(
        "/mixpanel/track", data={"data": json.dumps(no_token), "verbose": "1"}
    )
    assert refused.json() == {"status": 0, "error": "'properties.token' is required"}


async def test_mixpanel_simulator_ndjson_gzip_and_limits(sim: Sim) -> None:
    """NDJSON and gzip bodies are read; over 2000 events or 2 MB is Mixpanel's 413."""
    auth = ("token", "")
    ndjson = (json.dumps(MP_EVENT) + "\n" + json.dumps(MP_EVENT) + "\n").encode()
    response = await sim.client.post(
        "/mixpanel/import?strict=1",
        content=gzip.compress(ndjson),
        headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"},
        auth=auth,
    )
    assert response.json() == {"code": 200, "num_records_imported": 2, "status": "OK"}
    too_many = await sim.client.post("/mixpanel/import?strict=1", json=[MP_EVENT] * 2001, auth=auth)
    assert too_many.status_code == 413
    big = {**MP_EVENT, "properties": {**MP_EVENT["properties"], "blob": "x" * 2_100_000}}
    too_big = await sim.client.post("/mixpanel/import?strict=1", json=[big], auth=auth)
    assert too_big.json() == {
        "code": 413,
        "error": "request exceeds max limit of 2097152 bytes",
        "status": "Request Entity Too Large",
    }


async def test_amplitude_simulator_request_errors(sim: Sim) -> None:
    """Missing key or events, a bad key, short ids and a wrong /batch content type are 400s."""
    post = sim.client.post
    url = "/amplitude/2/httpapi"
    event = {"event_type": "E", "user_id": "user-1"}
    missing = await post(url, json={"events": [event]})
    assert missing.json() == {
        "code": 400,
        "error": "Request missing required field",
        "missing_field": "api_key",
    }
    assert (await post(url, json={"api_key": "k"})).json()["missing_field"] == "events"
    bad_key = await post(url, json={"api_key": "invalid", "events": [event]})
    assert bad_key.json() == {"code": 400, "error": "Invalid API key: invalid"}
    short = {"event_type": "E", "user_id": "abc"}
    lengths = await post(url, json={"api_key": "k", "events": [event, short, {"user_id": "u-123"}]})
    assert lengths.json()["events_with_invalid_id_lengths"] == {"user_id": [1]}
    assert lengths.json()["events_with_missing_fields"] == {"event_type": [2]}
    relaxed = {"api_key": "k", "events": [short], "options": {"min_id_length": 3}}
    assert (await post(url, json=relaxed)).status_code == 200
    form = await post(
        "/amplitude/batch", content=json.dumps(relaxed), headers={"content-type": "text/plain"}
    )
    assert form.status_code == 400
    assert (await post("/amplitude/batch", json=relaxed)).json()["events_ingested"] == 1
    too_many = await post(url, json={"api_key": "k", "events": [event] * 2001})
    assert too_many.status_code == 413


@pytest.mark.parametrize(
    ("provider", "faults", "status", "marker"),
    [
        ("mixpanel", {"error_rate": 1.0}, 500, "Internal server error"),
        ("mixpanel", {"permanent_rate": 1.0}, 401, "Invalid credentials"),
        ("mixpanel", {"outage": True}, 502, "Bad gateway"),
        ("mixpanel", {"storm": True, "retry_after": 5}, 429, "exceeded rate limits"),
        ("amplitude", {"error_rate": 1.0}, 500, "Internal server error"),
        ("amplitude", {"permanent_rate": 1.0}, 400, "missing_field"),
        ("amplitude", {"outage": True}, 503, "Service unavailable"),
        ("amplitude", {"storm": True, "retry_after": 5}, 429, "throttled_events"),
    ],
)
async def test_fault_replies_are_each_providers_own(
    sim: Sim, provider: str, faults: dict[str, Any], status: int, marker: str
) -> None:
    """Injected faults answer in the provider's own shapes, with no rate-limit headers."""
    valid: dict[str, dict[str, Any]] = {
        "mixpanel": {"url": "/mixpanel/import?strict=1", "json": [MP_EVENT], "auth": ("t", "")},
        "amplitude": {
            "url": "/amplitude/2/httpapi",
            "json": {"api_key": "k", "events": [{"event_type": "E", "user_id": "user-1"}]},
        },
    }
    await sim.client.post("/_sim/faults", json={"provider": provider, **faults})
    response = await sim.client.post(**valid[provider])
    assert (response.status_code, marker in response.text) == (status, True)
    assert "retry-after" not in response.headers


async def test_simulator_routes(sim: Sim) -> None:
    """Unknown paths are 404 and other methods 405, in each provider's JSON shape."""
    assert (await sim.client.post("/mixpanel/engage")).status_code == 404
    assert (await sim.client.get("/mixpanel/import")).status_code == 405
    assert (await sim.client.post("/amplitude/identify")).json()["code"] == 404
    assert (await sim.client.get("/amplitude/batch")).status_code == 405


async def test_lane_delivers_one_envelope(rig_for: Any) -> None:
    """deliver() of a batching lane is a batch of one."""
    rig = await rig_for("amplitude", AMPLITUDE, AMP_OK)
    assert await rig.lane.deliver(envelope(7, ORDER)) == Delivered("key-0007")
