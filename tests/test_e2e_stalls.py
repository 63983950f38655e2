"""No silent stalls, through the real daemon: symptoms 0, 5, 9, 10 and a reload failing partway.

Each test drives the real ``ringbearer run`` process (its sandbox, its SQLite
state, its systemd notifications) with the real CLI or raw control requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringbearer._errors import ErrorCode, RequestError

from .procs import Daemon, Simulator, config_for, email, poll, running

pytestmark = pytest.mark.e2e

FAST_STALLS = "\n[stalls]\ncheck_seconds = 0.2\nafter_seconds = 1\n"
POLL_SECONDS = 20.0  # the bound of every wait for the daemon to show something


def slack(n: int) -> dict[str, Any]:
    return {"target": "slack", "payload": {"text": f"note {n}"}}


def chat(n: int) -> dict[str, Any]:
    return {"target": "slack_chat", "payload": {"text": f"chat {n}"}}


def amplitude(n: int) -> dict[str, Any]:
    payload = {"event_type": "Gallery Viewed", "user_id": f"couple-{n}"}
    return {"target": "amplitude", "priority": "bulk", "payload": payload}


def submit(daemon: Daemon, *messages: dict[str, Any]) -> list[int]:
    accepted = daemon.call("submit", {"messages": list(messages)})["accepted"]
    return [int(a["id"]) for a in accepted]


def states(daemon: Daemon, ids: list[int]) -> set[str]:
    return {daemon.call("message", {"id": i})["status"] for i in ids}


def attempts(daemon: Daemon, ids: list[int]) -> list[int]:
    return [daemon.call("message", {"id": i})["attempts"] for i in ids]


def stalls(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {s["target"]: s for s in daemon.status()["stalls"]}


def without(text: str, section: str) -> str:
    """The config without one ``[section]`` (up to the next table)."""
    head, found, rest = text.partition(f"[{section}]\n")
    assert found, section
    return head + rest[rest.index("\n[") + 1 :]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def test_pause_restart_resume_delivers_what_was_queued(tmp_path: Path) -> None:
    """Symptom 0: `pause slack`, a restart, `resume slack`: the message queued before the resume
    and one sent after are delivered once each; nothing is reported stalled."""
    text = config_for(tmp_path, extra=FAST_STALLS)
    first = Daemon(tmp_path, text).start()
    assert first.cli("pause", "slack").returncode == 0
    queued = submit(first, slack(1))
    assert states(first, queued) == {"queued"}
    assert first.stop() == 0
    with running(tmp_path, text) as daemon:
        assert daemon.integration("slack")["paused"]
        resumed = daemon.cli("resume", "slack")
        assert resumed.returncode == 0, resumed.stderr
        after = submit(daemon, slack(2))
        daemon.wait_idle(60)
        assert states(daemon, queued + after) == {"delivered"}
        assert attempts(daemon, queued + after) == [1, 1]
        assert daemon.status()["stalls"] == []


def test_an_unrepresentable_until_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    """Symptom 5: `wedding-day on --until` in milliseconds (raw: the CLI refuses it earlier) is
    bad_args naming until; no override is stored; reload works, messages are delivered, and
    SIGTERM stops the daemon promptly with exit 0."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        with pytest.raises(RequestError) as caught:
            daemon.call("wedding-day", {"state": "on", "until": 1796603207684})
        assert caught.value.code is ErrorCode.BAD_ARGS and "until" in caught.value.message
        mode = daemon.call("wedding-day")
        assert mode["override"] is None and not mode["wedding_day"]
        assert not [
            e for e in daemon.call("audit")["events"] if e["kind"] == "wedding_day_override"
        ]
        reloaded = daemon.cli("reload")
        assert reloaded.returncode == 0, reloaded.stderr
        ids = submit(daemon, email(1), slack(1))
        daemon.wait_idle(60)
        assert states(daemon, ids) == {"delivered"}
        started = time.monotonic()
        assert daemon.stop() == 0
        took = time.monotonic() - started
    assert took < 10, f"SIGTERM took {took:.1f} s"


