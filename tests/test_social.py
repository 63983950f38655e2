"""The social family: Facebook Page, Instagram, LinkedIn and X against the simulator and mocks."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import cattrs
import httpx
import pytest

from ringbearer import _converter
from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import SecretRef
from ringbearer.integrations import AdapterContext, _oauth1, provider_kinds, social
from ringbearer.integrations._base import Adapter
from ringbearer.integrations.social import (
    FacebookPageSettings,
    InstagramSettings,
    LinkedInSettings,
    XSettings,
)
from ringbearer.resilience import RetryPolicy, RetrySettings

from . import kit
from .kit import Sim, context, deliver_one, mock_context, permanent, retry
from .kit import sim_fixture as sim_fixture

T0 = kit.T0  # a fixed wall clock for the simulator: 2023-11-14 22:13:20 UTC
PAGE, IG_USER = "1234567890", "17841400000000001"
AUTHOR = "urn:li:organization:123456789"
KEYS = {
    "PAGE_TOKEN": "EAAPageTokenSecret",
    "IG_TOKEN": "IGQVUserTokenSecret",
    "LI_TOKEN": "AQVLinkedInTokenSecret",
    "X_TOKEN": "x-user-token-secret",
    "X_CK": "consumer-key-1",
    "X_CS": "consumer-secret-1",
    "X_AT": "access-token-1",
    "X_ATS": "access-token-secret-1",
    "SANDBOX": "sandbox",
    "INVALID": "invalid",
    "APP_ONLY": "app-only",
    "WRONG": "wrong-secret",
}


def ref(name: str) -> SecretRef:
    return SecretRef(env=name)


FACEBOOK = FacebookPageSettings(page_id=PAGE, page_token=ref("PAGE_TOKEN"))
INSTAGRAM = InstagramSettings(ig_user_id=IG_USER, access_token=ref("IG_TOKEN"))
LINKEDIN = LinkedInSettings(access_token=ref("LI_TOKEN"), author=AUTHOR, version="202601")
X_OAUTH2 = XSettings(auth="oauth2", access_token=ref("X_TOKEN"))
X_OAUTH1 = XSettings(
    auth="oauth1",
    access_token=ref("X_AT"),
    consumer_key=ref("X_CK"),
    consumer_secret=ref("X_CS"),
    access_token_secret=ref("X_ATS"),
)
X_SANDBOX = XSettings(
    auth="oauth1",
    access_token=ref("SANDBOX"),
    consumer_key=ref("SANDBOX"),
    consumer_secret=ref("SANDBOX"),
    access_token_secret=ref("SANDBOX"),
)
SETTINGS: dict[str, Any] = {
    "facebook_page": FACEBOOK,
    "instagram": INSTAGRAM,
    "linkedin": LINKEDIN,
    "x": X_OAUTH2,
}
PAYLOADS: dict[str, dict[str, Any]] = {
    "facebook_page": {"message": "New gallery: the Smith wedding", "link": "https://ex.com/g/1"},
    "instagram": {
        "image_url": "https://cdn.example.com/smith/01.jpg",
        "caption": "The Smith wedding #weddings",
        "alt_text": "A couple under an oak tree",
    },
    "linkedin": {"text": "We are hiring (2 roles) — see https://ex.com/jobs_2024 #hiring"},
    "x": {"text": "Gallery is up: https://example.com/g/smith-wedding-2024"},
}


def envelope(payload: Mapping[str, Any], **fields: Any) -> Envelope:
    """Message 7's envelope (the id :func:`build`'s checkpoint expects)."""
    return kit.envelope(payload, key="msg-0007", message_id=7, **fields)


@attrs.define
class Run:
    """One delivery: its outcome, what was saved between steps, what was sent."""

    outcome: Outcome
    saved: list[dict[str, Any]]
    sent: list[httpx.Request]


def build(
    kind: str, settings: Any, ctx: AdapterContext | None = None
) -> tuple[Adapter, list[dict[str, Any]]]:
    """The kind's adapter, and the list of the progress it saves between steps."""
    saved: list[dict[str, Any]] = []

    async def checkpoint(message_id: int, progress: Mapping[str, Any]) -> None:
        assert message_id == 7
        saved.append(dict(progress))

    ctx = attrs.evolve(ctx or context(KEYS, name=kind), checkpoint=checkpoint)
    return provider_kinds()[kind].build(settings, ctx), saved


async def mock(
    kind: str,
    answers: list[httpx.Response],
    payload: Mapping[str, Any] | None = None,
    settings: Any = None,
    **envelope_fields: Any,
) -> Run:
    """Deliver one message against canned answers, given in order."""
    queue = list(answers)
    ctx, sent = mock_context(KEYS, lambda request: queue.pop(0), name=kind)
    adapter, saved = build(kind, settings or SETTINGS[kind], ctx)
    outcome = await deliver_one(adapter, envelope(payload or PAYLOADS[kind], **envelope_fields))
    return Run(outcome, saved, sent)


def graph_error(
    code: int, status: int = 400, headers: Mapping[str, str] | None = None, **fields: Any
) -> httpx.Response:
    error = {"message": f"error {code}", "type": "OAuthException", "code": code, **fields}
    error.setdefault("fbtrace_id", "AbCdEfGhIjK")
    return httpx.Response(status, json={"error": error}, headers=headers)


# --- the simulator ------------------------------------------------------------------


@pytest.fixture
def sim_seed() -> int:
    return 11


def adapter_at(sim: Sim, kind: str, settings: Any = None) -> tuple[Adapter, list[dict[str, Any]]]:
    """The kind's adapter in sandbox mode, aimed at the simulator."""
    return build(kind, settings or SETTINGS[kind], sim.context(kind, KEYS))


async def deliver_to(sim: Sim, kind: str, settings: Any = None, **fields: Any) -> Outcome:
    """One message of the kind, delivered to the simulator; ``payload`` replaces the sample."""
    payload = fields.pop("payload", PAYLOADS[kind])
    adapter, _ = adapter_at(sim, kind, settings)
    return await deliver_one(adapter, envelope(payload, **fields))


