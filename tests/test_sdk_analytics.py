"""SDK fidelity: the official Mixpanel and Amplitude SDKs and our adapters, side by side.

Each SDK talks to the simulator in this test (in a worker thread: the SDKs
block); the simulator must accept what it sends. Then the adapter sends the
same event, and the two requests, as ``GET /_sim/requests`` shows them, are
compared: method, path, auth form, content type and the event's fields.

Documented exceptions, where the SDK uses an older form than our adapters:

* Mixpanel's SDK posts ``data=<JSON object>`` form-encoded, without
  ``strict=1``; we post the documented JSON array with ``?strict=1``. So the
  decoded events are compared, and ``time`` is compared as an instant (the
  SDK sends the seconds it was given, we send milliseconds). The SDK also
  adds ``token``, ``mp_lib`` and ``$lib_version`` properties. Both say
  ``ip=0`` (do not geolocate by the sender's address): the SDK as a form
  field beside ``data``, we in the query string, as a JSON body has no fields.
* Amplitude's SDK labels its JSON ``charset=UTF-8`` and adds ``library`` to
  each event.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs

import amplitude
import mixpanel
import pytest

from ringbearer._delivery import Delivered, Priority
from ringbearer._secrets import SecretRef
from ringbearer.integrations import _base, provider_kinds
from ringbearer.integrations.analytics import AmplitudeSettings, MixpanelSettings
from ringbearer.simulator._amplitude import Amplitude as AmplitudeSim
from ringbearer.simulator._mixpanel import Geolocation, GeoSource
from ringbearer.simulator._mixpanel import Mixpanel as MixpanelSim

from .kit import Sim, context, envelope, in_thread
from .kit import sim_fixture as sim_fixture

SECRETS = {"MP_SA": "sa-5ecret", "AMP": "amp-5ecret-key"}
KEY = "0b4f6a0e9c3d4f8bb2d1e5f6a7b8c9d0"  # a uuid4().hex idempotency key, as the daemon makes
WHEN = 1_700_000_000  # seconds since the epoch
BOUND = 10  # seconds any SDK call may take


@pytest.fixture
def sim_seed() -> int:
    return 5


async def adapter_sends(kind: str, settings: Any, base_url: str, payload: dict[str, Any]) -> None:
    """Deliver one event through ``kind``'s adapter at the simulator; it must be Delivered."""
    ctx = context(SECRETS, name=kind, base_url_override=base_url)
    env = envelope(payload, key=KEY, target=kind, priority=Priority.BULK, created_at=WHEN + 5.0)
    adapter = provider_kinds()[kind].build(settings, ctx)
    async with adapter.open_lane() as lane:
        assert isinstance(lane, _base.BatchLane)
        assert await lane.deliver_batch([env]) == [Delivered(KEY)]


