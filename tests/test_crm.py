"""The CRM family (Táve, Light Blue, HoneyBook via Zapier): simulator and MockTransport."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import attrs
import cattrs
import httpx
import pytest

from ringbearer import __version__, _converter
from ringbearer._delivery import Delivered, Outcome, Permanent, Retry, Taken
from ringbearer._errors import InvalidPayload
from ringbearer._secrets import Secret, SecretRef
from ringbearer.integrations import AdapterContext, provider_kinds
from ringbearer.integrations.crm import (
    HONEYBOOK_SANDBOX_PATH,
    HoneyBookSettings,
    LightBlueSettings,
    TaveSettings,
    light_blue_id,
)
from ringbearer.simulator._honeybook import CatchHook
from ringbearer.simulator._light_blue import LightBlue
from ringbearer.simulator._tave import Workspace

from .kit import (
    Handler,
    Sim,
    answer,
    deliver_one,
    envelope,
    malformed,
    mock_context,
    permanent,
    retry,
)
from .kit import sim_fixture as sim_fixture

HOOK = "https://hooks.zapier.com/hooks/catch/1234567/ab5ecret/"
KEYS = {"TAVE": "vsco-5ecret-key", "LB": "lb-5ecret-key", "HOOK": HOOK}
SETTINGS: dict[str, Any] = {
    "tave": TaveSettings(api_key=SecretRef(env="TAVE")),
    "light_blue": LightBlueSettings(api_key=SecretRef(env="LB")),
    "honeybook": HoneyBookSettings(hook_url=SecretRef(env="HOOK")),
}
JOB_TYPE = "01h35ccwymj5ctckp8px1azhg6"
SOURCE = "01H35CD0Q2N6W8X1Y3Z4A5B6C7"
LEAD: dict[str, Any] = {
    "contact": {
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane@example.com",
        "phone": "+1 555 0100",
    },
    "job": {
        "job_type_id": JOB_TYPE,
        "event_date": "2026-09-12",
        "lead_source_id": SOURCE,
        "name": "Doe wedding",
        "notes": "Found us on Instagram.\nAsks about albums.",
    },
}
ENQUIRY: dict[str, Any] = {
    "contact": {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"},
    "shoot": {"title": "Doe wedding", "type": "Wedding", "date": "2026-09-12"},
    "message": "Hello!\nAre you free?",
}
PROJECT: dict[str, Any] = {
    "project": {"name": "Doe wedding", "date": "2026-09-12", "type": "Wedding"},
    "client": {"name": "Jane Doe", "email": "jane@example.com", "phone": "+1 555 0100"},
}
PAYLOADS = {"tave": LEAD, "light_blue": ENQUIRY, "honeybook": PROJECT}
ULID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}")


@attrs.define
class Checkpoints:
    """Records what the lane saved after each step, as the store would."""

    saved: list[dict[str, Any]] = attrs.Factory(list)
    then: Callable[[], Awaitable[None]] | None = None  # runs after each save

    async def __call__(self, message_id: int, progress: Mapping[str, Any]) -> None:
        assert message_id == 7
        self.saved.append(json.loads(json.dumps(progress)))  # JSON-serialisable, as stored
        if self.then is not None:
            await self.then()


async def deliver(
    kind: str,
    ctx: AdapterContext,
    payload: Mapping[str, Any] | None = None,
    *,
    key: str = "lead-0001",
    progress: Mapping[str, Any] | None = None,
) -> Outcome:
    adapter = provider_kinds()[kind].build(SETTINGS[kind], ctx)
    env = envelope(payload or PAYLOADS[kind], key=key, message_id=7, progress=progress)
    return await deliver_one(adapter, env)


@pytest.fixture
def sim_seed() -> int:
    return 7


# --- the table and settings --------------------------------------------------------


def test_crm_rows() -> None:
    """The three kinds are crm rows, Táve as a multi-step provider."""
    kinds = provider_kinds()
    assert {k: kinds[k].family for k in ("tave", "light_blue", "honeybook")} == dict.fromkeys(
        ("tave", "light_blue", "honeybook"), "crm"
    )


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("tave", {"api_key": {"env": "K"}}),
        ("tave", {"api_key": {"env": "K"}, "base_url": "https://tave.io"}),
        ("light_blue", {"api_key": {"credential": "lb"}, "source": "Acme studio site"}),
        ("honeybook", {"hook_url": {"env": "HOOK"}}),
    ],
)
def test_settings_structure(kind: str, raw: dict[str, Any]) -> None:
    """Each settings class structures from TOML-shaped data with the project's converter."""
    settings_type = provider_kinds()[kind].settings_type
    assert isinstance(_converter.make().structure(raw, settings_type), settings_type)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("tave", {"api_key": "inline"}),
        ("light_blue", {"api_key": {"env": "K"}, "id": "x"}),
        ("honeybook", {"hook_url": HOOK}),
    ],
)
def test_settings_reject_inline_secrets_and_unknown_keys(kind: str, raw: dict[str, Any]) -> None:
    """Secrets must be references; unknown keys are config errors."""
    with pytest.raises(cattrs.BaseValidationError):
        _converter.make().structure(raw, provider_kinds()[kind].settings_type)