def test_a_group_whose_every_member_is_disabled_is_refused_by_check_and_reload(
    tmp_path: Path,
) -> None:
    """Symptom 9: `config check` and `reload` refuse it, naming the group; the daemon runs on
    its config and delivers to the group."""
    text = config_for(tmp_path)
    bad = text
    for name in ("resend", "mailgun", "smtp"):
        section = f"[integrations.{name}]\n"
        bad = bad.replace(section, section + "enabled = false\n")
    with running(tmp_path, text) as daemon:
        daemon.config.write_text(bad)
        checked = daemon.cli("config", "check")
        assert checked.returncode != 0
        why = "groups.email: every member is disabled (resend, mailgun, smtp)"
        assert why in checked.stdout + checked.stderr
        reloaded = daemon.cli("reload")
        assert reloaded.returncode == 1 and why in reloaded.stderr
        ids = submit(daemon, email(1))
        daemon.wait_idle(60)
        assert states(daemon, ids) == {"delivered"}
        assert "email" in daemon.status()["groups"]


def test_removing_an_integration_with_queued_work_is_refused_unless_dropped(
    tmp_path: Path,
) -> None:
    """Symptom 10: the reload is refused naming slack_chat and its 5 queued; with
    --drop-queued they become dead letters with the reason, replayed once it is back."""
    text = config_for(tmp_path)
    with running(tmp_path, text) as daemon:
        assert daemon.cli("pause", "slack_chat").returncode == 0
        ids = submit(daemon, *[chat(n) for n in range(5)])
        innocent = submit(daemon, email(1))
        daemon.config.write_text(without(text, "integrations.slack_chat"))
        refused = daemon.cli("reload")
        assert refused.returncode == 1
        assert "slack_chat (5 queued)" in refused.stderr and "--drop-queued" in refused.stderr
        assert "slack_chat" in {i["name"] for i in daemon.status()["integrations"]}
        forced = daemon.cli("reload", "--drop-queued")
        assert forced.returncode == 0, forced.stderr
        assert "removed: slack_chat" in forced.stdout
        assert "dead-lettered (replayable): slack_chat 5" in forced.stdout
        listed = json.loads(daemon.cli("dead-letters", "--json").stdout)["dead_letters"]
        assert sorted(d["message_id"] for d in listed) == ids
        assert {d["reason"] for d in listed} == {
            "integration slack_chat removed by a forced reload"
        }
        assert "slack_chat" not in {i["name"] for i in daemon.status()["integrations"]}

        daemon.config.write_text(text)
        assert daemon.cli("reload").returncode == 0
        assert daemon.cli("resume", "slack_chat").returncode == 0
        replayed = daemon.cli("dead-letters", "replay", "--all", "--target", "slack_chat")
        assert replayed.returncode == 0, replayed.stderr
        daemon.wait_idle(60)
        assert states(daemon, ids + innocent) == {"delivered"}


def test_work_with_no_route_after_a_restart_is_a_stall_alert_and_a_status_line(
    tmp_path: Path,
) -> None:
    """The detector, whatever the cause: slack_chat's queue outlives its removal across a
    restart; status and `alerts` show the stall within seconds; `reload --drop-queued`
    clears it."""
    text = config_for(tmp_path, extra=FAST_STALLS)
    first = Daemon(tmp_path, text).start()
    assert first.cli("pause", "slack_chat").returncode == 0
    ids = submit(first, chat(1), chat(2))
    assert first.stop() == 0
    with running(tmp_path, without(text, "integrations.slack_chat")) as daemon:
        found = poll(
            lambda: stalls(daemon), lambda s: "slack_chat" in s, POLL_SECONDS, "no stall shown"
        )
        assert found["slack_chat"]["why"] == "no_route" and found["slack_chat"]["queued"] == 2
        shown = daemon.cli("status")
        assert "STALLS" in shown.stdout and "stalled: no route" in shown.stdout
        poll(
            lambda: {a["key"] for a in daemon.call("alerts")["alerts"]},
            lambda keys: "stalled:slack_chat" in keys,
            POLL_SECONDS,
            "no stall alert",
        )
        forced = daemon.cli("reload", "--drop-queued")
        assert forced.returncode == 0, forced.stderr
        assert "dead-lettered (replayable): slack_chat 2" in forced.stdout
        assert states(daemon, ids) == {"dead"}
        poll(lambda: stalls(daemon), lambda s: s == {}, POLL_SECONDS, "the stall stays")


