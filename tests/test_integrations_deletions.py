"""Mixpanel's and Amplitude's deletion rows: batching adapters against the simulator and mocks."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from ringbearer import ConfigError, _converter
from ringbearer._config import parse
from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Priority, Scope, Taken
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import SecretRef
from ringbearer.integrations import BatchLimits, Connect, provider_kinds
from ringbearer.integrations.privacy import (
    AMPLITUDE_MAX_IDS,
    MIXPANEL_MAX_IDS,
    AmplitudeDeletionSettings,
    MixpanelDeletionSettings,
    scrubbed,
)

from . import kit
from .kit import Handler, Sim, answer, context, permanent, retry
from .kit import sim_fixture as sim_fixture

KEYS = {
    "MP_PROJECT": "mp-project-t0ken",
    "MP_OAUTH": "mp-0auth-5ecret",
    "AMP_KEY": "amp-api-key",
    "AMP_SECRET": "amp-5ecret-key",
    "BAD": "invalid",
}
MIXPANEL = MixpanelDeletionSettings(
    project_token=SecretRef(env="MP_PROJECT"), oauth_token=SecretRef(env="MP_OAUTH")
)
AMPLITUDE = AmplitudeDeletionSettings(
    api_key=SecretRef(env="AMP_KEY"), secret_key=SecretRef(env="AMP_SECRET")
)
SETTINGS: dict[str, Any] = {"mixpanel_deletion": MIXPANEL, "amplitude_deletion": AMPLITUDE}
KINDS = tuple(SETTINGS)
MP_OK = answer(201, {"status": "ok", "results": {"task_id": "task-1"}})
AMP_OK = answer(200, {"day": "2027-07-01", "status": "staging", "amplitude_ids": []})
OK: dict[str, Handler] = {"mixpanel_deletion": MP_OK, "amplitude_deletion": AMP_OK}


@pytest.fixture
def sim_seed() -> int:
    return 13


def person(number: int) -> str:
    return f"person-{number:04d}"


def envelope(number: int, who: str | None = None, kind: str = "mixpanel_deletion") -> Envelope:
    """Message ``number``: a critical request to delete ``who`` (``person(number)`` by default)."""
    return kit.envelope(
        {"id": who if who is not None else person(number)},
        key=f"erase-{number:04d}",
        message_id=number,
        target=kind,
        priority=Priority.CRITICAL,
    )


Rig = kit.BatchRig


@pytest.fixture
async def rig_for(nursery: trio.Nursery) -> Callable[..., Any]:
    """``rig_for(kind, settings, handler=None, base_url=None)``: an adapter with one open lane."""
    return functools.partial(kit.open_batch_rig, nursery, KEYS)


async def sim_rig(rig_for: Any, sim: Sim, kind: str, settings: Any = None) -> Rig:
    rig: Rig = await rig_for(kind, settings or SETTINGS[kind], base_url=sim.prefix(kind))
    return rig


def basic(request: httpx.Request) -> str:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


# --- the table and settings ------------------------------------------------------------


def test_rows_are_batching_privacy_kinds() -> None:
    """Both kinds are privacy rows with a Connect probe, batching at each API's cap by default."""
    kinds = provider_kinds()
    for kind in KINDS:
        assert kinds[kind].family == "privacy"
        assert isinstance(kinds[kind].probe, Connect)
    mixpanel = kinds["mixpanel_deletion"].build(MIXPANEL, context(KEYS, MP_OK))
    amplitude = kinds["amplitude_deletion"].build(AMPLITUDE, context(KEYS, AMP_OK))
    assert mixpanel.batching == BatchLimits(max_size=1999, max_wait=1.0)
    assert amplitude.batching == BatchLimits(max_size=100, max_wait=1.0)
    tuned = attrs.evolve(AMPLITUDE, batch_size=7, batch_wait_ms=250)
    batching = kinds["amplitude_deletion"].build(tuned, context(KEYS, AMP_OK)).batching
    assert batching == BatchLimits(7, 0.25)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (
            "mixpanel_deletion",
            {
                "project_token": {"env": "P"},
                "oauth_token": {"credential": "mixpanel-gdpr"},
                "base_url": "https://eu.mixpanel.com/api/app",
                "compliance_type": "CCPA",
                "batch_size": 1999,
            },
        ),
        (
            "amplitude_deletion",
            {
                "api_key": {"env": "K"},
                "secret_key": {"env": "S"},
                "requester": "privacy-desk",
                "batch_size": 1,
                "batch_wait_ms": 0,
            },
        ),
    ],
)
def test_settings_structure_with_project_converter(kind: str, raw: dict[str, Any]) -> None:
    """Each settings form structures from TOML-shaped data with the project's converter."""
    settings_type = provider_kinds()[kind].settings_type
    assert isinstance(_converter.make().structure(raw, settings_type), settings_type)


