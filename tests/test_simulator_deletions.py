"""The simulated deletion APIs: their limits, auth and 429s, and the deletions they record."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import pytest

from ringbearer.simulator import SimulatorState
from ringbearer.simulator._deletions import AMPLITUDE_MAX_IDS, MIXPANEL_MAX_IDS, Deletion

from .kit import Sim
from .kit import sim_fixture as sim_fixture

MP_URL = "/mixpanel-deletion/data-deletions/v3.0/"
MP_AUTH = {"Authorization": "Bearer gdpr-token"}
MP_QUERY = {"token": "project-token"}
AMP_URL = "/amplitude-deletion/api/2/deletions/users"
AMP_AUTH = ("api-key", "secret-key")


@pytest.fixture
def sim_seed() -> int:
    return 21


def ids(count: int, prefix: str = "p") -> list[str]:
    return [f"{prefix}-{n:05d}" for n in range(count)]


async def mixpanel(sim: Sim, body: Any, **changes: Any) -> httpx.Response:
    """POST a deletion to the simulated Mixpanel, with good credentials unless ``changes`` say."""
    request: dict[str, Any] = {"params": MP_QUERY, "headers": MP_AUTH, "json": body, **changes}
    return await sim.client.post(MP_URL, **request)


async def amplitude(sim: Sim, body: Any, **changes: Any) -> httpx.Response:
    """POST a deletion to the simulated Amplitude, with good credentials unless ``changes`` say."""
    request: dict[str, Any] = {"auth": AMP_AUTH, "json": body, **changes}
    return await sim.client.post(AMP_URL, **request)


# --- Mixpanel ----------------------------------------------------------------------------


async def test_mixpanel_takes_2000_ids_and_refuses_2001(sim: Sim) -> None:
    """Up to 2,000 distinct_ids a request are taken (201, a task id); 2,001 get a 400 error."""
    taken = await mixpanel(sim, {"distinct_ids": ids(MIXPANEL_MAX_IDS)})
    assert taken.status_code == 201
    task_id = taken.json()["results"]["task_id"]
    assert taken.json() == {"status": "ok", "results": {"task_id": task_id}}
    refused = await mixpanel(sim, {"distinct_ids": ids(MIXPANEL_MAX_IDS + 1)})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "at most 2000 distinct_ids a request, got 2001",
        "status": "error",
    }
    [recorded] = sim.state.deletions("mixpanel")
    assert (recorded.ids, recorded.job) == (tuple(ids(MIXPANEL_MAX_IDS)), task_id)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"headers": {}}, "Invalid OAuth token"),
        ({"headers": {"Authorization": "Bearer invalid"}}, "Invalid OAuth token"),
        ({"headers": {"Authorization": "Basic Z2Rwcjo="}}, "Invalid OAuth token"),
        ({"params": {}}, "Invalid project token"),
        ({"params": {"token": "invalid"}}, "Invalid project token"),
    ],
)
async def test_mixpanel_checks_both_tokens(sim: Sim, changes: dict[str, Any], error: str) -> None:
    """A missing or refused bearer token, or project token, is a 401; nothing is recorded."""
    response = await mixpanel(sim, {"distinct_ids": ["p-1"]}, **changes)
    assert (response.status_code, response.json()) == (401, {"error": error, "status": "error"})
    assert sim.state.deletions("mixpanel") == ()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "'distinct_ids' must be a non-empty list of strings"),
        ({"distinct_ids": []}, "'distinct_ids' must be a non-empty list of strings"),
        ({"distinct_ids": "p-1"}, "'distinct_ids' must be a non-empty list of strings"),
        ({"distinct_ids": ["p-1", 2]}, "'distinct_ids' must be a non-empty list of strings"),
        (
            {"distinct_ids": ["p-1"], "compliance_type": "HIPAA"},
            "'compliance_type' must be GDPR or CCPA",
        ),
        (["p-1"], "the body must be a JSON object"),
    ],
)
async def test_mixpanel_refuses_bad_bodies(sim: Sim, body: Any, error: str) -> None:
    """A body that is not a deletion gets a 400 naming the field."""
    response = await mixpanel(sim, body)
    assert (response.status_code, response.json()["error"]) == (400, error)


async def test_mixpanel_task_can_be_checked(sim: Sim) -> None:
    """GET /data-deletions/v3.0/<task_id> shows a taken task as PENDING with its ids."""
    ccpa = {"distinct_ids": ["p-1", "p-2"], "compliance_type": "ccpa"}
    task_id = (await mixpanel(sim, ccpa)).json()["results"]["task_id"]
    shown = await sim.client.get(f"{MP_URL}{task_id}", params=MP_QUERY, headers=MP_AUTH)
    assert shown.json() == {
        "status": "ok",
        "results": {"status": "PENDING", "result": "", "distinct_ids": ["p-1", "p-2"]},
    }
    missing = await sim.client.get(f"{MP_URL}nope", params=MP_QUERY, headers=MP_AUTH)
    assert missing.status_code == 404
    assert (await sim.client.get(f"{MP_URL}{task_id}", params=MP_QUERY)).status_code == 401


async def test_mixpanel_routes(sim: Sim) -> None:
    """Other paths are 404; the create path takes POST only, a task GET only."""
    assert (await sim.client.post("/mixpanel-deletion/data-retrievals/v3.0/")).status_code == 404
    assert (await sim.client.get(MP_URL, headers=MP_AUTH)).status_code == 405
    assert (await sim.client.post(f"{MP_URL}some-task", headers=MP_AUTH)).status_code == 405
    bad_json = await mixpanel(sim, None, json=None, content=b"{not json")
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "the body is not valid JSON")


# --- Amplitude -----------------------------------------------------------------------------


async def test_amplitude_takes_100_ids_and_refuses_101(sim: Sim) -> None:
    """Up to 100 ids a request (user ids and Amplitude ids together) are taken; 101 get a 400."""
    wall = datetime.datetime(2027, 6, 1, 12, tzinfo=datetime.UTC).timestamp()
    sim.logic("amplitude_deletion").clock = lambda: wall
    body = {"user_ids": ids(99), "amplitude_ids": [123456], "requester": "privacy-desk"}
    taken = await amplitude(sim, body)
    assert taken.status_code == 200
    answer = taken.json()
    assert (answer["day"], answer["status"], answer["invalid_ids"]) == ("2027-07-01", "staging", [])
    assert len(answer["amplitude_ids"]) == AMPLITUDE_MAX_IDS
    assert answer["amplitude_ids"][0]["user_id"] == "p-00000"
    assert answer["amplitude_ids"][-1] == {
        "amplitude_id": 123456,
        "requester": "privacy-desk",
        "requested_on_day": "2027-06-01",
    }
    refused = await amplitude(sim, {"user_ids": ids(AMPLITUDE_MAX_IDS + 1)})
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "at most 100 ids a request, got 101"},
    )
    assert sim.state.deletions("amplitude") == (Deletion((*ids(99), "123456"), wall, "2027-07-01"),)


@pytest.mark.parametrize(
    "auth", [None, ("api-key", ""), ("invalid", "secret-key"), ("api-key", "invalid")]
)
async def test_amplitude_checks_basic_auth(sim: Sim, auth: tuple[str, str] | None) -> None:
    """No Basic credentials, or a refused key or secret, is a 401; nothing is recorded."""
    response = await amplitude(sim, {"user_ids": ["p-1"]}, auth=auth)
    assert (response.status_code, response.json()) == (
        401,
        {"error": "Invalid API key or secret key"},
    )
    assert sim.state.deletions("amplitude") == ()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "one of 'user_ids' or 'amplitude_ids' is required"),
        ({"user_ids": "p-1"}, "'user_ids' must be a list of non-empty strings"),
        ({"user_ids": [""]}, "'user_ids' must be a list of non-empty strings"),
        ({"amplitude_ids": ["1"]}, "'amplitude_ids' must be a list of integers"),
        ({"amplitude_ids": [True]}, "'amplitude_ids' must be a list of integers"),
        ({"user_ids": ["p-1"], "requester": 7}, "'requester' must be a string"),
        ({"user_ids": ["p-1"], "ignore_invalid_ids": "yes"}, "'ignore_invalid_ids' must be"),
    ],
)
async def test_amplitude_refuses_bad_bodies(sim: Sim, body: Any, error: str) -> None:
    """A body that is not a deletion gets a 400 naming the field."""
    response = await amplitude(sim, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


async def test_amplitude_routes(sim: Sim) -> None:
    """Other paths are 404; the deletions path takes POST only."""
    assert (await sim.client.post("/amplitude-deletion/api/2/deletions")).status_code == 404
    assert (await sim.client.get(AMP_URL, auth=AMP_AUTH)).status_code == 405


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "post", "body"),
    [
        ("mixpanel_deletion", mixpanel, {"error": "Too many requests", "status": "error"}),
        ("amplitude_deletion", amplitude, {"error": "Too many requests"}),
    ],
)
async def test_injected_rate_limit_is_a_429(sim: Sim, provider: str, post: Any, body: Any) -> None:
    """A rate-limit fault gets each provider's own 429 (no wait header); nothing recorded."""
    await sim.faults(provider, rate_limit_rate=1.0, count=1)
    limited = await post(sim, {"user_ids": ["p-1"], "distinct_ids": ["p-1"]})
    assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert limited.json()["error"].startswith(body["error"])
    assert limited.json().get("status") == body.get("status")
    assert sim.state.deletions(provider) == ()
    healed = await post(sim, {"user_ids": ["p-1"], "distinct_ids": ["p-1"]})
    assert healed.status_code in (200, 201)
    assert [d.ids for d in sim.state.deletions(provider)] == [("p-1",)]
    stats = await sim.stats(provider)
    assert (stats["accepted"], stats["status_counts"]) == (
        1,
        {"429": 1, str(healed.status_code): 1},
    )