def test_work_in_flight_without_progress_is_a_stall_until_it_moves(
    tmp_path: Path, sim: Simulator
) -> None:
    """Amplitude answers after 6 s: its work shows as "no progress" once after_seconds pass,
    and clears when it is delivered."""
    with running(tmp_path, config_for(tmp_path, sim, extra=FAST_STALLS)) as daemon:
        sim.fault("amplitude", latency_ms=6000)
        ids = submit(daemon, amplitude(1))
        found = poll(
            lambda: stalls(daemon), lambda s: "amplitude" in s, POLL_SECONDS, "no stall shown"
        )
        assert found["amplitude"]["why"] == "no_progress"
        assert found["amplitude"]["in_flight"] == 1
        daemon.wait_idle(60)
        assert states(daemon, ids) == {"delivered"}
        poll(lambda: stalls(daemon), lambda s: s == {}, POLL_SECONDS, "the stall stays")


INJECT = """
import os

_STEP = os.environ.get("RINGBEARER_TEST_FAIL_RELOAD_STEP")
if _STEP:
    import inspect

    from ringbearer._reload import Reloader

    _real = getattr(Reloader, _STEP)
    _calls = []

    if inspect.iscoroutinefunction(_real):

        async def _failing(self, *args, **kwargs):
            result = await _real(self, *args, **kwargs)
            _calls.append(1)
            if len(_calls) == 1:
                raise RuntimeError("injected by the test after " + _STEP)
            return result

    else:

        def _failing(self, *args, **kwargs):
            result = _real(self, *args, **kwargs)
            _calls.append(1)
            if len(_calls) == 1:
                raise RuntimeError("injected by the test after " + _STEP)
            return result

    setattr(Reloader, _STEP, _failing)
"""


AMPLITUDE = (
    '[integrations.amplitude]\nkind = "amplitude"\napi_key = { env = "AMPLITUDE_API_KEY" }\n'
    "lanes = 2\n"
)


@pytest.mark.parametrize(("step", "named"), [("_switch", "switching"), ("_start", "starting")])
def test_a_reload_failing_partway_rolls_back_and_every_dispatcher_runs(
    tmp_path: Path, step: str, named: str
) -> None:
    """Symptom 12a on the real process (the failure injected at start-up, after the step has
    done its work): `reload` answers reload_failed, systemd hears READY=1 after RELOADING=1,
    the old set runs, every message is delivered once; the next reload works."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT)
    env = {"PYTHONPATH": str(inject), "RINGBEARER_TEST_FAIL_RELOAD_STEP": f"{step}"}
    text = config_for(tmp_path)
    daemon = Daemon(tmp_path, text, env=env).start()
    try:
        before = {i["name"]: i["lanes"] for i in daemon.status()["integrations"]}
        assert AMPLITUDE in text
        daemon.config.write_text(
            text.replace(AMPLITUDE, AMPLITUDE.replace("lanes = 2", "lanes = 3"))
        )
        ids = submit(daemon, *[email(n) for n in range(20)], *[slack(n) for n in range(3)])
        failed = daemon.cli("reload")
        assert failed.returncode == 1
        assert f"reload failed while {named}" in failed.stderr and "rolled back" in failed.stderr
        daemon.wait_for("READY=1")
        told = [n for n in daemon.notifications if "RELOADING=1" in n or "READY=1" in n]
        assert "RELOADING=1" in told[-2] and "READY=1" in told[-1]
        assert "reload failed" in told[-1]
        assert {i["name"]: i["lanes"] for i in daemon.status()["integrations"]} == before
        ids += submit(daemon, amplitude(1), chat(1), email(99))
        daemon.wait_idle(60)
        assert states(daemon, ids) == {"delivered"}
        assert set(attempts(daemon, ids)) == {1}
        again = daemon.cli("reload")
        assert again.returncode == 0, again.stderr
        assert "re-tuned: amplitude" in again.stdout
        more = submit(daemon, amplitude(2), email(100))
        daemon.wait_idle(60)
        assert states(daemon, more) == {"delivered"}
    finally:
        assert daemon.stop() == 0, daemon.log_text()