MP_SECTION = (
    'kind = "mixpanel_deletion"\nproject_token = { env = "P" }\noauth_token = { env = "O" }'
)
AMP_SECTION = 'kind = "amplitude_deletion"\napi_key = { env = "K" }\nsecret_key = { env = "S" }'


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ('kind = "mixpanel_deletion"\nproject_token = { env = "P" }', "d.oauth_token: required"),
        (f"{MP_SECTION}\nbatch_size = 2000", "integrations.d: 'batch_size' must be <= 1999"),
        (f"{MP_SECTION}\nbatch_size = 0", "integrations.d: 'batch_size' must be >= 1"),
        (f"{MP_SECTION}\ncompliance_type = 'HIPAA'", "integrations.d.compliance_type"),
        (
            'kind = "mixpanel_deletion"\nproject_token = { env = "P" }\noauth_token = "inline"',
            "integrations.d.oauth_token: secrets are references",
        ),
        ('kind = "amplitude_deletion"\napi_key = { env = "K" }', "d.secret_key: required"),
        (f"{AMP_SECTION}\nbatch_size = 101", "integrations.d: 'batch_size' must be <= 100"),
        (f"{AMP_SECTION}\nrequester = ''", "integrations.d: Length of 'requester' must be >= 1"),
        (f"{AMP_SECTION}\nbatch_wait_ms = -1", "integrations.d: 'batch_wait_ms' must be >= 0"),
    ],
)
def test_settings_reject_bad_config(tmp_path: Path, section: str, words: str) -> None:
    """Missing tokens, inline secrets and batch sizes over each API's cap are config errors."""
    with pytest.raises(ConfigError) as caught:
        parse(f"[integrations.d]\n{section}\n", tmp_path / "config.toml")
    found = "\n".join(str(problem) for problem in caught.value.problems)
    assert words in found, found


# --- payloads ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({}, "'id' is required"),
        ({"id": ""}, "'id' must not be empty"),
        ({"id": "   "}, "'id' must not be empty"),
        ({"id": 42}, "'id' must be a string, got a number"),
        ({"id": None}, "'id' must be a string, got null"),
        ({"id": "p", "distinct_id": "p"}, "unknown field(s) 'distinct_id'; expected some of id"),
        (["p"], "the payload must be a JSON object, got a list"),
    ],
)
def test_payload_rejected(kind: str, payload: Any, words: str) -> None:
    """validate names the field that does not fit ``{"id": str}``."""
    adapter = provider_kinds()[kind].build(SETTINGS[kind], context(KEYS, OK[kind]))
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate(payload)
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("kind", "most"), [("mixpanel_deletion", 255), ("amplitude_deletion", 1024)]
)
def test_payload_id_length(kind: str, most: int) -> None:
    """An id may be as long as the analytics row of the same provider takes it, and no longer."""
    adapter = provider_kinds()[kind].build(SETTINGS[kind], context(KEYS, OK[kind]))
    adapter.validate({"id": "x" * most})
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate({"id": "x" * (most + 1)})
    assert caught.value.message == f"'id' is {most + 1} characters long, at most {most}"


async def test_invalid_payload_at_delivery_settles_alone(rig_for: Any) -> None:
    """A message whose payload no longer fits is Permanent; the others of its batch go out."""
    rig = await rig_for("mixpanel_deletion", MIXPANEL, MP_OK)
    bad = kit.envelope({"who": "x"}, message_id=9, target="mixpanel_deletion")
    outcomes = await rig.deliver(envelope(1), bad)
    assert outcomes[0] == Delivered("task-1")
    assert permanent("invalid payload: unknown field(s) 'who'", None)(outcomes[1])
    assert rig.bodies()[0]["distinct_ids"] == [person(1)]


# --- the requests ------------------------------------------------------------------------


async def test_mixpanel_request(rig_for: Any) -> None:
    """POST /data-deletions/v3.0/?token=…, the OAuth token as bearer, the ids and compliance."""
    rig = await rig_for("mixpanel_deletion", MIXPANEL, MP_OK)
    await rig.deliver(envelope(1), envelope(2))
    [request] = rig.sent
    assert (request.method, str(request.url)) == (
        "POST",
        "https://mixpanel.com/api/app/data-deletions/v3.0/?token=mp-project-t0ken",
    )
    assert request.headers["authorization"] == "Bearer mp-0auth-5ecret"
    assert request.headers["content-type"] == "application/json"
    assert rig.bodies() == [{"distinct_ids": [person(1), person(2)], "compliance_type": "GDPR"}]


