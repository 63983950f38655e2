"""Growth on the real daemon and the real simulator: the vendor-invite rule end to end,
and an experiment whose exposures come from deliveries.

``ringbearer run`` against ``ringbearer simulate``; growth events go in through
``ringbearer growth record`` (the CLI), figures come out of ``growth --json``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import Daemon, Simulator, config_for, poll, running, write_jsonl

pytestmark = pytest.mark.e2e


def any_hour(config: str) -> str:
    """The shipped config with sending hours all day, every day."""
    config = config.replace('hours = "09:00-18:00"', 'hours = "00:00-24:00"')
    week = '["mon", "tue", "wed", "thu", "fri", "sat"]'
    return config.replace(f"days = {week}", f'days = {week[:-1]}, "sun"]') + REFUSE_RULE


# A stage rule that refuses, beside the shipped one that holds.
REFUSE_RULE = """
[[growth.stages.rules]]
name = "honeymoon_quiet"
category = "marketing"
first_day = 1
last_day = 14
action = "refuse"
"""


VENDOR = "lens@studio.example"
INVITE = {
    "subject": "{{ vendor_name }}, a couple you work with uses Ringbearer ({{ invite }})",
    "text": "Join them: https://example.com/join?invite={{ invite }}",
}


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def cli_json(daemon: Daemon, *args: str) -> Any:
    done = daemon.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def record(daemon: Daemon, path: Path, events: list[dict[str, Any]]) -> str:
    done = daemon.cli("growth", "record", "--file", str(write_jsonl(path, events)))
    assert done.returncode == 0, done.stderr
    return done.stdout


def mail_to(sim: Simulator, address: str) -> list[dict[str, Any]]:
    found = []
    for provider in ("resend", "mailgun", "smtp"):
        sent = sim.http.get("/_sim/mail", params={"provider": provider}).json()[provider]
        found += [m for m in sent if address in json.dumps(m.get("to"))]
    return found


def delivered(daemon: Daemon, message_id: int) -> bool:
    history = daemon.call("audit", {"kinds": ["provider_event"], "limit": 5000})["events"]
    return any(
        e["message_id"] == message_id and e["detail"]["event"] == "delivered" for e in history
    )


def cohort(daemon: Daemon, month: str) -> dict[str, Any]:
    report = cli_json(daemon, "growth", "--by", "signup_month")
    assert set(report) == {"window_days", "by", "cohorts"} and report["window_days"] == 30
    (found,) = [c for c in report["cohorts"] if c["cohort"] == month]
    return dict(found)


def test_a_booked_vendor_is_invited_and_its_acceptance_moves_k_at_once(
    tmp_path: Path, sim: Simulator
) -> None:
    now = dt.datetime.now(dt.UTC)
    wedding = (now + dt.timedelta(days=150)).date().isoformat()
    month = f"{now.year:04d}-{now.month:02d}"
    with running(tmp_path, any_hour(config_for(tmp_path, sim))) as daemon:
        daemon.call("template-put", {"name": "vendor_invite", "parts": INVITE})
        said = record(daemon, tmp_path / "a.jsonl", [
            {"event": "signup", "user": "c1", "at": now.timestamp() - 60, "role": "couple",
             "email": "ana.ben@example.org", "wedding_date": wedding},
            {"event": "vendor_booked", "couple": "c1", "vendor_email": VENDOR,
             "vendor_name": "Lens & Light", "vendor_type": "photographer",
             "at": now.timestamp()},
        ])  # fmt: skip
        assert said.startswith("recorded 2 event(s)")
        poll(lambda: mail_to(sim, VENDOR), bool, 30, "the vendor's invite email")
        (sent,) = mail_to(sim, VENDOR)
        assert sent["subject"].startswith("Lens & Light, a couple you work with uses Ringbearer")
        story = cli_json(daemon, "growth", "explain", "c1")
        (decision,) = story["decisions"]
        assert (decision["rule"], decision["outcome"]) == ("vendor_invite", "scheduled")
        (invite,) = story["invites"]  # the invite email counts as the invite's invite_sent
        assert f"({invite['invite']})" in sent["subject"] and invite["channel"] == "email"
        poll(lambda: delivered(daemon, decision["message_id"]), bool, 30, "its signed event")
        before = cohort(daemon, month)
        assert (before["users"], before["invites"], before["accepted"], before["k"]) == (
            1, 1, 0, 0.0,
        )  # fmt: skip
        record(daemon, tmp_path / "b.jsonl", [
            {"event": "invite_accepted", "invite": invite["invite"], "user": "v1",
             "at": now.timestamp() + 5},
        ])  # fmt: skip
        after = cohort(daemon, month)  # no wait: current once the event is committed
        assert (after["accepted"], after["k"], after["conversion"]) == (1, 1.0, 1.0)
        assert after["small"] is True
        # The same booking again: de-duplicated, no second email.
        record(daemon, tmp_path / "c.jsonl", [
            {"event": "vendor_booked", "couple": "c1", "vendor_email": VENDOR.upper(),
             "vendor_name": "Lens & Light", "vendor_type": "photographer",
             "at": now.timestamp() + 10},
        ])  # fmt: skip
        partners = cli_json(daemon, "growth", "partners", VENDOR)
        assert partners["couples"] == 1 and partners["partners"] == []
        assert len(mail_to(sim, VENDOR)) == 1
        married = (now - dt.timedelta(days=2)).date().isoformat()
        offer = {"target": "email", "category": "marketing", "wedding_date": married,
                 "payload": {"from": "news@example.com", "to": "ana.ben@example.org",
                             "subject": "Frames for your photos", "text": "10% off"}}  # fmt: skip
        refused = daemon.cli("send", "--file", str(write_jsonl(tmp_path / "o.jsonl", [offer])))
        assert refused.returncode == 1 and "stage_rule" in refused.stderr
        assert "'honeymoon_quiet'" in refused.stderr and "refused" in refused.stderr
        raw = (tmp_path / "state" / "ringbearer.db").read_bytes()
        assert VENDOR.encode() not in raw and b"Lens & Light" not in raw
        scraped = httpx.get(daemon.status()["metrics"]).text
        assert f'ringbearer_growth_k{{by="signup_month",cohort="{month}"}} 1.0' in scraped


def test_an_experiment_assigns_sticky_variants_and_counts_exposures_on_delivery(
    tmp_path: Path, sim: Simulator
) -> None:
    spec: dict[str, Any] = {
        "variants": [
            {"name": "plain", "weight": 0.5, "fields": {"subject": "Your gallery is ready"}},
            {"name": "named", "weight": 0.5, "fields": {"subject": "Ana, your gallery is ready"}},
        ],
        "conversion": "delivered",
        "seed": "galleries-1",
    }
    spec_file = tmp_path / "gallery.json"
    spec_file.write_text(json.dumps(spec))
    guests = [f"guest{n}@example.org" for n in range(24)]
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        made = daemon.cli("experiment", "create", "gallery", str(spec_file))
        assert made.returncode == 0, made.stderr
        messages = [
            {"target": "email", "experiment": "gallery", "key": f"g-{to}",
             "payload": {"from": "studio@example.com", "to": to, "text": "Here it is."}}
            for to in guests
        ]  # fmt: skip
        daemon.call("submit", {"messages": messages})
        poll(lambda: sum(len(mail_to(sim, g)) for g in guests), lambda n: n == 24, 30, "24")
        assigned = {g: cli_json(daemon, "experiment", "assign", "gallery", g) for g in guests}
        for guest in guests:
            (mail,) = mail_to(sim, guest)
            variant = assigned[guest]["variant"]
            assert assigned[guest]["recorded"] == variant  # sticky: what was recorded
            assert mail["subject"] == spec["variants"][variant]["fields"]["subject"]
        report = poll(
            lambda: cli_json(daemon, "experiment", "show", "gallery"),
            lambda r: sum(v["exposures"] for v in r["variants"]) == 24, 30, "24 exposures",
        )  # fmt: skip
        counts = [sum(1 for a in assigned.values() if a["variant"] == i) for i in (0, 1)]
        assert [v["exposures"] for v in report["variants"]] == counts
        assert [v["conversions"] for v in report["variants"]] == counts
        changed = {**spec, "variants": [{**spec["variants"][0], "weight": 0.6},
                                        {**spec["variants"][1], "weight": 0.4}]}  # fmt: skip
        spec_file.write_text(json.dumps(changed))
        refused = daemon.cli("experiment", "create", "gallery", str(spec_file))
        assert refused.returncode == 2 and "weights" in refused.stderr
        assert "new phase" in refused.stderr
        scraped = httpx.get(daemon.status()["metrics"]).text
        line = 'ringbearer_experiment_exposures_total{experiment="gallery",variant="plain"}'
        assert f"{line} {float(counts[0])}" in scraped
