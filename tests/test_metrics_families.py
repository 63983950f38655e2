"""Every metric family the daemon declares is set by traffic: none is declared and left empty."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ringbearer._metrics import DaemonGauges, Metrics

from .procs import config_for, email, running, write_jsonl

pytestmark = pytest.mark.e2e


def declared() -> set[str]:
    """The families a fresh daemon's registry declares (the collector's included)."""
    metrics = Metrics()
    metrics.watch(lambda: [], lambda: {}, DaemonGauges)
    return {family.name for family in metrics.registry.collect()}


def test_the_declared_families_are_the_documented_ones() -> None:
    """The list below is what the README, the rules and the dashboard may rely on."""
    assert declared() == {
        "ringbearer_messages",
        "ringbearer_delivery_seconds",
        "ringbearer_provider_request_seconds",
        "ringbearer_submitted_messages",
        "ringbearer_breaker_state",
        "ringbearer_health_state",
        "ringbearer_actor_up",
        "ringbearer_actor_restarts",
        "ringbearer_wedding_day_mode",
        "ringbearer_queue_oldest_age_seconds",
        "ringbearer_budget_remaining",
        "ringbearer_queue_depth",
        "ringbearer_in_flight",
    }


def test_after_traffic_every_declared_family_has_samples(tmp_path: Path) -> None:
    """Scraped after messages went out, each family holds at least one sample."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        jsonl = write_jsonl(tmp_path / "mail.jsonl", [email(n) for n in range(3)])
        sent = daemon.cli("send", "--file", str(jsonl))
        assert sent.returncode == 0, sent.stderr
        daemon.wait_idle()
        url = daemon.status()["metrics"]
        scraped = httpx.get(url, timeout=10).text
    samples = {
        family.name: len(family.samples) for family in text_string_to_metric_families(scraped)
    }
    empty = sorted(name for name in declared() if not samples.get(name))
    assert not empty, f"declared but never set: {empty}"
    submitted = [
        s for f in text_string_to_metric_families(scraped) for s in f.samples
        if s.name == "ringbearer_submitted_messages_total"
    ]  # fmt: skip
    assert {s.labels["integration"]: s.value for s in submitted} == {"email": 3.0}