# --- Táve / VSCO Workspace: requests --------------------------------------------------


def tave_ok(request: httpx.Request) -> httpx.Response:
    step = request.url.path.rsplit("/", 1)[1]
    ids = {"address-book": "01h000000000000000000contc", "job": "01h000000000000000000j0b00"}
    return httpx.Response(201, json={"id": ids.get(step, "01h0000000000000000001ink0")})


async def test_tave_three_requests() -> None:
    """A lead is POST address-book, job, then job-contact, with the key in X-API-KEY."""
    checkpoints = Checkpoints()
    ctx, sent = mock_context(KEYS, tave_ok, checkpoint=checkpoints)
    outcome = await deliver("tave", ctx)
    assert outcome == Delivered(provider_id="01h000000000000000000j0b00")
    assert [str(r.url) for r in sent] == [
        "https://workspace.vsco.co/api/v2/address-book",
        "https://workspace.vsco.co/api/v2/job",
        "https://workspace.vsco.co/api/v2/job-contact",
    ]
    assert all(r.headers["x-api-key"] == KEYS["TAVE"] for r in sent)
    assert all("authorization" not in r.headers for r in sent)
    person, job, link = (json.loads(r.content) for r in sent)
    assert person == {
        "kind": "person",
        "firstName": "Jane",
        "lastName": "Doe",
        "email": "jane@example.com",
        "cellPhone": {"formatted": "+1 555 0100"},
    }
    assert job == {
        "stage": "lead",
        "jobTypeId": JOB_TYPE,
        "eventDate": "2026-09-12",
        "leadSourceId": SOURCE.lower(),
        "name": "Doe wedding",
        "leadNotes": "Found us on Instagram.\nAsks about albums.",
    }
    contact_id, job_id = "01h000000000000000000contc", "01h000000000000000000j0b00"
    assert link == {"contactId": contact_id, "jobId": job_id, "client": True}
    assert checkpoints.saved == [
        {"contact": contact_id},
        {"contact": contact_id, "job": job_id},
    ]


@pytest.mark.parametrize(
    ("phone", "sent"),
    [
        ("+15550100", {"e164": "+15550100"}),
        ("(800) 560-8283 x123", {"formatted": "(800) 560-8283 x123"}),
        (None, None),
    ],
)
async def test_tave_phone_object(phone: str | None, sent: dict[str, str] | None) -> None:
    """The phone goes as VSCO's phone object: e164 when it is one, else formatted."""
    ctx, requests = mock_context(KEYS, tave_ok)
    await deliver("tave", ctx, lead(contact={"phone": phone}))
    assert json.loads(requests[0].content).get("cellPhone") == sent


async def test_tave_resumes_from_saved_progress() -> None:
    """With both ids saved only the link is sent; with the contact saved, job and link."""
    ctx, sent = mock_context(KEYS, tave_ok)
    saved = {"contact": "01h000000000000000000aaaaa", "job": "01h000000000000000000bbbbb"}
    outcome = await deliver("tave", ctx, progress=saved)
    assert outcome == Delivered(provider_id=saved["job"])
    assert [r.url.path for r in sent] == ["/api/v2/job-contact"]
    ctx, sent = mock_context(KEYS, tave_ok)
    await deliver("tave", ctx, progress={"contact": saved["contact"]})
    assert [r.url.path for r in sent] == ["/api/v2/job", "/api/v2/job-contact"]