async def test_mixpanel_region_and_compliance(rig_for: Any) -> None:
    """base_url picks the residency host; compliance_type is sent as configured."""
    settings = attrs.evolve(
        MIXPANEL, base_url="https://eu.mixpanel.com/api/app", compliance_type="CCPA"
    )
    rig = await rig_for("mixpanel_deletion", settings, MP_OK)
    await rig.deliver(envelope(1))
    assert str(rig.sent[0].url).startswith("https://eu.mixpanel.com/api/app/data-deletions/")
    assert rig.bodies()[0]["compliance_type"] == "CCPA"


async def test_amplitude_request(rig_for: Any) -> None:
    """POST /api/2/deletions/users, HTTP Basic key:secret, both spellings of ignore_invalid_id."""
    rig = await rig_for("amplitude_deletion", AMPLITUDE, AMP_OK)
    await rig.deliver(
        envelope(1, kind="amplitude_deletion"), envelope(2, kind="amplitude_deletion")
    )
    [request] = rig.sent
    assert (request.method, str(request.url)) == (
        "POST",
        "https://amplitude.com/api/2/deletions/users",
    )
    assert basic(request) == "amp-api-key:amp-5ecret-key"
    assert rig.bodies() == [
        {
            "user_ids": [person(1), person(2)],
            "requester": "ringbearer",
            "ignore_invalid_id": True,
            "ignore_invalid_ids": True,
        }
    ]
    eu = await rig_for(
        "amplitude_deletion",
        attrs.evolve(AMPLITUDE, base_url="https://analytics.eu.amplitude.com"),
        AMP_OK,
    )
    await eu.deliver(envelope(3, kind="amplitude_deletion"))
    assert str(eu.sent[0].url) == "https://analytics.eu.amplitude.com/api/2/deletions/users"


@pytest.mark.parametrize(("kind", "field"), [(KINDS[0], "distinct_ids"), (KINDS[1], "user_ids")])
async def test_an_id_named_twice_is_asked_for_once(rig_for: Any, kind: str, field: str) -> None:
    """Two messages for one person make one id in the request, and both are delivered."""
    rig = await rig_for(kind, SETTINGS[kind], OK[kind])
    outcomes = await rig.deliver(
        envelope(1, "p-a", kind), envelope(2, "p-b", kind), envelope(3, "p-a", kind)
    )
    assert rig.bodies()[0][field] == ["p-a", "p-b"]
    assert len(set(outcomes)) == 1 and isinstance(outcomes[0], Delivered)


@pytest.mark.parametrize(
    ("kind", "field", "size"), [(KINDS[0], "distinct_ids", 4), (KINDS[1], "user_ids", 3)]
)
async def test_a_batch_never_exceeds_batch_size(
    rig_for: Any, kind: str, field: str, size: int
) -> None:
    """Handed more people than batch_size, a lane sends batch_size ids and holds the rest back."""
    rig = await rig_for(kind, attrs.evolve(SETTINGS[kind], batch_size=size), OK[kind])
    # The first person twice: a repeat rides along without taking a place.
    batch = [envelope(0, person(1), kind)] + [envelope(n, None, kind) for n in range(1, 8)]
    outcomes = await rig.deliver(*batch)
    assert rig.bodies()[0][field] == [person(n) for n in range(1, size + 1)]
    assert all(isinstance(o, Delivered) for o in outcomes[: size + 1])
    held = retry(Taken.NO, 0.0, Scope.MESSAGE)
    assert all(held(o) for o in outcomes[size + 1 :]) and len(outcomes) == 8


# --- the answers ---------------------------------------------------------------------------

ERASED = "erase-me-0042"  # an id a provider echoes in its error
MAYBE = retry(Taken.MAYBE, None, Scope.INTEGRATION)