# --- the table and the settings -----------------------------------------------------


def test_social_rows_are_step_providers_of_the_social_family() -> None:
    """The four kinds are in the table, family social, each built on the step seam."""
    kinds = provider_kinds()
    assert {k: kinds[k].family for k in SETTINGS} == dict.fromkeys(SETTINGS, "social")
    assert [row.kind for row in social.KINDS] == list(SETTINGS)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("facebook_page", {"page_id": "1", "page_token": {"env": "K"}, "api_version": "v19.0"}),
        ("instagram", {"ig_user_id": "17841", "access_token": {"credential": "ig"}}),
        ("linkedin", {"access_token": {"env": "K"}, "author": AUTHOR, "version": "202507.01"}),
        ("x", {"auth": "oauth2", "access_token": {"env": "K"}, "text_limit": 25000}),
        (
            "x",
            {
                "auth": "oauth1",
                "access_token": {"env": "A"},
                "access_token_secret": {"env": "B"},
                "consumer_key": {"env": "C"},
                "consumer_secret": {"env": "D"},
            },
        ),
    ],
)
def test_settings_structure_from_toml_shapes(kind: str, raw: dict[str, Any]) -> None:
    """Each settings class structures from TOML-shaped data with the project's converter."""
    settings_type = provider_kinds()[kind].settings_type
    assert isinstance(_converter.make().structure(raw, settings_type), settings_type)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("facebook_page", {"page_id": "my-page", "page_token": {"env": "K"}}),
        ("facebook_page", {"page_id": "1", "page_token": {"env": "K"}, "api_version": "21"}),
        ("facebook_page", {"page_id": "1", "page_token": "EAAinline"}),
        ("instagram", {"ig_user_id": "1", "access_token": {"env": "K"}, "app_secret": "x"}),
        ("linkedin", {"access_token": {"env": "K"}, "author": AUTHOR, "version": "20241101"}),
        ("linkedin", {"access_token": {"env": "K"}, "author": AUTHOR, "version": "202613"}),
        ("linkedin", {"access_token": {"env": "K"}, "author": "me", "version": "202601"}),
        ("x", {"auth": "oauth1", "access_token": {"env": "A"}, "consumer_key": {"env": "C"}}),
        ("x", {"auth": "oauth2", "access_token": {"env": "A"}, "consumer_key": {"env": "C"}}),
        ("x", {"auth": "basic", "access_token": {"env": "A"}}),
        ("x", {"auth": "oauth2", "access_token": {"env": "A"}, "text_limit": 0}),
    ],
)
def test_settings_reject_bad_config(kind: str, raw: dict[str, Any]) -> None:
    """Bad ids and versions, inline secrets, unknown keys, and keys the auth form does not take."""
    with pytest.raises(cattrs.BaseValidationError):
        _converter.make().structure(raw, provider_kinds()[kind].settings_type)


# --- payloads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload", "words"),
    [
        ("facebook_page", {"link": "https://ex.com"}, "'message' is required"),
        ("facebook_page", {"message": "hi", "link": "ex.com/x"}, "'link' must be an absolute"),
        ("facebook_page", {"message": "hi", "privacy": "x"}, "unknown field(s) 'privacy'"),
        ("instagram", {"caption": "hi"}, "'image_url' is required"),
        ("instagram", {"image_url": "ftp://ex.com/a.jpg"}, "'image_url' must be an absolute"),
        (
            "instagram",
            {"image_url": "https://ex.com/a.jpg", "caption": "c" * 2201},
            "'caption' is 2201 characters long, at most 2200",
        ),
        ("linkedin", {"text": "t" * 3001}, "'text' is 3001 characters long, at most 3000"),
        ("linkedin", {"text": "hi", "visibility": "LOGGED_IN"}, "'visibility' must be one of"),
        ("x", {"text": "a" * 281}, "'text' counts 281 characters as X counts them, at most 280"),
        ("x", {"text": "字" * 141}, "counts 282 characters"),
        ("x", {"text": "hi", "reply_to": "12ab"}, "'reply_to' must be a post id"),
        ("x", {"text": "   "}, "'text' must not be empty"),
    ],
)
def test_payload_checks_name_the_field(kind: str, payload: dict[str, Any], words: str) -> None:
    """Each provider refuses a payload that does not fit, naming the field."""
    adapter, _ = build(kind, SETTINGS[kind])
    with pytest.raises(InvalidPayload, match=re.escape(words)):
        adapter.validate(payload)


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("a" * 280, 280),
        ("字" * 140, 280),
        ("see https://example.com/" + "x" * 200, 4 + 23),
        ("(at https://ex.com/a_b.)", 4 + 23 + 2),  # the closing ".)" counts
        ("“quoted” — dash", 15),  # general punctuation weighs one
        ("👍🏽 and ❤️", 2 + 5 + 2),  # a modifier and a variation selector join their emoji
        ("👨\u200d👩\u200d👧", 2),  # a ZWJ family is one emoji
        ("e\u0301", 1),  # counted after NFC normalisation: é
    ],
)
def test_x_counts_text_as_x_does(text: str, length: int) -> None:
    """X's weighted length: CJK and emoji weigh two, links 23, sequences as one emoji."""
    assert social._x_length(text) == length


def test_x_text_limit_setting_allows_premium_lengths() -> None:
    """A Premium account's longer posts pass once text_limit is raised."""
    adapter, _ = build("x", attrs.evolve(X_OAUTH2, text_limit=25_000))
    adapter.validate({"text": "a" * 5000})