def tave_error(status: int, title: str, info: Any, kind: str = "unknown") -> Handler:
    body = {"type": kind, "title": title, "detail": info, "status": status}
    return answer(status, body)


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(201, {"kind": "person"}), malformed),
        (answer(200, "created"), malformed),
        (
            tave_error(400, "Validation Error", {"firstName": ["too long"]}, "validation-error"),
            permanent("HTTP 400: creating the contact: Validation Error: firstName: too long"),
        ),
        (tave_error(422, "Unprocessable", "bad"), permanent("HTTP 422")),
        (tave_error(401, "Unauthorized", "API key is missing or invalid"), permanent("invalid")),
        (tave_error(403, "Forbidden", "no access"), permanent("HTTP 403")),
        (tave_error(404, "Not Found", "No route"), permanent("HTTP 404: creating the contact")),
        (
            answer(429, {"type": "quota-limit"}, {"retry-after": "30"}),
            retry(Taken.NO, 30.0),
        ),
        (tave_error(500, "Internal Server Error", "oops"), retry(Taken.MAYBE)),
        (tave_error(502, "Bad Gateway", "oops"), retry(Taken.MAYBE)),
        # No idempotency key: even a 503 may have come after the record was made.
        (tave_error(503, "Service Unavailable", "later"), retry(Taken.MAYBE)),
        (
            # The legacy host tave.io redirects to workspace.vsco.co: fix the setting.
            answer(302, "", {"location": "https://workspace.vsco.co/api/v2/address-book"}),
            permanent(
                "HTTP 302: the provider redirects to https://workspace.vsco.co/api/v2/address-book;"
                " check the integration's configured base URL",
                302,
            ),
        ),
    ],
)
async def test_tave_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every documented answer to a step maps to its outcome."""
    ctx, _ = mock_context(KEYS, handler)
    outcome = await deliver("tave", ctx)
    assert expect(outcome), outcome


async def test_tave_link_to_a_deleted_record_is_permanent() -> None:
    """A 404 on the link means a saved contact or job was deleted: stop, do not re-create."""
    ctx, sent = mock_context(KEYS, tave_error(404, "Not Found", 'Contact "x" was not found.'))
    progress = {"contact": "01h000000000000000000aaaaa", "job": "01h000000000000000000bbbbb"}
    outcome = await deliver("tave", ctx, progress=progress)
    assert isinstance(outcome, Permanent) and outcome.status == 404
    assert "was deleted" in outcome.reason and "linking the contact" in outcome.reason
    assert len(sent) == 1


async def test_tave_sandbox_prefix() -> None:
    """In the sandbox the API's real path follows the simulator's prefix."""
    ctx, sent = mock_context(KEYS, tave_ok, base_url_override="http://127.0.0.1:8700/tave")
    await deliver("tave", ctx)
    assert str(sent[0].url) == "http://127.0.0.1:8700/tave/api/v2/address-book"


# --- Táve against the simulator --------------------------------------------------------


async def test_tave_lead_in_the_simulator(sim: Sim) -> None:
    """The simulator keeps a contact, a lead job and the client link; the job id is returned."""
    checkpoints = Checkpoints()
    outcome = await deliver("tave", sim.context("tave", KEYS, checkpoint=checkpoints))
    workspace = sim.logic("tave")
    assert isinstance(workspace, Workspace) and isinstance(outcome, Delivered)
    (contact_id,) = workspace.contacts
    (job_id,) = workspace.jobs
    (link,) = workspace.links.values()
    assert outcome.provider_id == job_id and ULID.fullmatch(job_id)
    assert workspace.contacts[contact_id]["name"] == "Jane Doe"
    assert workspace.jobs[job_id]["stage"] == "lead"
    assert (link["contactId"], link["jobId"], link["roleKinds"]) == (contact_id, job_id, ["client"])
    assert checkpoints.saved == [{"contact": contact_id}, {"contact": contact_id, "job": job_id}]
    stats = await sim.stats("tave")
    assert (stats["requests"], stats["accepted"], stats["unique_keys"]) == (3, 3, 1)


async def test_tave_retry_never_repeats_a_completed_step(sim: Sim) -> None:
    """Step 2 fails; the retry with the saved progress sends job and link, never the contact."""
    checkpoints = Checkpoints(then=lambda: sim.faults("tave", error_rate=1.0))
    first = await deliver("tave", sim.context("tave", KEYS, checkpoint=checkpoints))
    assert isinstance(first, Retry) and first.taken is Taken.MAYBE and first.status == 500
    assert "creating the job" in first.reason
    ((contact_id,),) = [list(p.values()) for p in checkpoints.saved]
    await sim.faults("tave")
    again = Checkpoints()
    second = await deliver(
        "tave", sim.context("tave", KEYS, checkpoint=again), progress=checkpoints.saved[-1]
    )
    workspace = sim.logic("tave")
    assert isinstance(workspace, Workspace) and isinstance(second, Delivered)
    assert list(workspace.contacts) == [contact_id] and len(workspace.jobs) == 1
    paths = [seen["path"] for seen in await sim.requests("tave")]
    assert paths == [
        "/api/v2/address-book",
        "/api/v2/job",
        "/api/v2/job",
        "/api/v2/job-contact",
    ]
    assert again.saved == [{"contact": contact_id, "job": second.provider_id}]


async def test_tave_rate_limit_waits_retry_after(sim: Sim) -> None:
    """A quota-limit 429 is a retry, not taken, after the Retry-After the simulator asked."""
    await sim.faults("tave", storm=True, retry_after=7)
    outcome = await deliver("tave", sim.context("tave", KEYS))
    assert outcome == Retry(
        "HTTP 429: creating the contact: Too Many Requests: "
        "Exceeded request quota, see Retry-After header",
        taken=Taken.NO,
        after=7.0,
        status=429,
    )


@pytest.mark.parametrize(
    ("faults", "expect"),
    [
        ({"permanent_rate": 1.0}, permanent("email: This value is not a valid email address.")),
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),
        ({"outage": True}, retry(Taken.MAYBE)),  # 503: the record may have been made
        ({"malformed_rate": 1.0}, malformed),
    ],
)
async def test_tave_simulated_faults(
    sim: Sim, faults: dict[str, Any], expect: Callable[[Outcome], bool]
) -> None:
    """The simulator's own error shapes classify as documented."""
    await sim.faults("tave", **faults)
    outcome = await deliver("tave", sim.context("tave", KEYS))
    assert expect(outcome), outcome