# --- the read-out --------------------------------------------------------------------------


async def test_sim_deletions_lists_each_provider(sim: Sim) -> None:
    """GET /_sim/deletions?provider= is one provider's list, by short name, name or kind."""
    await mixpanel(sim, {"distinct_ids": ["p-1", "p-2"]})
    await mixpanel(sim, {"distinct_ids": ["p-3"]})
    await amplitude(sim, {"user_ids": ["p-4"]})
    recorded = sim.state.deletions("mixpanel")
    expected = [{"ids": list(d.ids), "at": d.at, "job": d.job} for d in recorded]
    for name in ("mixpanel", "mixpanel-deletion", "mixpanel_deletion"):
        response = await sim.client.get("/_sim/deletions", params={"provider": name})
        assert response.json() == expected
    both = (await sim.client.get("/_sim/deletions")).json()
    assert list(both) == ["mixpanel-deletion", "amplitude-deletion"]
    assert both["mixpanel-deletion"] == expected
    assert [d["ids"] for d in both["amplitude-deletion"]] == [["p-4"]]


async def test_sim_deletions_refusals(sim: Sim) -> None:
    """A provider recording no deletions is a 400 naming those that do; only GET is allowed."""
    response = await sim.client.get("/_sim/deletions", params={"provider": "resend"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("'resend' records no deletions; ask one of mixpanel")
    assert (await sim.client.get("/_sim/deletions", params={"provider": "nope"})).status_code == 400
    assert (await sim.client.post("/_sim/deletions")).status_code == 405


async def test_reset_forgets_the_deletions(sim: Sim) -> None:
    """POST /_sim/reset clears what the deletion providers recorded, as every provider's tables."""
    await mixpanel(sim, {"distinct_ids": ["p-1"]})
    await amplitude(sim, {"user_ids": ["p-1"]})
    assert (await sim.client.post("/_sim/reset")).status_code == 200
    assert sim.state.deletions("mixpanel") == sim.state.deletions("amplitude") == ()


def test_state_accessor_refuses_other_providers() -> None:
    """SimulatorState.deletions raises KeyError for a provider that records none."""
    state = SimulatorState()
    assert state.deletions("amplitude-deletion") == ()
    with pytest.raises(KeyError, match="'mixpanel-ingest' records no deletions"):
        state.deletions("mixpanel-ingest")
    with pytest.raises(KeyError, match="'mixpanel_deletions' records no deletions"):
        state.deletions("mixpanel_deletions")