@pytest.mark.parametrize(
    ("text", "commentary"),
    [
        ("Hello (world) [1] {2} <3> @me *b* _i_ ~s~ | \\", None),
        ("#hiring now # alone", "#hiring now \\# alone"),
        ("see https://ex.com/a_(b)_c.", "see https://ex.com/a_\\(b\\)\\_c."),
    ],
)
def test_linkedin_commentary_escapes_little_markup(text: str, commentary: str | None) -> None:
    """Reserved little-format characters are escaped; hashtags and links stay as they are."""
    expected = commentary or re.sub(r"([\\|{}@\[\]()<>*_~])", r"\\\1", text)
    assert social.little_text(text) == expected


# --- Facebook Page ------------------------------------------------------------------


async def test_facebook_posts_form_to_the_page_feed(sim: Sim) -> None:
    """A post is a form POST to /v21.0/{page}/feed with the Page token; the post id is kept."""
    outcome = await deliver_to(sim, "facebook_page")
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(rf"{PAGE}_\d{{16}}", outcome.provider_id)
    [seen] = await sim.requests("facebook-page")
    assert (seen["method"], seen["path"]) == ("POST", f"/v21.0/{PAGE}/feed")
    assert seen["content_type"] == "application/x-www-form-urlencoded"
    assert parse_qs(seen["body"]) == {
        "message": ["New gallery: the Smith wedding"],
        "link": ["https://ex.com/g/1"],
        "access_token": [KEYS["PAGE_TOKEN"]],
    }


async def test_facebook_duplicate_is_permanent_first_and_delivered_on_a_retry(sim: Sim) -> None:
    """506 on a first attempt is the caller's duplicate; after an earlier attempt, our post."""
    assert isinstance(await deliver_to(sim, "facebook_page"), Delivered)
    first = await deliver_to(sim, "facebook_page")
    assert permanent("(#506) Duplicate status message")(first)
    assert await deliver_to(sim, "facebook_page", attempts=1) == Delivered(provider_id=None)


async def test_facebook_page_throttling_waits_as_the_usage_header_says(sim: Sim) -> None:
    """Code 80001 is refused, not taken, with the BUC header's wait, minutes made seconds."""
    page = sim.logic("facebook-page")
    page.page_limit, page.clock = 1, lambda: T0
    assert isinstance(await deliver_to(sim, "facebook_page"), Delivered)
    outcome = await deliver_to(sim, "facebook_page", payload={"message": "another"})
    assert retry(Taken.NO, after=86_400.0)(outcome)  # the first call ages out in 24 h
    assert "(#80001/2494055)" in outcome.reason


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"storm": True, "retry_after": 120}, retry(Taken.NO, after=120.0)),
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),
        ({"outage": True}, retry(Taken.MAYBE)),
        ({"permanent_rate": 1.0}, permanent("(#190/463) Error validating access token")),
    ],
)
async def test_facebook_fault_answers(
    sim: Sim, faults: dict[str, Any], expected: Callable[[Outcome], bool]
) -> None:
    """Throttling, server errors (codes 1, 2) and an expired token, each as Graph answers."""
    await sim.faults("facebook-page", **faults)
    assert expected(await deliver_to(sim, "facebook_page"))


async def test_facebook_invalid_token_is_permanent(sim: Sim) -> None:
    """Code 190 is permanent, with Graph's words and the fbtrace_id, and no secret."""
    settings = attrs.evolve(FACEBOOK, page_token=ref("INVALID"))
    outcome = await deliver_to(sim, "facebook_page", settings)
    assert permanent("(#190) Invalid OAuth access token")(outcome)
    assert "fbtrace_id" in outcome.reason


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (graph_error(4, status=403), retry(Taken.NO)),
        (graph_error(17), retry(Taken.NO)),
        (graph_error(32), retry(Taken.NO)),
        (graph_error(613), retry(Taken.NO)),
        (graph_error(341), retry(Taken.NO)),
        (graph_error(368), retry(Taken.NO)),
        (graph_error(1, status=500), retry(Taken.MAYBE)),
        (graph_error(2, status=503), retry(Taken.MAYBE)),
        (graph_error(100, is_transient=True), retry(Taken.MAYBE)),
        (graph_error(3), permanent("(#3)")),
        (graph_error(10), permanent("(#10)")),
        (graph_error(200), permanent("(#200)")),
        (graph_error(102), permanent("(#102)")),
        (graph_error(190, error_subcode=460), permanent("(#190/460)")),
        (graph_error(100, error_user_title="Bad link"), permanent("error 100: Bad link")),
        (graph_error(1609005), permanent("(#1609005)")),
        (graph_error(99999, status=500), retry(Taken.MAYBE)),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), retry(Taken.MAYBE)),
        (httpx.Response(200, json={"post_id": "1"}), retry(Taken.MAYBE)),
    ],
)
async def test_facebook_classifies_by_the_body_code(
    answer: httpx.Response, expected: Callable[[Outcome], bool]
) -> None:
    """The Graph code decides, whatever the status: throttling, transient, permanent."""
    run = await mock("facebook_page", [answer])
    assert expected(run.outcome), run.outcome


async def test_facebook_throttle_takes_the_longest_usage_estimate() -> None:
    """Of several business objects in the BUC header, the longest wait binds."""
    usage = {
        "1": [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 3}],
        "2": [
            {"type": "pages", "estimated_time_to_regain_access": 0},
            {"type": "instagram", "estimated_time_to_regain_access": 7},
        ],
    }
    headers = {"x-business-use-case-usage": json.dumps(usage)}
    run = await mock("facebook_page", [graph_error(80001, headers=headers)])
    assert retry(Taken.NO, after=420.0)(run.outcome)


async def test_facebook_request_is_exact() -> None:
    """The form has message, link and access_token, nothing else; the URL is versioned."""
    settings = attrs.evolve(FACEBOOK, api_version="v19.0")
    payload = {"message": "hi"}
    run = await mock("facebook_page", [httpx.Response(200, json={"id": "1_2"})], payload, settings)
    [request] = run.sent
    assert str(request.url) == f"https://graph.facebook.com/v19.0/{PAGE}/feed"
    assert parse_qs(request.content.decode()) == {
        "message": ["hi"],
        "access_token": [KEYS["PAGE_TOKEN"]],
    }
    assert run.outcome == Delivered(provider_id="1_2")


