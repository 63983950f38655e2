"""Wedding-day mode, alerts and preflight through the real CLI and daemon process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .procs import ROOT, config_for, email, ringbearer, running

pytestmark = pytest.mark.e2e


def preflight(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ringbearer("preflight", "-c", str(config)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
        env={**os.environ, **env},
    )


def test_preflight_names_a_misconfigured_provider_and_exits_non_zero(tmp_path: Path) -> None:
    """Against the sandbox: ready (exit 0); with Resend's key refused, it names Resend (exit 1)."""
    config = tmp_path / "config.toml"
    config.write_text(config_for(tmp_path))
    ready = preflight(config)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "ready with warnings: 17 integrations" in ready.stdout
    refused = preflight(config, RESEND_API_KEY="invalid")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    failing = [line for line in refused.stdout.splitlines() if " fail " in f" {line} "]
    assert failing and all("resend" in line or line.startswith(" ") for line in failing)
    assert "credentials refused" in refused.stdout
    assert refused.stdout.rstrip().splitlines()[-1].startswith("not ready")


def test_wedding_day_from_the_cli_freezes_changes_and_shows_the_mode(tmp_path: Path) -> None:
    """`wedding-day on --until 2h`: status shows it and why; pause needs --force; off again."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        shown = daemon.cli("wedding-day", "on", "--until", "2h")
        assert shown.returncode == 0, shown.stderr
        assert "wedding-day mode on (operator until" in shown.stdout
        status = json.loads(daemon.cli("status", "--json").stdout)
        assert status["mode"] == "wedding_day" and status["wedding_day"]["cause"] == "operator"
        frozen = daemon.cli("pause", "slack")
        assert frozen.returncode == 1 and "needs --force" in frozen.stderr
        forced = daemon.cli("pause", "slack", "--force")
        assert forced.returncode == 0, forced.stderr
        assert daemon.cli("resume", "slack", "--force").returncode == 0
        sent = daemon.cli(
            "send",
            "email",
            "--payload",
            json.dumps(email(1)["payload"]),
            "--priority",
            "critical",
            "--deliver-by",
            "10m",
        )
        assert sent.returncode == 0, sent.stderr
        daemon.wait_idle(60)
        assert daemon.cli("alerts").stdout.strip() == "no open alerts"
        off = daemon.cli("wedding-day", "auto")
        assert off.returncode == 0 and "following the calendar" in off.stdout
        assert daemon.status()["mode"] == "normal"
        assert daemon.cli("alerts", "ack", "99").returncode == 1
    kinds = daemon.log_text()
    assert "wedding-day mode on" in kinds and "forced during the wedding-day freeze" in kinds


def test_examples_file_is_where_the_tests_expect_it() -> None:
    """The example messages the README points at exist, one JSON object a line."""
    lines = (ROOT / "examples" / "every-integration.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