async def test_tave_bad_key_in_the_simulator(sim: Sim) -> None:
    """A key the simulator refuses is a permanent 401, and the reason keeps no secret."""
    ctx = sim.context("tave", KEYS, secrets=lambda ref: Secret("invalid"))
    outcome = await deliver("tave", ctx)
    assert permanent("HTTP 401: creating the contact: Unauthorized")(outcome), outcome


async def test_tave_link_to_unknown_records_in_the_simulator(sim: Sim) -> None:
    """Saved ids the simulator does not know end the message permanently at the link."""
    progress = {"contact": "01h000000000000000000aaaaa", "job": "01h000000000000000000bbbbb"}
    outcome = await deliver("tave", sim.context("tave", KEYS), progress=progress)
    assert isinstance(outcome, Permanent) and outcome.status == 404
    assert "was deleted" in outcome.reason


# --- Táve: the simulator's own answers ---------------------------------------------------

TAVE_AUTH = {"X-API-KEY": "k"}
PERSON = {"kind": "person", "firstName": "Jane", "lastName": "Doe"}


async def test_tave_simulator_creates_with_ulids(sim: Sim) -> None:
    """Records are 201 with a lowercase ULID; Bearer works as well as X-API-KEY."""
    person = await sim.client.post("/tave/api/v2/address-book", json=PERSON, headers=TAVE_AUTH)
    job = await sim.client.post(
        "/tave/api/v2/job",
        json={"stage": "lead", "jobTypeId": JOB_TYPE},
        headers={"Authorization": "Bearer k"},
    )
    assert (person.status_code, job.status_code) == (201, 201)
    assert person.json()["name"] == "Jane Doe" and job.json()["stage"] == "lead"
    first, second = person.json()["id"], job.json()["id"]
    assert ULID.fullmatch(first) and ULID.fullmatch(second) and first < second


async def test_tave_simulator_ids_repeat_with_the_seed(sim: Sim) -> None:
    """The same seed gives the same ids after a reset."""

    async def first_id() -> str:
        await sim.client.post("/_sim/reset")
        response = await sim.client.post(
            "/tave/api/v2/address-book", json=PERSON, headers=TAVE_AUTH
        )
        return str(response.json()["id"])

    assert await first_id() == await first_id()


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "expected"),
    [
        ("/address-book", PERSON, {}, 401, {"detail": "API key is missing or invalid"}),
        ("/address-book", PERSON, {"X-API-KEY": "invalid"}, 401, {"title": "Unauthorized"}),
        (
            "/address-book",
            {"kind": "person", "firstName": "J" * 49},
            TAVE_AUTH,
            400,
            {
                "type": "validation-error",
                "detail": {
                    "firstName": ["This value is too long. It should have 48 characters or less."]
                },
            },
        ),
        ("/address-book", {"firstName": "J"}, TAVE_AUTH, 400, {"type": "validation-error"}),
        (
            "/address-book",
            {**PERSON, "cellPhone": "+15550100", "homePhone": {"e164": "555"}},
            TAVE_AUTH,
            400,
            {
                "detail": {
                    "cellPhone": ["This value should be of type object."],
                    "homePhone": ["This value is not a valid E.164 phone number."],
                }
            },
        ),
        (
            "/job",
            {"stage": "maybe", "jobTypeId": "x", "eventDate": "2026-02-30"},
            TAVE_AUTH,
            400,
            {
                "detail": {
                    "stage": ["The value must be one of: booked, completed, fulfillment, lead."],
                    "jobTypeId": ["This value is not a valid ULID."],
                    "eventDate": ["This value is not a valid date."],
                }
            },
        ),
        (
            "/job-contact",
            {"jobId": JOB_TYPE},
            TAVE_AUTH,
            400,
            {"detail": {"contactId": ["This value should not be blank."]}},
        ),
        (
            "/job-contact",
            {"contactId": JOB_TYPE, "jobId": JOB_TYPE},
            TAVE_AUTH,
            404,
            {"title": "Not Found", "detail": f'Contact "{JOB_TYPE}" was not found.'},
        ),
        ("/contacts", PERSON, TAVE_AUTH, 404, {"type": "unknown", "title": "Not Found"}),
    ],
)
async def test_tave_simulator_errors(
    sim: Sim,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    expected: dict[str, Any],
) -> None:
    """Auth, validation and unknown records get VSCO's JSON error shape."""
    response = await sim.client.post(f"/tave/api/v2{path}", json=body, headers=headers)
    assert response.status_code == status
    error = response.json()
    assert error["status"] == status
    assert {k: error[k] for k in expected} == expected


async def test_tave_simulator_link_needs_both_records(sim: Sim) -> None:
    """A link to a known contact and an unknown job is 404 naming the job."""
    person = await sim.client.post("/tave/api/v2/address-book", json=PERSON, headers=TAVE_AUTH)
    link = {"contactId": person.json()["id"], "jobId": JOB_TYPE}
    response = await sim.client.post("/tave/api/v2/job-contact", json=link, headers=TAVE_AUTH)
    assert (response.status_code, response.json()["detail"]) == (
        404,
        f'Job "{JOB_TYPE}" was not found.',
    )