def delivered(provider_id: str) -> Callable[[Outcome], bool]:
    return lambda o: o == Delivered(provider_id)


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (MP_OK, delivered("task-1")),
        (answer(200, {"status": "ok", "results": {"task_id": 77}}), delivered("77")),
        (
            answer(
                200,
                {
                    "status": "ok",
                    "results": [
                        {"status": "PENDING", "tracking_id": "tr-1", "distinct_id_count": 1},
                        {"status": "PENDING", "tracking_id": "tr-2", "distinct_id_count": 1},
                    ],
                },
            ),
            delivered("tr-1,tr-2"),
        ),
        (answer(201, {"status": "ok", "results": {}}), kit.malformed),
        (answer(200, {"status": "error", "results": {"task_id": "t"}}), kit.malformed),
        (answer(200, "<html>ok</html>"), kit.malformed),
        (
            answer(401, {"error": "Invalid OAuth token", "status": "error"}),
            permanent("HTTP 401: Invalid OAuth token", 401),
        ),
        (
            answer(403, {"error": "not a project admin", "status": "error"}),
            permanent("HTTP 403: not a project admin", 403),
        ),
        (
            answer(400, {"error": f"bad distinct_id {ERASED.upper()}", "status": "error"}),
            permanent("HTTP 400: bad distinct_id [id]", 400),
        ),
        (answer(400, f"no such person {ERASED}"), permanent("HTTP 400: Bad Request", 400)),
        (answer(429, {"error": "slow down"}), retry(Taken.NO, 1.0, Scope.INTEGRATION)),
        (answer(429, {}, {"retry-after": "0"}), retry(Taken.NO, 1.0, Scope.INTEGRATION)),
        (answer(429, {}, {"retry-after": "7"}), retry(Taken.NO, 7.0, Scope.INTEGRATION)),
        (answer(500, "oops"), MAYBE),
        (answer(503, "down"), MAYBE),
    ],
)
async def test_mixpanel_answers(
    rig_for: Any, handler: Handler, expect: Callable[[Outcome], bool]
) -> None:
    """Every documented answer maps to one outcome for each message; no reason names a person."""
    rig = await rig_for("mixpanel_deletion", MIXPANEL, handler)
    outcomes = await rig.deliver(envelope(1, ERASED), envelope(2))
    assert all(expect(outcome) for outcome in outcomes), outcomes
    assert not any(ERASED in repr(outcome).lower() for outcome in outcomes)


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (AMP_OK, delivered("2027-07-01")),
        (answer(200, {"status": "staging"}), kit.malformed),
        (answer(400, {"error": f"unknown user_id {ERASED}"}), permanent("user_id [id]", 400)),
        (answer(401, "Unauthorized"), permanent("HTTP 401: Unauthorized", 401)),
        (answer(429, "Too Many Requests"), retry(Taken.NO, 1.0, Scope.INTEGRATION)),
        (answer(502, {"error": "bad gateway"}), MAYBE),
    ],
)
async def test_amplitude_answers(
    rig_for: Any, handler: Handler, expect: Callable[[Outcome], bool]
) -> None:
    """Every documented answer maps to one outcome for each message; no reason names a person."""
    rig = await rig_for("amplitude_deletion", AMPLITUDE, handler)
    kind = "amplitude_deletion"
    outcomes = await rig.deliver(envelope(1, ERASED, kind), envelope(2, None, kind))
    assert all(expect(outcome) for outcome in outcomes), outcomes
    assert not any(ERASED in repr(outcome) for outcome in outcomes)


async def test_an_echoed_secret_is_redacted(rig_for: Any) -> None:
    """A provider that echoes the OAuth token in its error does not put it in the reason."""
    echo = answer(401, {"error": f"token {KEYS['MP_OAUTH']} expired", "status": "error"})
    rig = await rig_for("mixpanel_deletion", MIXPANEL, echo)
    [outcome] = await rig.deliver(envelope(1))
    assert outcome == Permanent("HTTP 401: token *** expired", status=401)


@pytest.mark.parametrize(
    ("text", "ids", "expected"),
    [
        ("no user Ab-1 or ab-12", ["ab-1", "ab-12"], "no user [id] or [id]"),
        ("a.b (x)+", ["a.b", "(x)+"], "[id] [id]"),
        ("nothing here", [], "nothing here"),
        ("nothing here", [""], "nothing here"),
    ],
)
def test_scrubbed(text: str, ids: list[str], expected: str) -> None:
    """Every id, in any case, longest first, taken literally (not as a pattern)."""
    assert scrubbed(text, ids) == expected


# --- against the real simulator ------------------------------------------------------------


async def deletions(sim: Sim, provider: str) -> list[dict[str, Any]]:
    response = await sim.client.get("/_sim/deletions", params={"provider": provider})
    assert response.status_code == 200, response.text
    shown: list[dict[str, Any]] = response.json()
    return shown