async def test_facebook_secret_echoed_back_is_redacted() -> None:
    """A provider error that repeats the token reaches the outcome scrubbed."""
    answer = graph_error(190, error_user_msg=f"token {KEYS['PAGE_TOKEN']} is bad")
    run = await mock("facebook_page", [answer])
    assert isinstance(run.outcome, Permanent)
    assert KEYS["PAGE_TOKEN"] not in run.outcome.reason and "***" in run.outcome.reason


# --- Instagram ----------------------------------------------------------------------


async def test_instagram_creates_then_publishes(sim: Sim) -> None:
    """A container is created, saved, then published; the media id is the provider id."""
    adapter, saved = adapter_at(sim, "instagram")
    outcome = await deliver_one(adapter, envelope(PAYLOADS["instagram"]))
    [container] = sim.logic("instagram").containers
    media_id = sim.logic("instagram").containers[container].media_id
    assert outcome == Delivered(provider_id=media_id)
    assert saved == [{"container": container}]
    create, publish = await sim.requests("instagram")
    assert (create["path"], publish["path"]) == (
        f"/v21.0/{IG_USER}/media",
        f"/v21.0/{IG_USER}/media_publish",
    )
    assert parse_qs(create["body"]) == {
        "image_url": ["https://cdn.example.com/smith/01.jpg"],
        "caption": ["The Smith wedding #weddings"],
        "alt_text": ["A couple under an oak tree"],
        "access_token": [KEYS["IG_TOKEN"]],
    }
    assert parse_qs(publish["body"]) == {
        "creation_id": [container],
        "access_token": [KEYS["IG_TOKEN"]],
    }


async def test_instagram_publishing_cap_waits_an_hour_and_keeps_the_container(sim: Sim) -> None:
    """Past the cap (9/2207042) the retry waits an hour, not taken; the container is kept."""
    sim.logic("instagram").publish_cap = 0
    adapter, saved = adapter_at(sim, "instagram")
    outcome = await deliver_one(adapter, envelope(PAYLOADS["instagram"]))
    assert retry(Taken.NO, after=social.PUBLISH_CAP_WAIT)(outcome)
    assert "(#9/2207042)" in outcome.reason
    assert saved == [{"container": next(iter(sim.logic("instagram").containers))}]


async def test_instagram_retry_never_creates_a_second_container(sim: Sim) -> None:
    """A retry with a saved container reads its status and publishes it; nothing is re-created."""
    logic = sim.logic("instagram")
    logic.publish_cap = 0
    adapter, saved = adapter_at(sim, "instagram")
    await deliver_one(adapter, envelope(PAYLOADS["instagram"]))
    logic.publish_cap = 50
    outcome = await deliver_one(
        adapter, envelope(PAYLOADS["instagram"], attempts=1, progress=saved[-1])
    )
    [container] = logic.containers
    assert outcome == Delivered(provider_id=logic.containers[container].media_id)
    seen = [(r["method"], r["path"]) for r in await sim.requests("instagram")]
    assert seen == [
        ("POST", f"/v21.0/{IG_USER}/media"),
        ("POST", f"/v21.0/{IG_USER}/media_publish"),
        ("GET", f"/v21.0/{container}"),
        ("POST", f"/v21.0/{IG_USER}/media_publish"),
    ]
    assert saved[-1] == {"container": container, "checked": 1}


async def test_instagram_retry_after_a_lost_publish_answer_is_delivered(sim: Sim) -> None:
    """When the container is already published, the retry is delivered without publishing."""
    adapter, saved = adapter_at(sim, "instagram")
    await deliver_one(adapter, envelope(PAYLOADS["instagram"]))
    # The first attempt published; say its answer was lost and the message came back.
    outcome = await deliver_one(
        adapter, envelope(PAYLOADS["instagram"], attempts=1, progress=saved[0])
    )
    assert outcome == Delivered(provider_id=None)
    methods = [r["method"] for r in await sim.requests("instagram")]
    assert methods == ["POST", "POST", "GET"]
    assert len(sim.logic("instagram").published[IG_USER]) == 1


async def test_instagram_expired_container_starts_over_once(sim: Sim) -> None:
    """A container that expired (24 h unpublished) is dropped and a new one published."""
    logic = sim.logic("instagram")
    now = [T0]
    logic.clock, logic.publish_cap = lambda: now[0], 0
    adapter, saved = adapter_at(sim, "instagram")
    await deliver_one(adapter, envelope(PAYLOADS["instagram"]))
    old = saved[-1]["container"]
    now[0] += 86_400
    logic.publish_cap = 50
    outcome = await deliver_one(
        adapter, envelope(PAYLOADS["instagram"], attempts=1, progress=saved[-1])
    )
    new = saved[-1]["container"]
    assert new != old and saved[-2:] == [{}, {"container": new}]
    assert outcome == Delivered(provider_id=logic.containers[new].media_id)
    assert logic.containers[old].status.value == "EXPIRED"


async def test_instagram_vanished_container_starts_over(sim: Sim) -> None:
    """A saved container Graph no longer knows (code 100/33) is replaced by a new one."""
    adapter, saved = adapter_at(sim, "instagram")
    env = envelope(PAYLOADS["instagram"], attempts=2, progress={"container": "404404404"})
    outcome = await deliver_one(adapter, env)
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert saved[0] == {} and len(sim.logic("instagram").containers) == 1


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"storm": True, "retry_after": 300}, retry(Taken.NO, after=300.0)),
        ({"error_rate": 1.0}, retry(Taken.NO)),  # creation failed: nothing posted
        ({"permanent_rate": 1.0}, permanent("(#190/463)")),
    ],
)
async def test_instagram_fault_answers(
    sim: Sim, faults: dict[str, Any], expected: Callable[[Outcome], bool]
) -> None:
    """Throttling (80002 and its usage header), a server error, an expired token."""
    await sim.faults("instagram", **faults)
    assert expected(await deliver_to(sim, "instagram"))


