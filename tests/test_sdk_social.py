"""SDK fidelity: X's official client (tweepy) and our adapter send the simulator the same post."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
import requests.adapters
import tweepy

from ringbearer._delivery import Delivered

from .kit import Sim, deliver_one, in_thread
from .kit import sim_fixture as sim_fixture  # the "sim" fixture: a running simulator
from .test_social import X_OAUTH2, X_SANDBOX, adapter_at, envelope
from .test_social import sim_seed as sim_seed  # the social tests' simulator seed

TWEEPY_HOST = "https://api.twitter.com"  # hard-coded in tweepy.client.BaseClient.request
TIMEOUT = 5.0


class ToSimulator(requests.adapters.HTTPAdapter):
    """The transport under tweepy's session, sending what it would send the API to the simulator.

    tweepy builds every URL from a host it hard-codes and signs the request
    before the transport sees it; only the destination changes here, as a
    forwarding proxy would, so what tweepy built and signed reaches the
    simulator untouched (which is why the simulator also checks an OAuth
    signature against the real API's URL). Each request is bounded in time.
    """

    def __init__(self, target: str) -> None:
        super().__init__(max_retries=0)
        self.target = target

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,  # replaced: TIMEOUT
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        assert request.url is not None and request.url.startswith(TWEEPY_HOST)
        request.url = self.target + request.url.removeprefix(TWEEPY_HOST)
        return super().send(request, stream, TIMEOUT, verify, cert, proxies)


def pointed_at(client: tweepy.Client, sim: Sim) -> tweepy.Client:
    client.session.trust_env = False  # no proxy from the environment
    client.session.mount(TWEEPY_HOST, ToSimulator(f"{sim.url}/x"))
    return client


def oauth1_client(sim: Sim, consumer_secret: str = "sandbox") -> tweepy.Client:
    """tweepy as an OAuth 1.0a user with the sandbox's keys, pointed at the simulator."""
    client = tweepy.Client(
        consumer_key="sandbox",
        consumer_secret=consumer_secret,
        access_token="sandbox",
        access_token_secret="sandbox",
    )
    return pointed_at(client, sim)


async def last_request(sim: Sim) -> dict[str, Any]:
    [seen] = await sim.requests("x")
    return seen


async def reset(sim: Sim) -> None:
    """Forget the SDK's post (the next text would be a duplicate) and its request log."""
    assert (await sim.client.post("/_sim/reset")).status_code == 200


def same_request(sdk: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    for part in ("method", "path", "query", "auth", "content_type"):
        assert sdk[part] == ours[part], part
    assert json.loads(sdk["body"]) == json.loads(ours["body"])


async def test_tweepy_oauth1_and_the_adapter_send_the_same_post(sim: Sim) -> None:
    """tweepy's OAuth 1.0a post is accepted (signature verified); ours is the same request."""
    client = oauth1_client(sim)
    text = "Gallery is up: the Smith wedding"
    answer = await in_thread(lambda: client.create_tweet(text=text, user_auth=True))
    assert sim.logic("x").posts[answer.data["id"]] == text
    sdk = await last_request(sim)
    await reset(sim)
    adapter, _ = adapter_at(sim, "x", X_SANDBOX)
    assert isinstance(await deliver_one(adapter, envelope({"text": text})), Delivered)
    ours = await last_request(sim)
    same_request(sdk, ours)
    assert (sdk["auth"], sdk["content_type"]) == ("OAuth", "application/json")


async def test_tweepy_oauth2_user_token_and_the_adapter_send_the_same_post(sim: Sim) -> None:
    """tweepy with an OAuth 2 user token posts with a Bearer; ours is the same request."""
    client = pointed_at(tweepy.Client(bearer_token="x-user-token-secret"), sim)
    text = "Booking open for 2025"
    answer = await in_thread(lambda: client.create_tweet(text=text, user_auth=False))
    assert sim.logic("x").posts[answer.data["id"]] == text
    sdk = await last_request(sim)
    await reset(sim)
    adapter, _ = adapter_at(sim, "x", X_OAUTH2)
    assert isinstance(await deliver_one(adapter, envelope({"text": text})), Delivered)
    same_request(sdk, await last_request(sim))
    assert sdk["auth"] == "Bearer"


async def test_tweepy_reply_matches_the_adapters_reply_to(sim: Sim) -> None:
    """tweepy's in_reply_to_tweet_id and our payload's reply_to put the same body on the wire."""
    client = pointed_at(tweepy.Client(bearer_token="x-user-token-secret"), sim)
    reply_to = "1346889436626259968"
    await in_thread(
        lambda: client.create_tweet(text="thanks!", in_reply_to_tweet_id=reply_to, user_auth=False)
    )
    sdk = await last_request(sim)
    await reset(sim)
    adapter, _ = adapter_at(sim, "x", X_OAUTH2)
    await deliver_one(adapter, envelope({"text": "thanks!", "reply_to": reply_to}))
    same_request(sdk, await last_request(sim))


async def test_tweepy_sees_the_simulators_duplicate_and_rate_limit_answers(sim: Sim) -> None:
    """The simulator's 403 and 429 are what tweepy parses into its own exceptions."""
    client = pointed_at(tweepy.Client(bearer_token="x-user-token-secret"), sim)
    await in_thread(lambda: client.create_tweet(text="once", user_auth=False))
    try:
        await in_thread(lambda: client.create_tweet(text="once", user_auth=False))
    except tweepy.Forbidden as exc:
        assert exc.api_messages == ["You are not allowed to create a Tweet with duplicate content."]
    else:
        raise AssertionError("tweepy accepted a duplicate")
    await sim.faults("x", storm=True, retry_after=30)
    try:
        await in_thread(lambda: client.create_tweet(text="later", user_auth=False))
    except tweepy.TooManyRequests as exc:
        assert exc.response.headers["x-rate-limit-remaining"] == "0"
    else:
        raise AssertionError("tweepy saw no rate limit")


async def test_tweepy_signed_with_a_wrong_secret_is_refused(sim: Sim) -> None:
    """The simulator really checks tweepy's OAuth 1.0a signature: a wrong secret is a 401."""
    client = oauth1_client(sim, consumer_secret="not-the-secret")
    try:
        await in_thread(lambda: client.create_tweet(text="forged", user_auth=True))
    except tweepy.Unauthorized:
        pass
    else:
        raise AssertionError("a forged signature was accepted")
    assert sim.logic("x").posts == {}