async def test_mixpanel_batch_is_one_request_to_the_simulator(sim: Sim, rig_for: Any) -> None:
    """N people make one request with N ids; every message gets its task id, visible in /_sim."""
    rig = await sim_rig(rig_for, sim, "mixpanel_deletion")
    outcomes = await rig.deliver(*(envelope(n) for n in range(1, 6)))
    [recorded] = sim.state.deletions("mixpanel")
    assert recorded.ids == tuple(person(n) for n in range(1, 6))
    assert outcomes == [Delivered(recorded.job)] * 5
    [shown] = await deletions(sim, "mixpanel")
    assert (shown["ids"], shown["job"]) == ([person(n) for n in range(1, 6)], recorded.job)
    assert shown["at"] == recorded.at
    [request] = await sim.requests("mixpanel_deletion")
    assert (request["path"], request["query"], request["auth"]) == (
        "/data-deletions/v3.0/",
        "token=mp-project-t0ken",
        "Bearer",
    )


async def test_amplitude_batch_is_one_request_to_the_simulator(sim: Sim, rig_for: Any) -> None:
    """N people make one request with N ids; every message gets the job's day, visible in /_sim."""
    rig = await sim_rig(rig_for, sim, "amplitude_deletion")
    kind = "amplitude_deletion"
    outcomes = await rig.deliver(*(envelope(n, None, kind) for n in range(1, 4)))
    [recorded] = sim.state.deletions("amplitude")
    assert recorded.ids == (person(1), person(2), person(3))
    assert outcomes == [Delivered(recorded.job)] * 3
    assert [d["ids"] for d in await deletions(sim, "amplitude")] == [list(recorded.ids)]


@pytest.mark.parametrize(
    ("kind", "most"), [(KINDS[0], MIXPANEL_MAX_IDS), (KINDS[1], AMPLITUDE_MAX_IDS)]
)
async def test_a_full_batch_is_taken_by_the_simulator(
    sim: Sim, rig_for: Any, kind: str, most: int
) -> None:
    """At the default batch_size the fullest request fits the simulator's cap; one more waits."""
    rig = await sim_rig(rig_for, sim, kind)
    outcomes = await rig.deliver(*(envelope(n, None, kind) for n in range(most + 1)))
    assert all(isinstance(o, Delivered) for o in outcomes[:most])
    assert retry(Taken.NO, 0.0, Scope.MESSAGE)(outcomes[most])
    [recorded] = sim.state.deletions(kind)
    assert len(recorded.ids) == most


@pytest.mark.parametrize("kind", KINDS)
async def test_simulated_429_is_retried_not_taken(sim: Sim, rig_for: Any, kind: str) -> None:
    """The simulator's injected 429 is a Retry, not taken, after >= 1 s; none recorded."""
    await sim.faults(kind, storm=True)
    rig = await sim_rig(rig_for, sim, kind)
    outcomes = await rig.deliver(envelope(1, None, kind), envelope(2, None, kind))
    expect = retry(Taken.NO, 1.0, Scope.INTEGRATION)
    assert all(expect(o) and o.status == 429 for o in outcomes), outcomes
    assert sim.state.deletions(kind) == ()


@pytest.mark.parametrize("kind", KINDS)
async def test_simulated_5xx_is_retried_maybe_taken(sim: Sim, rig_for: Any, kind: str) -> None:
    """The simulator's injected 500 is a Retry that may have been taken."""
    await sim.faults(kind, error_rate=1.0)
    rig = await sim_rig(rig_for, sim, kind)
    [outcome] = await rig.deliver(envelope(1, None, kind))
    assert MAYBE(outcome) and outcome.status == 500


@pytest.mark.parametrize(
    ("kind", "settings", "words"),
    [
        (
            KINDS[0],
            attrs.evolve(MIXPANEL, oauth_token=SecretRef(env="BAD")),
            "HTTP 401: Invalid OAuth token",
        ),
        (
            KINDS[0],
            attrs.evolve(MIXPANEL, project_token=SecretRef(env="BAD")),
            "HTTP 401: Invalid project token",
        ),
        (
            KINDS[1],
            attrs.evolve(AMPLITUDE, secret_key=SecretRef(env="BAD")),
            "HTTP 401: Invalid API key or secret key",
        ),
    ],
)
async def test_refused_credentials_are_permanent(
    sim: Sim, rig_for: Any, kind: str, settings: Any, words: str
) -> None:
    """A credential the simulator refuses is Permanent (401) for every message; none recorded."""
    rig = await sim_rig(rig_for, sim, kind, settings)
    outcomes = await rig.deliver(envelope(1, None, kind), envelope(2, None, kind))
    assert outcomes == [Permanent(words, status=401)] * 2
    assert sim.state.deletions(kind) == ()