async def test_instagram_invalid_token_is_permanent(sim: Sim) -> None:
    """A token Graph cannot parse is permanent before any container exists."""
    outcome = await deliver_to(
        sim, "instagram", attrs.evolve(INSTAGRAM, access_token=ref("INVALID"))
    )
    assert permanent("(#190)")(outcome)
    assert sim.logic("instagram").containers == {}


CREATED = httpx.Response(200, json={"id": "555"})
RESUME: dict[str, Any] = {"attempts": 1, "progress": {"container": "555"}}


@pytest.mark.parametrize(
    ("answers", "envelope_fields", "expected"),
    [
        ([CREATED, graph_error(-1, error_subcode=2207001)], {}, retry(Taken.MAYBE)),
        ([CREATED, graph_error(-2, error_subcode=2207003)], {}, retry(Taken.MAYBE)),
        ([CREATED, graph_error(9007, error_subcode=2207027)], {}, retry(Taken.NO)),
        ([CREATED, graph_error(4, error_subcode=2207051)], {}, permanent("(#4/2207051)")),
        ([CREATED, graph_error(4)], {}, retry(Taken.NO)),
        ([CREATED, graph_error(100, error_subcode=2207004)], {}, permanent("(#100/2207004)")),
        (
            [
                CREATED,
                graph_error(
                    9,
                    error_subcode=2207042,
                    headers={
                        "x-business-use-case-usage": json.dumps(
                            {"1": [{"estimated_time_to_regain_access": 90}]}
                        )
                    },
                ),
            ],
            {},
            retry(Taken.NO, after=5400.0),
        ),
        ([graph_error(36000, error_subcode=2207004)], {}, permanent("(#36000/2207004)")),
        ([httpx.Response(200, json={"status_code": "IN_PROGRESS"})], RESUME, retry(Taken.NO)),
        ([graph_error(190)], RESUME, permanent("(#190)")),
        ([graph_error(2, status=503)], RESUME, retry(Taken.NO)),
        ([httpx.Response(200, json={"status_code": "LOST"})], RESUME, retry(Taken.MAYBE)),
    ],
)
async def test_instagram_classifies_each_step(
    answers: list[httpx.Response],
    envelope_fields: dict[str, Any],
    expected: Callable[[Outcome], bool],
) -> None:
    """Instagram's codes per step: a failed creation posted nothing; publishing is ambiguous."""
    run = await mock("instagram", answers, **envelope_fields)
    assert expected(run.outcome), run.outcome


async def test_instagram_failed_container_starts_over_within_the_attempt() -> None:
    """An ERROR container is replaced: status read, create, publish, in one attempt."""
    answers = [
        httpx.Response(200, json={"status_code": "ERROR", "id": "555"}),
        httpx.Response(200, json={"id": "556"}),
        httpx.Response(200, json={"id": "9001"}),
    ]
    run = await mock("instagram", answers, **RESUME)
    assert run.outcome == Delivered(provider_id="9001")
    assert run.saved == [{}, {"container": "556"}]
    check, create, publish = run.sent
    assert check.method == "GET" and check.url.path == "/v21.0/555"
    assert dict(check.url.params) == {"fields": "status_code", "access_token": KEYS["IG_TOKEN"]}
    assert parse_qs(publish.content.decode())["creation_id"] == ["556"]
    assert create.url.path == f"/v21.0/{IG_USER}/media"


async def test_instagram_fresh_container_is_not_restarted_in_the_same_attempt() -> None:
    """A new container that fails to publish ends the attempt; no create-publish loop."""
    answers = [
        httpx.Response(200, json={"status_code": "EXPIRED"}),
        httpx.Response(200, json={"id": "556"}),
        graph_error(-2, error_subcode=2207020),
    ]
    run = await mock("instagram", answers, **RESUME)
    assert retry(Taken.MAYBE)(run.outcome)
    assert len(run.sent) == 3


# --- LinkedIn -----------------------------------------------------------------------


async def test_linkedin_posts_as_the_author_with_version_headers(sim: Sim) -> None:
    """POST /rest/posts with the version headers and the Posts API body; the URN is kept."""
    outcome = await deliver_to(sim, "linkedin")
    assert isinstance(outcome, Delivered) and outcome.provider_id is not None
    assert re.fullmatch(r"urn:li:share:\d{19}", outcome.provider_id)
    [seen] = await sim.requests("linkedin")
    assert (seen["method"], seen["path"], seen["auth"]) == ("POST", "/rest/posts", "Bearer")
    assert seen["headers"]["linkedin-version"] == "202601"
    assert seen["headers"]["x-restli-protocol-version"] == "2.0.0"
    assert seen["content_type"] == "application/json"
    assert json.loads(seen["body"]) == {
        "author": AUTHOR,
        "commentary": "We are hiring \\(2 roles\\) — see https://ex.com/jobs_2024 #hiring",
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }


async def test_linkedin_duplicate_names_the_original_post_on_a_retry(sim: Sim) -> None:
    """422 DUPLICATE_POST: permanent on a first attempt; on a retry, the original's URN."""
    first = await deliver_to(sim, "linkedin")
    assert isinstance(first, Delivered)
    assert permanent("HTTP 422")(await deliver_to(sim, "linkedin"))
    assert await deliver_to(sim, "linkedin", attempts=2) == first


async def test_linkedin_spent_daily_limit_waits_until_midnight_utc(sim: Sim) -> None:
    """A 429 naming the DAY limit waits until 00:00 UTC at once: nothing passes before."""
    logic = sim.logic("linkedin")
    logic.daily_limit, logic.clock = 1, lambda: T0
    assert isinstance(await deliver_to(sim, "linkedin"), Delivered)
    outcome = await deliver_to(sim, "linkedin", payload={"text": "second"}, attempts=0)
    assert retry(Taken.NO, after=86_400 - T0 % 86_400)(outcome)  # 6,400 s: 22:13:20 to 00:00
    assert outcome.status == 429


