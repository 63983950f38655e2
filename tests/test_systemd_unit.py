"""The shipped systemd unit passes systemd's own checks and keeps its exposure low."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "ringbearer.service"
SHIPPED_EXEC = "/opt/ringbearer/bin/ringbearer"
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def installed_unit(tmp_path: Path) -> Path:
    """The unit as an install would have it: ExecStart names a real ringbearer."""
    executable = Path(sys.executable).parent / "ringbearer"
    assert executable.exists(), executable
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    copy = tmp_path / "ringbearer.service"
    copy.write_text(text.replace(SHIPPED_EXEC, str(executable)))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_verify_reports_nothing(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single complaint."""
    result = analyze("verify", str(installed_unit(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_security_exposure_is_at_most_two(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=true` scores the unit 2.0 or lower."""
    result = analyze("security", "--offline=true", str(installed_unit(tmp_path)))
    found = re.search(r"Overall exposure level for ringbearer\.service: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_keeps_the_service_contract() -> None:
    """Notify with a watchdog, reload by SIGHUP, its own directories, user and credentials."""
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key, value)
    assert settings["Type"] == "notify"
    assert settings["WatchdogSec"]
    assert settings["Restart"] == "on-failure"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["StateDirectory"] == settings["RuntimeDirectory"] == "ringbearer"
    assert settings["User"] == "ringbearer"
    assert settings["LoadCredential"]


def test_unit_gives_room_for_open_files() -> None:
    """LimitNOFILE= is set with headroom: systemd's default soft limit (1,024) is too tight."""
    values = [
        line.partition("=")[2]
        for line in UNIT.read_text().splitlines()
        if line.startswith("LimitNOFILE=")
    ]
    assert len(values) == 1 and int(values[0]) >= 4096, values
