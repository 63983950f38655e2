"""The simulator's OAuth 2.0 token endpoints: X's single-use refresh tokens, LinkedIn's lasting."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest

from ringbearer.simulator import _linkedin, _x

from .kit import T0, Sim
from .kit import sim_fixture as sim_fixture

X_TOKEN, X_TWEETS = "/x/2/oauth2/token", "/x/2/tweets"
LI_TOKEN, LI_POSTS = "/linkedin/oauth/v2/accessToken", "/linkedin/rest/posts"
CLIENT = "ringbearer-client"
SPENT = {"error": "invalid_request", "error_description": "Value passed for the token was invalid."}
LI_HEADERS = {"LinkedIn-Version": "202601", "X-Restli-Protocol-Version": "2.0.0"}


@pytest.fixture
def sim_seed() -> int:
    return 13


@attrs.define
class Wall:
    """A wall clock the test moves."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall(sim: Sim) -> Wall:
    """Both simulated providers read this clock."""
    clock = Wall()
    sim.logic("x").clock = clock
    sim.logic("linkedin").clock = clock
    return clock


async def x_refresh(sim: Sim, token: str, **changes: Any) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT, **changes}
    return await sim.client.post(X_TOKEN, data=form)


async def x_issued(sim: Sim, token: str) -> dict[str, Any]:
    response = await x_refresh(sim, token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def tweet(sim: Sim, access: str, text: str) -> int:
    headers = {"Authorization": f"Bearer {access}"}
    response = await sim.client.post(X_TWEETS, json={"text": text}, headers=headers)
    return response.status_code


async def li_refresh(sim: Sim, token: str, **changes: Any) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": CLIENT,
        "client_secret": "li-secret",
        **changes,
    }
    return await sim.client.post(LI_TOKEN, data={k: v for k, v in form.items() if v is not None})


async def li_post(sim: Sim, access: str, text: str) -> httpx.Response:
    body = {
        "author": "urn:li:organization:1",
        "commentary": text,
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED"},
        "lifecycleState": "PUBLISHED",
    }
    headers = {"Authorization": f"Bearer {access}", **LI_HEADERS}
    return await sim.client.post(LI_POSTS, json=body, headers=headers)


# --- X ----------------------------------------------------------------------------------