async def test_tave_simulator_methods_and_bodies(sim: Sim) -> None:
    """Other methods are 405; a body that is not a JSON object is 400."""
    wrong = await sim.client.get("/tave/api/v2/job", headers=TAVE_AUTH)
    assert wrong.status_code == 405
    bad = await sim.client.post("/tave/api/v2/job", content=b"[1]", headers=TAVE_AUTH)
    assert (bad.status_code, bad.json()["title"]) == (400, "Bad Request")


# --- Light Blue -------------------------------------------------------------------------


def lb_reply(text: str, status: int = 200) -> Handler:
    return answer(status, text)


async def test_light_blue_request() -> None:
    """One form POST to /api.php: key, type, Source, ID and the mapped parameters."""
    ctx, sent = mock_context(KEYS, lb_reply("0"))
    outcome = await deliver("light_blue", ctx)
    assert outcome == Delivered()
    (request,) = sent
    assert str(request.url) == "https://online.lightbluesoftware.com/api.php"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v for k, [v] in parse_qs(request.content.decode()).items()}
    assert form == {
        "key": KEYS["LB"],
        "type": "contact form",
        "Source": "ringbearer",
        "SourceAPIVersion": __version__,
        "ID": "lead-0001",
        "ContactNameFirst": "Jane",
        "ContactNameLast": "Doe",
        "ContactEmail": "jane@example.com",
        "ShootTitle": "Doe wedding",
        "ShootType": "Wedding",
        "ShootDate": "2026/09/12",
        "DateFormat": "yyyy/mm/dd",
        "Message": "Hello!\nAre you free?",
    }


async def test_light_blue_full_name_and_minimal_payload() -> None:
    """A full name goes as ContactNameFull; no shoot means no shoot or date parameters."""
    ctx, sent = mock_context(KEYS, lb_reply("0"))
    payload = {"contact": {"name": "Jane Doe", "phone_mobile": "07700 900000", "tag": "web"}}
    await deliver("light_blue", ctx, payload)
    form = {k: v for k, [v] in parse_qs(sent[0].content.decode()).items()}
    assert {k: v for k, v in form.items() if k.startswith(("Contact", "Shoot", "Date"))} == {
        "ContactNameFull": "Jane Doe",
        "ContactPhoneMobile": "07700 900000",
        "ContactTag": "web",
    }