def throttled(date: str, message: str = "Too many requests") -> httpx.Response:
    return httpx.Response(429, headers={"date": date}, json={"message": message, "status": 429})


async def test_linkedin_first_other_429s_back_off_on_the_policy() -> None:
    """A 429 that names no daily limit asks no wait on a message's first two attempts."""
    date = email.utils.formatdate(T0, usegmt=True)
    for attempts in (0, 1):
        run = await mock("linkedin", [throttled(date)], attempts=attempts)
        assert retry(Taken.NO, after=None)(run.outcome)


async def test_linkedin_first_other_429_is_not_dead_lettered_by_max_age() -> None:
    """With max_age shorter than the time to midnight, a first such 429 is still retried."""
    date = email.utils.formatdate(T0, usegmt=True)  # 22:13:20 UTC, 6,400 s before midnight
    run = await mock("linkedin", [throttled(date)])
    assert isinstance(run.outcome, Retry)
    policy = RetryPolicy(RetrySettings(max_age_seconds=3600.0))
    assert policy.next_delay(attempts=1, age=0.0, provider_wait=run.outcome.after) is not None


async def test_linkedin_persisting_429_waits_until_midnight_utc() -> None:
    """Once the backoff attempts are spent, any 429 without Retry-After waits until 00:00 UTC."""
    date = email.utils.formatdate(T0, usegmt=True)
    attempts = social.LINKEDIN_BACKOFF_ATTEMPTS
    run = await mock("linkedin", [throttled(date)], attempts=attempts)
    assert retry(Taken.NO, after=86_400 - T0 % 86_400)(run.outcome)


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),
        ({"outage": True}, retry(Taken.MAYBE)),
        ({"permanent_rate": 1.0}, permanent("ACCESS_DENIED")),
    ],
)
async def test_linkedin_fault_answers(
    sim: Sim, faults: dict[str, Any], expected: Callable[[Outcome], bool]
) -> None:
    """A 5xx may have posted; a permission error is permanent."""
    await sim.faults("linkedin", **faults)
    assert expected(await deliver_to(sim, "linkedin"))


async def test_linkedin_rate_limit_fault_waits_for_the_daily_reset(sim: Sim) -> None:
    """The simulator's 429 has a Date and no Retry-After: a persisting one waits to midnight."""
    await sim.faults("linkedin", storm=True)
    outcome = await deliver_to(sim, "linkedin", attempts=social.LINKEDIN_BACKOFF_ATTEMPTS)
    assert isinstance(outcome, Retry) and outcome.after is not None
    assert 0 < outcome.after <= 86_400 and outcome.taken is Taken.NO


async def test_linkedin_invalid_token_is_permanent(sim: Sim) -> None:
    """A 401 is permanent (a new token is needed)."""
    outcome = await deliver_to(sim, "linkedin", attrs.evolve(LINKEDIN, access_token=ref("INVALID")))
    assert permanent("HTTP 401: INVALID_ACCESS_TOKEN: Invalid access token")(outcome)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(201, headers={"x-restli-id": "urn:li:ugcPost:1"}), None),
        (httpx.Response(201, json={"id": "urn:li:share:2"}), None),
        (httpx.Response(201), retry(Taken.MAYBE)),
        (httpx.Response(429, headers={"retry-after": "30"}), retry(Taken.NO, after=30.0)),
        (
            httpx.Response(429, headers={"date": email.utils.formatdate(T0 + 6399, usegmt=True)}),
            retry(Taken.NO, after=None),
        ),
        (httpx.Response(503, text="Service Unavailable"), retry(Taken.MAYBE)),
        (httpx.Response(426, json={"status": 426, "code": "NONEXISTENT_VERSION"}), None),
        (httpx.Response(403, json={"status": 403, "serviceErrorCode": 100}), None),
        (httpx.Response(422, json={"status": 422, "message": "ERROR :: /author"}), None),
        (httpx.Response(400, json={"status": 400, "code": "ILLEGAL_ARGUMENT"}), None),
        (httpx.Response(504, text="Gateway Timeout"), retry(Taken.MAYBE)),
    ],
)
async def test_linkedin_classifies_each_answer(
    answer: httpx.Response, expected: Callable[[Outcome], bool] | None
) -> None:
    """201 reads the URN from x-restli-id (or the body); 429 waits; 4xx are permanent."""
    run = await mock("linkedin", [answer])
    if expected is not None:
        assert expected(run.outcome), run.outcome
    elif answer.is_success:
        assert isinstance(run.outcome, Delivered) and run.outcome.provider_id
    else:
        assert isinstance(run.outcome, Permanent) and run.outcome.status == answer.status_code


async def test_linkedin_request_is_exact() -> None:
    """The URL, the three headers and the visibility chosen by the payload."""
    payload = {"text": "hi", "visibility": "CONNECTIONS"}
    answer = httpx.Response(201, headers={"x-restli-id": "urn:li:share:1"})
    run = await mock("linkedin", [answer], payload)
    [request] = run.sent
    assert str(request.url) == "https://api.linkedin.com/rest/posts"
    assert request.headers["authorization"] == f"Bearer {KEYS['LI_TOKEN']}"
    assert request.headers["linkedin-version"] == "202601"
    assert request.headers["x-restli-protocol-version"] == "2.0.0"
    assert json.loads(request.content)["visibility"] == "CONNECTIONS"


# --- X ------------------------------------------------------------------------------


async def test_x_oauth2_posts_json_with_a_bearer_token(sim: Sim) -> None:
    """OAuth 2 user context: Bearer, JSON {"text"}, 201 with data.id as the provider id."""
    outcome = await deliver_to(sim, "x")
    assert isinstance(outcome, Delivered) and outcome.provider_id in sim.logic("x").posts
    [seen] = await sim.requests("x")
    assert (seen["method"], seen["path"], seen["auth"]) == ("POST", "/2/tweets", "Bearer")
    assert seen["content_type"] == "application/json"
    assert json.loads(seen["body"]) == PAYLOADS["x"]


