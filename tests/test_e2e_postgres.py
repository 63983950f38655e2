"""The real daemon on PostgreSQL (``[store] url``), against the real simulator: what it
accepts is delivered, and what was in flight when it was killed is sent again with the
same key after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from .procs import Daemon, Simulator, config_for, email, poll

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def on_postgres(config: str, url: str, node: str) -> str:
    return config.replace("[store]\n", f'[store]\nurl = "{url}"\nnode = "{node}"\n', 1)


def delivered(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered'").fetchone()
        return int(row[0]) if row else 0


def test_a_daemon_on_postgres_delivers_and_survives_a_kill(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    config = on_postgres(config_for(tmp_path, sim), pg_url, "node-a")
    assert 'url = "postgresql://' in config
    daemon = Daemon(tmp_path, config).start()
    try:
        accepted = daemon.call("submit", {"messages": [email(n) for n in range(20)]})
        assert len(accepted["accepted"]) == 20
        poll(lambda: delivered(pg_url), lambda n: n == 20, 30, "20 delivered")
        daemon.call("pause", {"name": "email"})
        later = daemon.call("submit", {"messages": [email(n) for n in range(20, 30)]})
        assert len(later["accepted"]) == 10
        daemon.kill9()  # nothing is lost: the queue is in PostgreSQL
        daemon = Daemon(tmp_path, config).start()
        daemon.call("resume", {"name": "email"})
        poll(lambda: delivered(pg_url), lambda n: n == 30, 30, "30 delivered")
        with psycopg.connect(pg_url) as conn:
            nodes = conn.execute("SELECT node FROM nodes").fetchall()
        assert nodes == [("node-a",)]
    finally:
        daemon.stop()