def test_light_blue_id_from_the_idempotency_key() -> None:
    """A short plain key is the ID; anything else becomes a digest of it, deterministically."""
    assert light_blue_id("3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7") == "3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7"
    odd = "order 42 / wedding é"
    assert light_blue_id(odd) == hashlib.blake2b(odd.encode(), digest_size=16).hexdigest()
    assert light_blue_id("k" * 65) == light_blue_id("k" * 65) != "k" * 65


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (lb_reply("0"), lambda o: o == Delivered()),
        (lb_reply("0\r\n"), lambda o: o == Delivered()),
        (lb_reply("-4\rThis is a duplicate API request"), lambda o: o == Delivered()),
        (lb_reply("-4 Duplicate request"), lambda o: o == Delivered()),
        (answer(200, {"status": 0}), lambda o: o == Delivered()),
        (answer(200, {"code": "-4", "message": "duplicate"}), lambda o: o == Delivered()),
        (lb_reply("-20\rYou must use HTTPS"), permanent("Light Blue status -20: You must use")),
        (lb_reply("-20"), permanent("status -20: HTTPS is required")),
        (lb_reply("-3\rInvalid API request type"), permanent("-3: Invalid API request type")),
        (lb_reply("-1\rInvalid API key"), permanent("Light Blue status -1: Invalid API key")),
        (lb_reply("-99"), permanent("Light Blue status -99: error")),
        (answer(200, {"status": -7, "message": "No subscription"}), permanent("No subscription")),
        (lb_reply(""), malformed),
        (lb_reply("<html>Maintenance</html>"), malformed),
        (answer(200, {"status": "ok"}), malformed),
        (lb_reply("Internal Server Error", 500), retry(Taken.MAYBE)),
        (lb_reply("Service Unavailable", 503), retry(Taken.NO)),
        (answer(429, "Too Many Requests", {"retry-after": "12"}), retry(Taken.NO, 12.0)),
        (lb_reply("Not Found", 404), permanent("HTTP 404")),
    ],
)
async def test_light_blue_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every status code and HTTP answer maps to its outcome, in any plausible reply form."""
    ctx, _ = mock_context(KEYS, handler)
    outcome = await deliver("light_blue", ctx)
    assert expect(outcome), outcome


async def test_light_blue_in_the_simulator(sim: Sim) -> None:
    """The enquiry lands in the simulated Inbox with its parameters, counted under its ID."""
    outcome = await deliver("light_blue", sim.context("light_blue", KEYS))
    assert outcome == Delivered()
    light_blue = sim.logic("light-blue")
    assert isinstance(light_blue, LightBlue)
    (item,) = light_blue.inbox
    assert (item["ContactEmail"], item["ShootDate"], item["ID"]) == (
        "jane@example.com",
        "2026/09/12",
        "lead-0001",
    )
    stats = await sim.stats("light-blue")
    assert (stats["accepted"], stats["unique_keys"]) == (1, 1)


async def test_light_blue_duplicate_is_delivered_and_counted_once(sim: Sim) -> None:
    """A retry of a taken enquiry gets -4, is Delivered, and the Inbox holds it once."""
    first = await deliver("light_blue", sim.context("light_blue", KEYS))
    again = await deliver("light_blue", sim.context("light_blue", KEYS))
    other = await deliver("light_blue", sim.context("light_blue", KEYS), key="lead-0002")
    assert first == again == other == Delivered()
    light_blue = sim.logic("light-blue")
    assert isinstance(light_blue, LightBlue)
    assert [item["ID"] for item in light_blue.inbox] == ["lead-0001", "lead-0002"]
    stats = await sim.stats("light-blue")
    assert (stats["requests"], stats["accepted"], stats["unique_keys"], stats["duplicates"]) == (
        3,
        2,
        2,
        0,
    )


@pytest.mark.parametrize(
    ("faults", "expect"),
    [
        ({"permanent_rate": 1.0}, permanent("Light Blue status -1: Invalid API key")),
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),
        ({"outage": True}, retry(Taken.NO)),
        ({"storm": True, "retry_after": 9}, retry(Taken.NO, 9.0)),
        ({"malformed_rate": 1.0}, malformed),
    ],
)
async def test_light_blue_simulated_faults(
    sim: Sim, faults: dict[str, Any], expect: Callable[[Outcome], bool]
) -> None:
    """The simulator's faults classify as documented; its rate limit's wait is honoured."""
    await sim.faults("light-blue", **faults)
    outcome = await deliver("light_blue", sim.context("light_blue", KEYS))
    assert expect(outcome), outcome


async def test_light_blue_bad_key_in_the_simulator(sim: Sim) -> None:
    """A refused key is a permanent -1, and the key is not in the reason."""
    ctx = sim.context("light_blue", KEYS, secrets=lambda ref: Secret("invalid"))
    outcome = await deliver("light_blue", ctx)
    assert permanent("Light Blue status -1")(outcome), outcome


LB_FORM = {"key": "k", "type": "contact form", "ContactNameFull": "Jane Doe"}


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (LB_FORM, "0"),
        ({"Key": "k", "Type": "Contact Form", "Message": "hi"}, "0"),
        ({**LB_FORM, "key": ""}, "-1\rInvalid API key"),
        ({**LB_FORM, "type": "sale"}, "-3\rInvalid API request type"),
        ({"key": "k", "type": "contact form", "Colour": "blue"}, "-3\rNo valid parameters"),
    ],
)
async def test_light_blue_simulator_codes(sim: Sim, data: dict[str, str], text: str) -> None:
    """Every coded answer is HTTP 200 with the code, then a CR and a summary after an error."""
    response = await sim.client.post("/light-blue/api.php", data=data)
    assert response.status_code == 200
    assert response.text.startswith(text)
    assert (await sim.stats("light-blue"))["accepted"] == (1 if text == "0" else 0)


async def test_light_blue_simulator_dedups_on_id_and_source(sim: Sim) -> None:
    """The same ID from another Source is not a duplicate; from the same Source it is -4."""
    texts = []
    for source in ("site", "site", "zapier"):
        data = {**LB_FORM, "ID": "x-1", "Source": source}
        texts.append((await sim.client.post("/light-blue/api.php", data=data)).text)
    assert texts == ["0", "-4\rDuplicate API request", "0"]
    stats = await sim.stats("light-blue")
    assert (stats["accepted"], stats["unique_keys"], stats["duplicates"]) == (2, 2, 0)


async def test_light_blue_simulator_routes(sim: Sim) -> None:
    """Only POST /api.php exists; a JSON body carries no form fields, so no key."""
    assert (await sim.client.post("/light-blue/api", data=LB_FORM)).status_code == 404
    assert (await sim.client.get("/light-blue/api.php")).status_code == 405
    response = await sim.client.post("/light-blue/api.php", json=LB_FORM)
    assert response.text == "-1\rInvalid API key"


# --- HoneyBook through a Zapier catch hook -----------------------------------------------

CAUGHT = {
    "attempt": "018f2b8e-5b7c-4d1a-9f00-0a1b2c3d4e5f",
    "id": "018f2b8e-5b7c-4d1a-9f00-0a1b2c3d4e60",
    "request_id": "018f2b8e-5b7c-4d1a-9f00-0a1b2c3d4e61",
    "status": "success",
}


async def test_honeybook_request() -> None:
    """JSON goes to the secret hook URL itself, with the idempotency key for the Zap."""
    ctx, sent = mock_context(KEYS, answer(200, CAUGHT))
    outcome = await deliver("honeybook", ctx)
    assert outcome == Delivered(provider_id=CAUGHT["id"])
    (request,) = sent
    assert str(request.url) == HOOK
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {**PROJECT, "idempotency_key": "lead-0001"}


async def test_honeybook_sandbox_url() -> None:
    """In the sandbox the hook is the simulator's stand-in path under the prefix."""
    override = "http://127.0.0.1:8700/honeybook"
    ctx, sent = mock_context(KEYS, answer(200, CAUGHT), base_url_override=override)
    await deliver("honeybook", ctx)
    assert str(sent[0].url) == override + HONEYBOOK_SANDBOX_PATH


