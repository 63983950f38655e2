"""The state (payloads) is private to the daemon's user, or shared with a named group."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .procs import config_for, running

pytestmark = pytest.mark.e2e


def modes(state: Path) -> dict[str, int]:
    files = {"state": state, "db": state / "ringbearer.db", "wal": state / "ringbearer.db-wal"}
    return {name: stat.S_IMODE(path.stat().st_mode) for name, path in files.items()}


def test_the_state_folder_is_0700_and_the_database_0600(tmp_path: Path) -> None:
    """With no group configured, nobody but the daemon's user can read what it keeps."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        daemon.call("status")
        found = modes(tmp_path / "state")
    assert found == {"state": 0o700, "db": 0o600, "wal": 0o600}


def test_a_named_group_may_read_the_state(tmp_path: Path) -> None:
    """[store] group: the folder 0750 and the database 0640, owned by that group."""
    group = str(os.getgid())
    text = config_for(tmp_path).replace("[store]\n", f'[store]\ngroup = "{group}"\n', 1)
    assert f'group = "{group}"' in text
    with running(tmp_path, text) as daemon:
        daemon.call("status")
        found = modes(tmp_path / "state")
    assert found == {"state": 0o750, "db": 0o640, "wal": 0o640}
    assert (tmp_path / "state" / "ringbearer.db").stat().st_gid == os.getgid()