async def test_x_oauth1_signature_verified_by_the_simulator(sim: Sim) -> None:
    """OAuth 1.0a with the sandbox secrets: the simulator checks the signature and accepts it."""
    payload = {"text": "signed", "reply_to": "1346889436626259968"}
    outcome = await deliver_to(sim, "x", X_SANDBOX, payload=payload)
    assert isinstance(outcome, Delivered)
    [seen] = await sim.requests("x")
    assert seen["auth"] == "OAuth"
    assert json.loads(seen["body"]) == {
        "text": "signed",
        "reply": {"in_reply_to_tweet_id": "1346889436626259968"},
    }


async def test_x_oauth1_bad_signature_is_refused(sim: Sim) -> None:
    """A signature made with the wrong secret is a 401, permanent."""
    settings = attrs.evolve(X_SANDBOX, consumer_secret=ref("WRONG"))
    assert permanent("HTTP 401: Unauthorized")(await deliver_to(sim, "x", settings))


async def test_x_duplicate_is_permanent_first_and_delivered_on_a_retry(sim: Sim) -> None:
    """403 duplicate content: the caller's on a first attempt, ours after an earlier one."""
    assert isinstance(await deliver_to(sim, "x"), Delivered)
    assert permanent("duplicate content")(await deliver_to(sim, "x"))
    assert await deliver_to(sim, "x", attempts=1) == Delivered(provider_id=None)


async def test_x_rate_limit_waits_for_the_window_reset(sim: Sim) -> None:
    """Past the window's limit, a 429 not taken, waiting until x-rate-limit-reset."""
    logic = sim.logic("x")
    logic.limit, logic.clock = 1, lambda: T0
    assert isinstance(await deliver_to(sim, "x"), Delivered)
    assert retry(Taken.NO, after=900.0)(await deliver_to(sim, "x", payload={"text": "more"}))


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"storm": True, "retry_after": 7}, retry(Taken.NO, after=7.0)),
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),
        ({"outage": True}, retry(Taken.MAYBE)),
        ({"permanent_rate": 1.0}, permanent("You are not permitted to perform this action")),
    ],
)
async def test_x_fault_answers(
    sim: Sim, faults: dict[str, Any], expected: Callable[[Outcome], bool]
) -> None:
    """A 429 names its reset; a 5xx may have posted; a 403 is permanent."""
    await sim.faults("x", **faults)
    assert expected(await deliver_to(sim, "x"))


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("INVALID", "HTTP 401: Unauthorized"),
        ("APP_ONLY", "HTTP 403: Unsupported Authentication: Authenticating with OAuth 2.0"),
    ],
)
async def test_x_refused_credentials_are_permanent(sim: Sim, token: str, words: str) -> None:
    """An invalid user token is a 401, an app-only token a 403: both permanent."""
    outcome = await deliver_to(sim, "x", attrs.evolve(X_OAUTH2, access_token=ref(token)))
    assert permanent(words)(outcome)


async def test_x_oauth1_request_is_signed_over_method_and_url() -> None:
    """The OAuth header verifies for POST and the URL with our secrets; the body is JSON."""
    answer = httpx.Response(201, json={"data": {"id": "42", "text": "t"}})
    run = await mock("x", [answer], settings=X_OAUTH1)
    [request] = run.sent
    assert run.outcome == Delivered(provider_id="42")
    assert str(request.url) == "https://api.x.com/2/tweets"
    assert request.headers["content-type"] == "application/json"
    oauth = _oauth1.parse_authorization(request.headers["authorization"])
    assert oauth is not None
    assert (oauth["oauth_consumer_key"], oauth["oauth_token"]) == (KEYS["X_CK"], KEYS["X_AT"])
    params = [(k, v) for k, v in oauth.items() if k != "oauth_signature"]
    base = _oauth1.signature_base_string("POST", str(request.url), params)
    assert oauth["oauth_signature"] == _oauth1.signature(base, KEYS["X_CS"], KEYS["X_ATS"])
    assert json.loads(request.content) == PAYLOADS["x"]


def reset_headers(now: float, **limits: tuple[int, float]) -> dict[str, str]:
    headers = {"date": email.utils.formatdate(now, usegmt=True)}
    for prefix, (remaining, reset) in limits.items():
        name = prefix.replace("_", "-")
        headers |= {f"{name}-remaining": str(remaining), f"{name}-reset": str(int(reset))}
    return headers


@pytest.mark.parametrize(
    ("headers", "after"),
    [
        (reset_headers(T0, x_rate_limit=(0, T0 + 60)), 60.0),
        (
            reset_headers(T0, x_rate_limit=(3, T0 + 60), x_user_limit_24hour=(0, T0 + 3600)),
            3600.0,
        ),
        (
            reset_headers(T0, x_rate_limit=(0, T0 + 60), x_app_limit_24hour=(0, T0 + 7200)),
            7200.0,
        ),
        (reset_headers(T0, x_rate_limit=(5, T0 + 60)), 60.0),
        ({}, None),
    ],
)
async def test_x_rate_limit_wait_is_the_latest_spent_window(
    headers: dict[str, str], after: float | None
) -> None:
    """A spent 24-hour allowance outlasts the 15-minute window; the latest spent reset binds."""
    body = {"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429}
    run = await mock("x", [httpx.Response(429, json=body, headers=headers)])
    assert retry(Taken.NO, after=after)(run.outcome), run.outcome


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(200, json={"data": {"id": "7", "text": "t"}}), None),
        (httpx.Response(201, json={"errors": [{"message": "x"}]}), retry(Taken.MAYBE)),
        (
            httpx.Response(400, json={"errors": [{"message": "$.text: is missing"}]}),
            permanent("HTTP 400: $.text: is missing"),
        ),
        (
            httpx.Response(403, json={"title": "Forbidden", "detail": "Not permitted."}),
            permanent("HTTP 403: Forbidden: Not permitted."),
        ),
        (httpx.Response(404, json={"title": "Not Found Error"}), permanent("HTTP 404")),
        (httpx.Response(503, text="Over capacity"), retry(Taken.MAYBE)),
    ],
)
async def test_x_classifies_each_answer(
    answer: httpx.Response, expected: Callable[[Outcome], bool] | None
) -> None:
    """2xx with data.id delivered, else malformed; 4xx permanent with X's words; 5xx maybe."""
    run = await mock("x", [answer])
    if expected is None:
        assert run.outcome == Delivered(provider_id="7")
    else:
        assert expected(run.outcome), run.outcome


