"""Personal data on the real daemon and the real simulator: sealed, erased, exported, rotated.

Each test runs ``ringbearer run`` against ``ringbearer simulate`` and looks at
what a person would look at: the raw bytes of the files the daemon keeps, what
the simulated providers received, and what the operator commands answer.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from ringbearer.privacy._kek import load_kek
from ringbearer.privacy._keystore import SqliteKeyStore
from ringbearer.privacy._vault import Erased, Vault
from ringbearer.store import SqliteStore

from .procs import Daemon, Simulator, config_for, poll, running

pytestmark = pytest.mark.e2e

SENDER = "Studio <news@studio.example>"
NAME = "Quill Canarywood"
ADDRESS = "Quill.Canarywood+k9@Example.org"
BODY = "canary-vows-8e1d"
CANARIES = (NAME, ADDRESS, ADDRESS.lower(), BODY)


def email(to: str, text: str, key: str | None = None) -> dict[str, Any]:
    payload = {"from": SENDER, "to": to, "subject": "Your wedding", "text": text}
    return {"target": "email", "payload": payload, **({"key": key} if key else {})}


def mixpanel(who: str, **properties: Any) -> dict[str, Any]:
    payload = {"event": "rsvp", "distinct_id": who, "properties": properties}
    return {"target": "mixpanel", "payload": payload}


def amplitude(who: str, **properties: Any) -> dict[str, Any]:
    payload = {"event_type": "rsvp", "user_id": who, "event_properties": properties}
    return {"target": "amplitude", "payload": payload}


def submit(daemon: Daemon, *messages: dict[str, Any]) -> list[int]:
    reply = daemon.call("submit", {"messages": list(messages)})
    assert not reply["refused"], reply["refused"]
    return [a["id"] for a in reply["accepted"]]


def erase(daemon: Daemon, subject: str, seconds: float = 60) -> dict[str, Any]:
    started = daemon.call("subject-erase", {"subject": subject})
    return finished(daemon, started["subject"], seconds)


def finished(daemon: Daemon, subject: str, seconds: float = 60) -> dict[str, Any]:
    status: dict[str, Any] = poll(
        lambda: daemon.call("subject-status", {"subject": subject}),
        lambda s: bool(s["erasures"]) and s["erasures"][-1]["finished_at"] is not None,
        seconds,
        "the erasure to finish",
    )
    return status


def raw_state(state: Path) -> bytes:
    """Every file the daemon keeps its data in, as bytes: both databases, -wal and -shm."""
    return b"".join(p.read_bytes() for p in sorted(state.iterdir()) if ".db" in p.name)


def found_in(data: bytes, canaries: tuple[str, ...] = CANARIES) -> list[str]:
    lowered = data.lower()
    return [c for c in canaries if c.lower().encode() in lowered]


def deletions(sim: Simulator) -> dict[str, list[str]]:
    shown = sim.http.get("/_sim/deletions").json()
    return {name: [i for d in found for i in d["ids"]] for name, found in shown.items()}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def test_an_erased_subject_leaves_no_residue_and_the_providers_are_asked(
    tmp_path: Path, sim: Simulator
) -> None:
    state = tmp_path / "state"
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        other = submit(daemon, email("Guest <guest@example.com>", "for the guest"))
        delivered = submit(
            daemon,
            email(f"{NAME} <{ADDRESS}>", f"Dear {NAME}: {BODY}"),
            mixpanel(ADDRESS, name=NAME),
            amplitude(ADDRESS, note=BODY),
        )
        daemon.wait_idle()
        sim.fault("resend", permanent_rate=1.0, count=1)
        (dead,) = submit(daemon, email(f"{NAME} <{ADDRESS}>", f"Again {BODY}"))
        daemon.wait_idle()
        assert daemon.call("message", {"id": dead})["status"] == "dead"
        assert found_in(raw_state(state)) == []  # sealed from the start
        status = erase(daemon, ADDRESS)
        (job,) = status["erasures"]
        assert job["outcome"] == "completed" and status["erased"] and not status["has_key"]
        assert found_in(raw_state(state)) == []
        asked = deletions(sim)
        assert ADDRESS in asked["mixpanel-deletion"] and ADDRESS in asked["amplitude-deletion"]
        scraped = httpx.get(daemon.status()["metrics"]).text
        assert 'ringbearer_erasures_total{outcome="completed"} 1.0' in scraped
        (subjects,) = [line for line in scraped.splitlines()
                       if line.startswith("ringbearer_subjects_encrypted ")]  # fmt: skip
        assert float(subjects.split()[1]) == 1  # the guest: Quill's key and the job's are gone
        # Later analytics about them is refused at submit; mail is suppressed.
        for later in (mixpanel(ADDRESS), amplitude(ADDRESS.lower()), email(ADDRESS, "hi")):
            (refusal,) = daemon.call("submit", {"messages": [later]})["refused"]
            assert refusal["code"] in ("erased", "suppressed"), refusal
        states = daemon.call("message", {"id": dead})
        assert states["status"] == "erased"
        assert {daemon.call("message", {"id": i})["status"] for i in delivered} == {"delivered"}
        assert daemon.call("message", {"id": other[0]})["status"] == "delivered"
    assert found_in(raw_state(state)) == []
    assert found_in(daemon.log_text().encode()) == []  # nor in the log


def _open_copy(copy: Path, state: Path, subject: str) -> list[dict[str, Any] | str]:
    """Each payload of ``subject`` in the copy, opened with the daemon's own store and
    vault (its key store and key file as they are now); "erased" where it cannot be."""

    async def read() -> list[dict[str, Any] | str]:
        kek = load_kek(None, state / "ringbearer.kek")
        keys = await SqliteKeyStore.open(state / "keys.db")
        try:
            vault = await Vault.open(keys, kek, wall=time.time)
            database = copy / "ringbearer.db"
            async with trio_asyncio.open_loop(), SqliteStore.open(database, clock=time.time) as db:
                opened: list[dict[str, Any] | str] = []
                for m in await db.subject_messages(vault.subject_id(subject)):
                    try:
                        opened.append(await vault.open_payload(m.payload))
                    except Erased:
                        opened.append("erased")
                return opened
        finally:
            await keys.close()

    return trio.run(read)


def test_a_copy_of_the_database_taken_before_erasure_no_longer_opens(
    tmp_path: Path, sim: Simulator
) -> None:
    state, copy = tmp_path / "state", tmp_path / "copy"
    config = config_for(tmp_path, sim)
    with running(tmp_path, config) as daemon:
        submit(daemon, email(f"{NAME} <{ADDRESS}>", BODY))
        daemon.wait_idle()
    copy.mkdir()
    for name in ("ringbearer.db", "ringbearer.db-wal", "ringbearer.db-shm"):
        if (state / name).exists():
            shutil.copy2(state / name, copy / name)
    (before,) = _open_copy(copy, state, ADDRESS)
    assert isinstance(before, dict) and before["text"] == BODY  # the copy opens, for now
    with running(tmp_path, config) as daemon:
        erase(daemon, ADDRESS)
    assert _open_copy(copy, state, ADDRESS) == ["erased"]
    assert found_in(raw_state(copy)) == []  # it never held them in clear either


def test_a_kill_during_an_erasure_resumes_it_and_spares_everyone_else(
    tmp_path: Path, sim: Simulator
) -> None:
    config = config_for(tmp_path, sim)
    daemon = Daemon(tmp_path, config).start()
    try:
        submit(daemon, email(ADDRESS, BODY), mixpanel(ADDRESS))
        kept = submit(daemon, email("Guest <guest@example.com>", "for the guest only"))
        daemon.wait_idle()
        sim.fault("mixpanel-deletion", outage=True)  # the job waits for Mixpanel
        started = daemon.call("subject-erase", {"subject": ADDRESS})
        poll(
            lambda: daemon.call("subject-status", {"subject": started["subject"]}),
            lambda s: any(x["step"] == "destroy_key" and x["done_at"] for x in
                          s["erasures"][-1]["steps"]),
            30,
            "the key destroyed",
        )  # fmt: skip
        daemon.kill9()
        sim.clear()
        daemon = Daemon(tmp_path, config).start()
        status = finished(daemon, started["subject"], 90)
        assert status["erasures"][-1]["outcome"] == "completed"
        assert ADDRESS in deletions(sim)["mixpanel-deletion"]
        guest = daemon.call("subject-export", {"subject": "guest@example.com"})
        (message,) = guest["messages"]
        assert message["id"] == kept[0] and message["payload"]["text"] == "for the guest only"
    finally:
        daemon.stop()


def test_an_export_holds_everything_about_the_subject_and_nothing_else(
    tmp_path: Path, sim: Simulator
) -> None:
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        mine = submit(
            daemon,
            email(f"{NAME} <{ADDRESS}>", "first for quill"),
            email(ADDRESS, "second for quill"),
            mixpanel(ADDRESS, step="rsvp"),
        )
        theirs = submit(daemon, email("Guest <guest@example.com>", "only for the guest"))
        daemon.wait_idle()
        daemon.call(
            "subject-consent",
            {"subject": ADDRESS, "purpose": "marketing", "granted": True, "source": "signup"},
        )
        export = daemon.call("subject-export", {"subject": ADDRESS})
        assert export["identity"] == ADDRESS.lower()
        assert [m["id"] for m in export["messages"]] == mine
        texts = {m["payload"].get("text") for m in export["messages"]}
        assert texts == {"first for quill", "second for quill", None}
        assert {e["message_id"] for e in export["events"]} == set(mine)
        assert [c["purpose"] for c in export["consent"]] == ["marketing"]
        assert "only for the guest" not in str(export)
        assert theirs[0] not in {e["message_id"] for e in export["events"]}


def test_key_rotation_while_messages_flow_loses_nothing(tmp_path: Path, sim: Simulator) -> None:
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        waiting = {**email("early@example.com", "sealed before"), "not_before": time.time() + 4}
        (early,) = submit(daemon, waiting)
        ids: list[int] = []
        stop = threading.Event()

        def flow() -> None:
            n = 0
            while not stop.is_set():
                ids.extend(submit(daemon, email(f"guest{n}@example.com", f"hello {n}")))
                n += 1

        before = daemon.status()["privacy"]["kek_id"]
        sender = threading.Thread(target=flow)
        sender.start()
        try:
            poll(lambda: len(ids), lambda n: n >= 10, 30, "messages flowing before the rotation")
            rotated = daemon.call("keys-rotate", {})
            assert rotated["kek_id"] != before
            poll(lambda: daemon.status()["privacy"], lambda p: not p["old_key_needed"], 30,
                 "the rewrap to finish")  # fmt: skip
            after = len(ids)
            poll(lambda: len(ids), lambda n: n >= after + 10, 30, "messages flowing after it")
        finally:
            stop.set()
            sender.join()
        daemon.wait_idle()
        states = daemon.call("message", {"id": early})
        assert states["status"] == "delivered"  # sealed before, opened after
        assert len(ids) > 10
        assert {daemon.call("message", {"id": i})["status"] for i in ids} == {"delivered"}
        for who, text in (
            ("early@example.com", "sealed before"),
            ("guest0@example.com", "hello 0"),
        ):
            (message,) = daemon.call("subject-export", {"subject": who})["messages"]
            assert message["payload"]["text"] == text
        assert not (tmp_path / "state" / "ringbearer.kek.next").exists()


X_OAUTH1 = """auth = "oauth1"
consumer_key = { env = "X_CONSUMER_KEY" }
consumer_secret = { env = "X_CONSUMER_SECRET" }
access_token = { env = "X_ACCESS_TOKEN" }
access_token_secret = { env = "X_ACCESS_TOKEN_SECRET" }
"""
# In the sandbox the missing credentials are the simulator's placeholder seed.
X_OAUTH2 = """auth = "oauth2"
refresh_token = { credential = "x-refresh-token" }
client_id = "ringbearer-sandbox"
client_secret = { credential = "x-client-secret" }
"""


def _x_tokens(sim: Simulator) -> dict[str, Any]:
    shown: dict[str, Any] = sim.http.get("/_sim/tokens", params={"provider": "x"}).json()
    return shown


def _tweets(sim: Simulator) -> int:
    return int(sim.stats()["x"]["accepted"])


def test_the_x_token_is_refreshed_across_a_restart_and_a_reused_one_is_an_alert(
    tmp_path: Path, sim: Simulator
) -> None:
    # Tokens that last 302 s are refreshed 2 s after each issue (5 minutes ahead).
    sim.http.post("/_sim/tokens", params={"provider": "x"}, json={"lifetime": 302})
    config = config_for(tmp_path, sim).replace(X_OAUTH1, X_OAUTH2)
    assert X_OAUTH2 in config
    state, backup = tmp_path / "state", tmp_path / "backup"
    with running(tmp_path, config) as daemon:
        log = lambda: daemon.log_text().count("x: new access token saved")  # noqa: E731
        poll(log, lambda n: n >= 2, 20, "a seed and a refresh")
        backup.mkdir()  # what a restore from backup would bring back: a spent refresh token
        daemon.call("wait", {"timeout": 1})
        for name in ("ringbearer.db", "ringbearer.db-wal", "ringbearer.db-shm"):
            shutil.copy2(state / name, backup / name)
        poll(log, lambda n: n >= 3, 20, "one more refresh")
    with running(tmp_path, config) as daemon:  # the refresh token saved last, not the seed
        submit(daemon, {"target": "x", "payload": {"text": "after a restart"}})
        daemon.wait_idle()
        assert _tweets(sim) == 1
        (token,) = daemon.status()["privacy"]["tokens"]
        assert token["has_token"] and token["failures"] == 0 and 0 < token["seconds_left"] <= 302
        assert _x_tokens(sim)["revoked"] == 0
        report = daemon.call("preflight", {})
        (x,) = [i for i in report["integrations"] if i["name"] == "x"]
        (kept,) = [s for s in x["steps"] if "OAuth access token" in s["reason"]]
        assert kept["verdict"] == "pass" and "min left" in kept["reason"]
    for name in ("ringbearer.db", "ringbearer.db-wal", "ringbearer.db-shm"):
        (state / name).unlink(missing_ok=True)
        if (backup / name).exists():
            shutil.copy2(backup / name, state / name)
    with running(tmp_path, config) as daemon:
        alerts = poll(
            lambda: daemon.call("alerts", {})["alerts"],
            lambda found: any(a["key"] == "token:x" for a in found),
            30,
            "the alert for the reused refresh token",
        )
        (alert,) = [a for a in alerts if a["key"] == "token:x"]
        assert "refresh" in alert["summary"]
        assert _x_tokens(sim)["revoked"] == 1  # X revoked the family, as it does
