"""Every integration of the shipped config, through the real daemon and its sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from .procs import ROOT, config_for, running

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples" / "every-integration.jsonl"


def test_one_message_to_every_integration_is_delivered_and_all_are_healthy(
    tmp_path: Path,
) -> None:
    """The example file reaches every integration; each ends delivered; status shows all healthy."""
    messages = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    with running(tmp_path, config_for(tmp_path)) as daemon:
        integrations = {i["name"] for i in daemon.status()["integrations"]}
        assert {m["target"] for m in messages} >= integrations  # every one gets a message
        sent = daemon.cli("send", "--file", str(EXAMPLES))
        assert sent.returncode == 0, sent.stderr
        daemon.wait_idle(60)
        status = daemon.status()
        assert daemon.call("dead-letters")["dead_letters"] == []
        for i in status["integrations"]:
            assert (i["state"], i["breaker"], i["health"]) == ("running", "closed", "healthy")
            assert i["delivered"] >= 1 and i["dead"] == 0, i
        stats = httpx.get(f"{status['sandbox']}/_sim/stats").json()
    # Each provider took what it was sent: the group's email went to Resend.
    accepted = {name: s["accepted"] for name, s in stats.items()}
    assert accepted["resend"] == 2 and accepted["smtp"] == 1
    # Táve is three requests for one lead; every other provider took one.
    assert accepted["tave"] == 3 and accepted["instagram"] == 2
    for name in (
        "mixpanel", "amplitude", "mixpanel-deletion", "amplitude-deletion", "facebook-page",
        "linkedin", "x", "twilio-sms",
    ):  # fmt: skip
        assert accepted[name] == 1, name