@pytest.mark.parametrize(
    ("handler", "expect"),
    [
        (answer(200, {"status": "success"}), malformed),
        (answer(200, {**CAUGHT, "status": "pending"}), malformed),
        (answer(200, "ok"), malformed),
        (answer(410, {"status": "error"}), permanent("HTTP 410: the catch hook is gone")),
        (answer(404, "Not Found"), permanent("HTTP 404")),
        (answer(429, {"status": "error"}), retry(Taken.NO)),
        (answer(429, {"status": "error"}, {"retry-after": "60"}), retry(Taken.NO, 60.0)),
        (answer(500, "Internal Server Error"), retry(Taken.MAYBE)),
        (answer(503, "Service Unavailable"), retry(Taken.NO)),
    ],
)
async def test_honeybook_answers(handler: Handler, expect: Callable[[Outcome], bool]) -> None:
    """Every catch-hook answer maps to its outcome."""
    ctx, _ = mock_context(KEYS, handler)
    outcome = await deliver("honeybook", ctx)
    assert expect(outcome), outcome


async def test_honeybook_error_hides_the_hook_url() -> None:
    """An answer echoing the hook URL shows only '***' in the outcome."""
    ctx, _ = mock_context(KEYS, answer(404, f"no hook at {HOOK}"))
    outcome = await deliver("honeybook", ctx)
    assert isinstance(outcome, Permanent) and "5ecret" not in repr(outcome)


async def test_honeybook_in_the_simulator(sim: Sim) -> None:
    """The Zap catches the body; Zapier's id is the provider id; a repeat is a duplicate."""
    first = await deliver("honeybook", sim.context("honeybook", KEYS))
    again = await deliver("honeybook", sim.context("honeybook", KEYS))
    assert isinstance(first, Delivered) and isinstance(again, Delivered)
    assert first.provider_id != again.provider_id  # Zapier itself never dedups
    hooks = sim.logic("honeybook")
    assert isinstance(hooks, CatchHook)
    assert hooks.caught == [{**PROJECT, "idempotency_key": "lead-0001"}] * 2
    stats = await sim.stats("honeybook")
    assert (stats["accepted"], stats["unique_keys"], stats["duplicates"]) == (2, 1, 1)


async def test_honeybook_turned_off_zap_is_permanent(sim: Sim) -> None:
    """A real (not sandbox) hook URL whose Zap is gone gets 410, a permanent failure."""
    url = f"{sim.address.url}/honeybook/hooks/catch/1234567/gone/"
    ctx = attrs.evolve(sim.context("honeybook", KEYS), base_url_override=None)
    ctx = attrs.evolve(ctx, secrets=lambda ref: Secret(url))
    outcome = await deliver("honeybook", ctx)
    assert permanent("HTTP 410: the catch hook is gone")(outcome), outcome


@pytest.mark.parametrize(
    ("faults", "expect"),
    [
        ({"permanent_rate": 1.0}, permanent("HTTP 410")),
        ({"error_rate": 1.0}, retry(Taken.MAYBE)),
        ({"outage": True}, retry(Taken.NO)),
        ({"storm": True, "retry_after": 9}, retry(Taken.NO)),  # Zapier sends no Retry-After
        ({"malformed_rate": 1.0}, malformed),
    ],
)
async def test_honeybook_simulated_faults(
    sim: Sim, faults: dict[str, Any], expect: Callable[[Outcome], bool]
) -> None:
    """The simulated catch hook's faults classify as documented."""
    await sim.faults("honeybook", **faults)
    outcome = await deliver("honeybook", sim.context("honeybook", KEYS))
    assert expect(outcome), outcome


async def test_honeybook_simulator_catches_anything(sim: Sim) -> None:
    """Zapier validates nothing: text and JSON alike are caught with 200 success."""
    url = "/honeybook/hooks/catch/42/abc123"
    text = await sim.client.post(url, content=b"name=Jane")
    empty = await sim.client.post(url + "/", json={})
    assert text.status_code == empty.status_code == 200
    assert text.json()["status"] == "success" and set(text.json()) == set(CAUGHT)
    hooks = sim.logic("honeybook")
    assert isinstance(hooks, CatchHook) and hooks.caught == ["name=Jane", {}]
    assert (await sim.stats("honeybook"))["unique_keys"] == 0