async def test_x_issues_an_expiring_set_with_a_new_refresh_token(sim: Sim, wall: Wall) -> None:
    """The answer has X's shape, a refresh token new each time, and the token posts."""
    seed = sim.logic("x").authorize(CLIENT)
    first = await x_issued(sim, seed)
    assert first["token_type"] == "bearer" and first["expires_in"] == 7200
    assert "offline.access" in first["scope"].split()
    assert first["refresh_token"] != seed
    second = await x_issued(sim, first["refresh_token"])
    assert second["refresh_token"] not in (seed, first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    assert await tweet(sim, second["access_token"], "hello") == 201
    assert (await sim.stats("x"))["accepted"] == 1  # refreshes are no posts


async def test_x_access_token_expires(sim: Sim, wall: Wall) -> None:
    """An issued access token posts until its 7200 s are up, then is 401."""
    issued = await x_issued(sim, _x.SANDBOX_SEED)
    wall.now += 7199
    assert await tweet(sim, issued["access_token"], "in time") == 201
    wall.now += 1
    assert await tweet(sim, issued["access_token"], "too late") == 401


async def test_x_refresh_token_is_single_use(sim: Sim, wall: Wall) -> None:
    """A spent refresh token presented again is 400 invalid_request."""
    seed = sim.logic("x").authorize(CLIENT)
    await x_issued(sim, seed)
    again = await x_refresh(sim, seed)
    assert (again.status_code, again.json()) == (400, SPENT)


async def test_x_reuse_revokes_the_whole_family(sim: Sim, wall: Wall) -> None:
    """Reusing a spent token kills every token of its family, and only of its family."""
    seed = sim.logic("x").authorize(CLIENT)
    first = await x_issued(sim, seed)
    second = await x_issued(sim, first["refresh_token"])
    other = await x_issued(sim, sim.logic("x").authorize(CLIENT))
    assert await tweet(sim, second["access_token"], "before") == 201

    reuse = await x_refresh(sim, first["refresh_token"])

    assert (reuse.status_code, reuse.json()) == (400, SPENT)
    newest = await x_refresh(sim, second["refresh_token"])  # never spent, but revoked
    assert (newest.status_code, newest.json()) == (400, SPENT)
    assert await tweet(sim, second["access_token"], "after") == 401
    assert await tweet(sim, other["access_token"], "another family") == 201
    assert (await x_refresh(sim, other["refresh_token"])).status_code == 200


async def test_x_sandbox_seed_starts_a_new_family_each_time(sim: Sim, wall: Wall) -> None:
    """The sandbox's placeholder is never spent; each family it starts is separate."""
    first = await x_issued(sim, _x.SANDBOX_SEED)
    second = await x_issued(sim, _x.SANDBOX_SEED)
    await x_issued(sim, first["refresh_token"])
    assert (await x_refresh(sim, first["refresh_token"])).status_code == 400  # revokes one
    assert (await x_refresh(sim, second["refresh_token"])).status_code == 200


async def test_x_refuses_unknown_tokens_and_a_mismatched_client(sim: Sim, wall: Wall) -> None:
    """A token never issued is 400; a Basic header for another client is 401."""
    unknown = await x_refresh(sim, "made-up")
    assert (unknown.status_code, unknown.json()) == (400, SPENT)
    seed = sim.logic("x").authorize(CLIENT)
    wrong = await sim.client.post(
        X_TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": seed, "client_id": CLIENT},
        auth=("someone-else", "secret"),
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized_client")
    right = await sim.client.post(
        X_TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": seed, "client_id": CLIENT},
        auth=(CLIENT, "secret"),
    )
    assert right.status_code == 200


async def test_x_adopts_its_own_tokens_after_a_restart(sim: Sim, wall: Wall) -> None:
    """A refresh token shaped like the simulator's, from before a reset, starts a family."""
    issued = await x_issued(sim, _x.SANDBOX_SEED)
    sim.state.reset()
    sim.logic("x").clock = wall
    assert (await x_refresh(sim, issued["refresh_token"])).status_code == 200
    assert (await x_refresh(sim, issued["refresh_token"])).status_code == 400  # now spent


# --- LinkedIn -------------------------------------------------------------------------------


async def test_linkedin_refresh_keeps_the_same_refresh_token(sim: Sim, wall: Wall) -> None:
    """60-day access tokens; the refresh token is the same string, its year not extended."""
    seed = sim.logic("linkedin").authorize()
    response = await li_refresh(sim, seed)
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["expires_in"] == 5_184_000 and first["refresh_token"] == seed
    assert first["refresh_token_expires_in"] == 365 * 86_400
    wall.now += 59 * 86_400
    second = (await li_refresh(sim, seed)).json()
    assert second["refresh_token"] == seed and second["access_token"] != first["access_token"]
    assert second["refresh_token_expires_in"] == 306 * 86_400
    assert (await li_refresh(sim, seed)).status_code == 200  # not single-use


async def test_linkedin_access_token_expires_on_posts(sim: Sim, wall: Wall) -> None:
    """An issued access token posts until its 60 days are up, then is 401."""
    issued = (await li_refresh(sim, _linkedin.SANDBOX_SEED)).json()
    assert (await li_post(sim, issued["access_token"], "in time")).status_code == 201
    wall.now += 60 * 86_400
    late = await li_post(sim, issued["access_token"], "too late")
    assert late.status_code == 401
    assert late.json()["code"] == "EXPIRED_ACCESS_TOKEN"


async def test_linkedin_refresh_token_dies_after_a_year(sim: Sim, wall: Wall) -> None:
    """Near the end the access token lives no longer than the refresh token; then 400."""
    seed = sim.logic("linkedin").authorize()
    wall.now += 360 * 86_400
    last = (await li_refresh(sim, seed)).json()
    assert last["expires_in"] == last["refresh_token_expires_in"] == 5 * 86_400
    wall.now += 5 * 86_400
    dead = await li_refresh(sim, seed)
    assert dead.status_code == 400
    assert dead.json() == {
        "error": "invalid_request",
        "error_description": "The provided authorization grant or refresh token is invalid, "
        "expired or revoked",
    }


async def test_linkedin_names_a_missing_parameter(sim: Sim, wall: Wall) -> None:
    """The client secret goes in the body; without it, a 400 that names it."""
    response = await li_refresh(sim, _linkedin.SANDBOX_SEED, client_secret=None)
    assert response.status_code == 400
    assert response.json()["error_description"] == 'A required parameter "client_secret" is missing'
    unknown = await li_refresh(sim, "made-up")
    assert unknown.status_code == 400


async def test_sim_tokens_shows_families_and_sets_the_lifetime_of_tokens_issued_next(
    sim: Sim, wall: Wall
) -> None:
    """``/_sim/tokens``: how many families and how many revoked; a POST sets the lifetime."""
    shown = (await sim.client.get("/_sim/tokens", params={"provider": "x"})).json()
    assert shown == {"lifetime": 7200, "families": 0, "revoked": 0}
    changed = await sim.client.post(
        "/_sim/tokens", params={"provider": "x"}, json={"lifetime": 302}
    )
    assert changed.json()["lifetime"] == 302
    first = await x_issued(sim, sim.logic("x").authorize(CLIENT))
    assert first["expires_in"] == 302
    await x_issued(sim, first["refresh_token"])
    await x_refresh(sim, first["refresh_token"])  # reused: its family is revoked
    shown = (await sim.client.get("/_sim/tokens", params={"provider": "x"})).json()
    assert shown == {"lifetime": 302, "families": 1, "revoked": 1}
    linkedin = await sim.client.post(
        "/_sim/tokens", params={"provider": "linkedin"}, json={"lifetime": 60}
    )
    assert linkedin.json()["lifetime"] == 60
    for bad in ({"lifetime": 0}, {"lifetime": "1"}, {}):
        refused = await sim.client.post("/_sim/tokens", params={"provider": "x"}, json=bad)
        assert refused.status_code == 400 and "lifetime" in refused.text
    unknown = await sim.client.get("/_sim/tokens", params={"provider": "resend"})
    assert unknown.status_code == 400
