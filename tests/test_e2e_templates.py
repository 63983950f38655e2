"""Templates on the real daemon: rendered once, at submit, so every try sends the same bytes.

``ringbearer run`` against ``ringbearer simulate``: a message names a stored
template and its vars; it is rendered when it is accepted and stored as
rendered (sealed, as any message about a person). A SIGKILL, a new version of
the template and a failover from Resend to Mailgun all come before it is
sent, and what Mailgun takes is still what was rendered at submit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ringbearer._errors import RequestError

from .procs import Daemon, Simulator, config_for, poll

pytestmark = pytest.mark.e2e

INVITE = {
    "subject": "{{ wedding.couple }}: {{ wedding.days_until }} days, {{ guest }} (v1)",
    "text": "Dear {{ guest }}, join us on {{ wedding.date | date: '%A %-d %B %Y' }}.",
}
VARS = {"guest": "Ann", "couple": ["Ana", "Ben"], "wedding_date": "2027-06-12"}
GUEST = "ann.templates@example.org"


def mail_of(sim: Simulator, provider: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sim.http.get("/_sim/mail", params={"provider": provider}).json()[
        provider
    ]
    return found


def refusal(daemon: Daemon, cmd: str, args: dict[str, Any]) -> str:
    """The error a request gets, as ``code: message``."""
    try:
        daemon.call(cmd, args)
    except RequestError as exc:
        return f"{exc.code.value}: {exc.message}"
    raise AssertionError(f"{cmd} was not refused")


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def test_rendered_bytes_are_identical_across_a_kill_a_new_version_and_a_failover(
    tmp_path: Path, sim: Simulator
) -> None:
    config = config_for(tmp_path, sim)
    daemon = Daemon(tmp_path, config).start()
    try:
        put = daemon.call("template-put", {"name": "invite", "parts": INVITE})
        assert put["version"] == 1
        expected = daemon.call("template-render", {"name": "invite", "vars": VARS})
        daemon.call("pause", {"name": "email"})
        message = {
            "target": "email",
            "payload": {"from": "Studio <studio@example.com>", "to": GUEST},
            "template": "invite",
            "vars": VARS,
            "key": "invite-ann",
        }
        (accepted,) = daemon.call("submit", {"messages": [message]})["accepted"]
        again = daemon.call("submit", {"messages": [message]})  # a producer's retry
        assert again["accepted"] == [{**accepted, "duplicate": True}]
        changed = {**INVITE, "subject": INVITE["subject"].replace("(v1)", "(v2)")}
        assert daemon.call("template-put", {"name": "invite", "parts": changed})["version"] == 2
        daemon.kill9()
        sim.fault("resend", outage=True)  # the first member is down: failover to Mailgun
        daemon = Daemon(tmp_path, config).start()
        daemon.call("resume", {"name": "email"})
        poll(lambda: mail_of(sim, "mailgun"), bool, 30, "the email at Mailgun")
        (sent,) = mail_of(sim, "mailgun")
        assert sent["subject"] == expected["fields"]["subject"] and "(v1)" in sent["subject"]
        assert mail_of(sim, "resend") == []
        stored = daemon.call("subject-export", {"subject": GUEST})["messages"]
        (payload,) = [m["payload"] for m in stored if m["id"] == accepted["id"]]
        assert {k: payload[k] for k in expected["fields"]} == expected["fields"]
    finally:
        daemon.stop()


def test_a_missing_variable_or_a_bad_template_is_refused_naming_it(
    tmp_path: Path, sim: Simulator
) -> None:
    daemon = Daemon(tmp_path, config_for(tmp_path, sim)).start()
    try:
        refused = refusal(daemon, "template-put", {"name": "broken", "parts": {"text": "{% if %}"}})
        assert refused.startswith("bad_args") and "broken" in refused and "line 1" in refused
        daemon.call("template-put", {"name": "invite", "parts": INVITE})
        message = {
            "target": "email",
            "payload": {"from": "studio@example.com", "to": GUEST},
            "template": "invite",
            "vars": {"couple": ["Ana", "Ben"], "wedding_date": "2027-06-12"},
        }
        said = refusal(daemon, "submit", {"messages": [message]})
        assert said.startswith("bad_args") and "messages[0]" in said and "guest" in said
        listed = daemon.call("template-list", {})["templates"]
        assert [(t["name"], t["version"]) for t in listed] == [("invite", 1)]
    finally:
        daemon.stop()


def test_no_marketing_mail_in_the_final_week_and_a_held_message_says_which_rule(
    tmp_path: Path, sim: Simulator
) -> None:
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date()
    soon, later = str(today + dt.timedelta(days=3)), str(today + dt.timedelta(days=40))

    def mail(to: str, category: str, wedding: str) -> dict[str, Any]:
        payload = {"from": "studio@example.com", "to": to, "subject": "Albums", "text": "Hi."}
        return {"target": "email", "payload": payload, "category": category,
                "wedding_date": wedding}  # fmt: skip

    daemon = Daemon(tmp_path, config_for(tmp_path, sim)).start()
    try:
        reply = daemon.call(
            "submit",
            {
                "messages": [
                    mail("final-week@example.org", "marketing", soon),
                    mail("final-week@example.org", "transactional", soon),
                    mail("months-away@example.org", "marketing", later),
                ]
            },
        )
        held, receipt, away = reply["accepted"]
        assert "marketing_quiet_week" in held["held"] and receipt["held"] is away["held"] is None
        # Not idle: the held one waits in the store (``wait`` would wait days for it).
        poll(lambda: mail_of(sim, "resend"), lambda m: len(m) == 2, 30, "the two not held")
        sent = [m["to"] for m in mail_of(sim, "resend")]
        assert sorted(sent) == [["final-week@example.org"], ["months-away@example.org"]]
        history = daemon.call("message", {"id": held["id"]})
        assert history["status"] == "queued"
        (event,) = [e for e in history["events"] if e["kind"] == "stage_held"]
        assert "marketing_quiet_week" in event["detail"]["rule"]
        assert event["detail"]["until"] > time.time() + 3 * 86_400
    finally:
        daemon.stop()