async def test_honeybook_simulator_routes(sim: Sim) -> None:
    """Paths that are not a catch hook are 404; other methods 405."""
    assert (await sim.client.post("/honeybook/hooks/catch/abc/", json={})).status_code == 404
    assert (await sim.client.get("/honeybook/hooks/catch/42/abc123/")).status_code == 405


# --- payloads ---------------------------------------------------------------------------


def lead(contact: Mapping[str, Any] | None = None, job: Mapping[str, Any] | None = None) -> Any:
    """The sample lead with fields changed, or removed where the change is None."""

    def changed(part: Mapping[str, Any], changes: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in {**part, **(changes or {})}.items() if v is not None}

    return {"contact": changed(LEAD["contact"], contact), "job": changed(LEAD["job"], job)}


@pytest.mark.parametrize(
    ("kind", "payload", "words"),
    [
        ("tave", {"contact": LEAD["contact"]}, "'job' is required"),
        ("tave", {**LEAD, "brand": "x"}, "unknown field(s) 'brand'"),
        ("tave", {**LEAD, "contact": "Jane"}, "'contact' must be an object"),
        ("tave", lead(contact={"first_name": None}), "in 'contact': 'first_name' is required"),
        ("tave", lead(contact={"first_name": "J" * 49}), "at most 48"),
        ("tave", lead(contact={"email": "jane"}), "not an email address"),
        ("tave", lead(contact={"nickname": "J"}), "in 'contact': unknown field(s) 'nickname'"),
        ("tave", lead(job={"job_type_id": None}), "in 'job': 'job_type_id' is required"),
        ("tave", lead(job={"job_type_id": "wedding"}), "must be a VSCO Workspace id"),
        ("tave", lead(job={"event_date": "12/09/2026"}), "'event_date' must be a date"),
        ("tave", lead(job={"event_date": "2026-02-30"}), "'event_date' must be a date"),
        ("tave", lead(job={"name": "a\nb"}), "line breaks"),
        ("tave", lead(contact={"phone": "+1 555 0100 ext 123456789"}), "at most 24"),
        ("tave", lead(contact={"phone": "\uff10\uff11\uff12"}), "printable ASCII"),
        ("light_blue", {"shoot": {}}, "'contact' is required"),
        ("light_blue", {"contact": {"email": "j@x.test"}}, "either 'name' or 'first_name'"),
        (
            "light_blue",
            {"contact": {"name": "J D", "first_name": "J"}},
            "either 'name' or 'first_name'",
        ),
        ("light_blue", {"contact": {"name": "J D", "last_name": "D"}}, "goes with 'first_name'"),
        ("light_blue", {"contact": {"name": "J", "email": "x"}}, "not an email address"),
        ("light_blue", {**ENQUIRY, "shoot": {"date": "soon"}}, "in 'shoot': 'date' must be"),
        ("light_blue", {**ENQUIRY, "shoot": {"venue": "x"}}, "unknown field(s) 'venue'"),
        ("light_blue", {**ENQUIRY, "message": 5}, "'message' must be a string"),
        ("honeybook", {"client": PROJECT["client"]}, "'project' is required"),
        ("honeybook", {"project": PROJECT["project"]}, "'client' is required"),
        ("honeybook", {**PROJECT, "project": {"date": "x"}}, "in 'project': 'name' is required"),
        (
            "honeybook",
            {**PROJECT, "client": {"name": "Jane"}},
            "in 'client': 'email' is required",
        ),
        ("honeybook", {**PROJECT, "zap": 1}, "unknown field(s) 'zap'"),
    ],
)
def test_payload_rejected(kind: str, payload: dict[str, Any], words: str) -> None:
    """Each payload mistake is an InvalidPayload naming the field."""
    ctx, _ = mock_context(KEYS, answer(200))
    adapter = provider_kinds()[kind].build(SETTINGS[kind], ctx)
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate(payload)
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("tave", {"contact": {"first_name": "Jane"}, "job": {"job_type_id": JOB_TYPE}}),
        ("light_blue", {"contact": {"name": "Jane"}}),
        ("honeybook", {"project": {"name": "D"}, "client": {"name": "J", "email": "j@x.test"}}),
    ],
)
def test_minimal_payloads_accepted(kind: str, payload: dict[str, Any]) -> None:
    """The smallest valid payload of each kind passes validation."""
    ctx, _ = mock_context(KEYS, answer(200))
    provider_kinds()[kind].build(SETTINGS[kind], ctx).validate(payload)


async def test_invalid_payload_at_delivery_is_permanent() -> None:
    """A payload that no longer fits when delivered is a permanent failure, nothing sent."""
    ctx, sent = mock_context(KEYS, tave_ok)
    outcome = await deliver("tave", ctx, {"contact": {}, "job": {}})
    assert isinstance(outcome, Permanent) and outcome.reason.startswith("invalid payload:")
    assert sent == []