# --- the simulators themselves ----------------------------------------------------------


async def test_graph_simulators_require_a_usable_token(sim: Sim) -> None:
    """No token is code 104, an unparseable one 190, each with an fbtrace_id."""
    url = f"/facebook-page/v21.0/{PAGE}/feed"
    missing = await sim.client.post(url, data={"message": "hi"})
    bad = await sim.client.post(url, data={"message": "hi", "access_token": "invalid"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, 104)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 190)
    assert len(bad.json()["error"]["fbtrace_id"]) == 11


async def test_facebook_simulator_takes_json_and_bearer_tokens(sim: Sim) -> None:
    """Graph also reads a JSON body and a bearer header; an unversioned path works too."""
    response = await sim.client.post(
        f"/facebook-page/{PAGE}/feed",
        json={"message": "json body"},
        headers={"Authorization": "Bearer EAAx"},
    )
    assert response.status_code == 200 and response.json()["id"].startswith(f"{PAGE}_")


async def test_instagram_simulator_containers(sim: Sim) -> None:
    """Publishing an unknown or a published container fails; status and quota are readable."""
    base, token = f"/instagram/v21.0/{IG_USER}", {"access_token": "t"}
    unknown = await sim.client.post(f"{base}/media_publish", data={"creation_id": "1", **token})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, 100)
    created = await sim.client.post(f"{base}/media", data={"image_url": "https://a/b.jpg", **token})
    container = created.json()["id"]
    status = await sim.client.get(
        f"/instagram/v21.0/{container}", params={"fields": "status_code", **token}
    )
    assert status.json() == {"status_code": "FINISHED"}
    first = await sim.client.post(f"{base}/media_publish", data={"creation_id": container, **token})
    again = await sim.client.post(f"{base}/media_publish", data={"creation_id": container, **token})
    assert first.status_code == 200 and again.status_code == 400
    status = await sim.client.get(
        f"/instagram/v21.0/{container}", params={"fields": "id,status_code", **token}
    )
    assert status.json() == {"id": container, "status_code": "PUBLISHED"}
    quota = await sim.client.get(f"{base}/content_publishing_limit", params=token)
    assert quota.json() == {
        "data": [{"quota_usage": 1, "config": {"quota_total": 50, "quota_duration": 86400}}]
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"LinkedIn-Version": "20241101"}, 426, "NONEXISTENT_VERSION"),
        ({}, 400, "VERSION_MISSING"),
    ],
)
async def test_linkedin_simulator_checks_the_version_header(
    sim: Sim, headers: dict[str, str], status: int, code: str
) -> None:
    """An inactive or malformed version is 426; a missing one 400."""
    response = await sim.client.post(
        "/linkedin/rest/posts", json={}, headers={"Authorization": "Bearer t", **headers}
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert "date" in response.headers


async def test_linkedin_simulator_names_missing_fields(sim: Sim) -> None:
    """A body without the required fields is a 422 naming each, in LinkedIn's form."""
    response = await sim.client.post(
        "/linkedin/rest/posts",
        json={"author": AUTHOR},
        headers={"Authorization": "Bearer t", "LinkedIn-Version": "202601"},
    )
    assert response.status_code == 422
    assert "ERROR :: /commentary :: field is required" in response.json()["message"]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer app-only", 403),
        ('OAuth oauth_consumer_key="k", oauth_token="t"', 401),
        (
            'OAuth oauth_consumer_key="k", oauth_nonce="n", oauth_signature="s", '
            'oauth_signature_method="PLAINTEXT", oauth_timestamp="1", oauth_token="t"',
            401,
        ),
        (
            'OAuth oauth_consumer_key="k", oauth_nonce="n", oauth_signature="s", '
            'oauth_signature_method="HMAC-SHA1", oauth_timestamp="1", oauth_token="t"',
            201,
        ),
        ("Basic dTpw", 401),
    ],
)
async def test_x_simulator_checks_the_auth_shape(sim: Sim, authorization: str, status: int) -> None:
    """An app-only token may not post; an OAuth header needs every oauth_* part and HMAC-SHA1."""
    response = await sim.client.post(
        "/x/2/tweets", json={"text": "hi"}, headers={"Authorization": authorization}
    )
    assert response.status_code == status, response.text


async def test_x_simulator_sends_rate_limit_headers_on_success(sim: Sim) -> None:
    """Every answer carries the window's limit, remaining and reset, and a Date."""
    response = await sim.client.post(
        "/x/2/tweets", json={"text": "hi"}, headers={"Authorization": "Bearer u"}
    )
    assert response.status_code == 201
    assert response.headers["x-rate-limit-limit"] == "200"
    assert response.headers["x-rate-limit-remaining"] == "199"
    reset = int(response.headers["x-rate-limit-reset"])
    date = email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    assert 899 <= reset - date <= 900
    data = response.json()["data"]
    assert data["edit_history_tweet_ids"] == [data["id"]] and data["text"] == "hi"


def test_sim_names_match_the_kinds() -> None:
    """A simulated provider is named as its kind with '-' for '_'."""
    from ringbearer.simulator._social import SPECS

    assert [spec.name for spec in SPECS] == [k.replace("_", "-") for k in SETTINGS]
    assert urlsplit(f"http://sim/{SPECS[0].name}/v21.0/1/feed").path.startswith("/facebook-page")