def media(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


# --- Mixpanel ---------------------------------------------------------------------


def mixpanel_sdk_import(base: str) -> None:
    """The SDK's server-side import, as a service account, with our insert id."""
    credentials = mixpanel.ServiceAccountCredentials("sa.user", "sa-5ecret", "12345")
    consumer = mixpanel.Consumer(
        import_url=f"{base}/import",
        events_url=f"{base}/track",
        request_timeout=5,
        retry_limit=0,
        credentials=credentials,
    )
    client = mixpanel.Mixpanel("project-token", consumer=consumer)
    client._make_insert_id = lambda: KEY
    # Raises MixpanelException unless the simulator answers {"status": 1}.
    client.import_data(None, "user-1", "Signup", WHEN, properties={"plan": "pro"})


def mixpanel_events(seen: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a logged request, whichever of the two body forms it used."""
    if media(seen["content_type"]) == "application/x-www-form-urlencoded":
        decoded = json.loads(parse_qs(seen["body"])["data"][0])
    else:
        decoded = json.loads(seen["body"])
    return decoded if isinstance(decoded, list) else [decoded]


def as_instant(event: dict[str, Any]) -> dict[str, Any]:
    """The event with ``time`` in milliseconds, as Mixpanel reads seconds or milliseconds."""
    properties = dict(event["properties"])
    time = properties["time"]
    properties["time"] = time if time >= 10**11 else round(time * 1000)
    return {**event, "properties": properties}


async def test_mixpanel_sdk_and_adapter_send_the_same_import(sim: Sim) -> None:
    """The SDK's import is accepted, and ours matches it but for the documented exceptions."""
    base = sim.prefix("mixpanel")
    await in_thread(lambda: mixpanel_sdk_import(base), BOUND)
    logic = sim.logic("mixpanel")
    assert isinstance(logic, MixpanelSim)
    assert logic.location(KEY) == Geolocation(GeoSource.NONE)  # the SDK's ip=0
    settings = MixpanelSettings(
        service_account_username="sa.user",
        service_account_secret=SecretRef(env="MP_SA"),
        project_id="12345",
    )
    payload = {
        "event": "Signup",
        "distinct_id": "user-1",
        "time": WHEN,
        "properties": {"plan": "pro"},
    }
    await adapter_sends("mixpanel", settings, base, payload)
    sdk, ours = await sim.requests("mixpanel")
    for part in ("method", "path", "auth"):
        assert sdk[part] == ours[part], part
    assert (ours["method"], ours["path"], ours["auth"]) == ("POST", "/import", "Basic sa.user")
    assert parse_qs(sdk["query"]) == {"project_id": ["12345"]}
    assert parse_qs(ours["query"]) == {"project_id": ["12345"], "strict": ["1"], "ip": ["0"]}
    assert media(sdk["content_type"]) == "application/x-www-form-urlencoded"
    assert media(ours["content_type"]) == "application/json"
    sdk_form = parse_qs(sdk["body"])
    assert set(sdk_form) == {"data", "verbose", "ip"}  # no api_key: a service account
    assert sdk_form["ip"] == parse_qs(ours["query"])["ip"] == ["0"]
    [sdk_event], [our_event] = mixpanel_events(sdk), mixpanel_events(ours)
    sdk_only = {"token", "mp_lib", "$lib_version"}
    assert set(sdk_event["properties"]) - set(our_event["properties"]) == sdk_only
    for name in sdk_only:
        del sdk_event["properties"][name]
    assert as_instant(sdk_event) == as_instant(our_event)
    # Both were accepted, and Mixpanel would see the second as the same event.
    assert (logic.copies(KEY), logic.duplicates) == (2, 1)
    assert logic.location(KEY) == Geolocation(GeoSource.NONE)  # ours: ip=0 too
    assert logic.sender_located == 0


def mixpanel_sdk_track(base: str) -> None:
    consumer = mixpanel.Consumer(events_url=f"{base}/track", request_timeout=5, retry_limit=0)
    mixpanel.Mixpanel("project-token", consumer=consumer).track("user-1", "Opened")


async def test_mixpanel_sdk_track_is_accepted(sim: Sim) -> None:
    """The SDK's /track post, the token inside the event, gets the simulator's {"status": 1}."""
    await in_thread(lambda: mixpanel_sdk_track(sim.prefix("mixpanel")), BOUND)
    [seen] = await sim.requests("mixpanel")
    assert (seen["path"], seen["auth"]) == ("/track", None)
    [event] = mixpanel_events(seen)
    assert event["properties"]["token"] == "project-token"


# --- Amplitude ----------------------------------------------------------------------

AMPLITUDE_EVENT: dict[str, Any] = {
    "event_type": "Order",
    "user_id": "user-1",
    "device_id": "device-9",
    "time": WHEN * 1000,
    "event_properties": {"total": 12},
    "user_properties": {"tier": "gold"},
}


def amplitude_sdk_track(url: str) -> list[int]:
    """Track one event with the SDK and wait for its callback; return the codes it saw."""
    codes: list[int] = []
    sent = threading.Event()

    def callback(event: Any, code: int, message: str | None = None) -> None:
        codes.append(code)
        sent.set()

    config = amplitude.Config(
        server_url=url, flush_interval_millis=50, flush_max_retries=1, callback=callback
    )
    client = amplitude.Amplitude("amp-5ecret-key", config)
    client.track(amplitude.BaseEvent(insert_id=KEY, **AMPLITUDE_EVENT))
    finished = sent.wait(BOUND)
    client.shutdown()
    assert finished, "the Amplitude SDK never reported its send"
    return codes


async def test_amplitude_sdk_and_adapter_send_the_same_upload(sim: Sim) -> None:
    """The SDK's HTTP V2 upload is accepted, and ours matches it field for field."""
    base = sim.prefix("amplitude")
    codes = await in_thread(lambda: amplitude_sdk_track(f"{base}/2/httpapi"), BOUND)
    assert codes == [200]
    settings = AmplitudeSettings(api_key=SecretRef(env="AMP"))
    await adapter_sends("amplitude", settings, base, AMPLITUDE_EVENT)
    sdk, ours = await sim.requests("amplitude")
    for part in ("method", "path", "auth", "query"):
        assert sdk[part] == ours[part], part
    assert (ours["method"], ours["path"], ours["auth"]) == ("POST", "/2/httpapi", None)
    assert sdk["content_type"] == "application/json; charset=UTF-8"
    assert media(sdk["content_type"]) == media(ours["content_type"]) == "application/json"
    sdk_body, our_body = json.loads(sdk["body"]), json.loads(ours["body"])
    assert set(sdk_body) == set(our_body) == {"api_key", "events"}
    assert sdk_body["api_key"] == our_body["api_key"]
    [sdk_event], [our_event] = sdk_body["events"], our_body["events"]
    assert sdk_event.pop("library").startswith("amplitude-python/")
    assert sdk_event == our_event == {**AMPLITUDE_EVENT, "insert_id": KEY}
    logic = sim.logic("amplitude")
    assert isinstance(logic, AmplitudeSim)
    assert (logic.copies(KEY), logic.duplicates) == (2, 1)
