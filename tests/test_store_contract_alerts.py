"""The alert-state role of the contract: on the in-memory fake and on SQLite, the same.

The fixtures are those of tests/test_store_contract.py: each test runs on both
stores. At the end, what only a file can show: alerts outlive the process,
and a version 4 file migrates with its data intact.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio_asyncio

from ringbearer.store import (
    SCHEMA_VERSION,
    AlertRecord,
    AlertState,
    NewMessage,
    SentNotice,
    SqliteStore,
    Store,
)
from ringbearer.store._schema import MIGRATIONS

from .test_store_contract import T0
from .test_store_contract import store as store  # the two-store fixture
from .test_store_contract import wall as wall


def alert(alert_id: int = 1, key: str = "breaker_open:resend", **changes: Any) -> AlertRecord:
    """An alert with every field set to something other than its default."""
    record = AlertRecord(
        id=alert_id,
        key=key,
        severity="critical",
        summary="resend: breaker open for 300 s",
        opened_at=T0 + 0.125,
        chain=("slack", "sms", "phone"),
        escalated_at=T0 + 600.5,
        level=1,
        sent=(SentNotice(0, 41, T0 + 0.125), SentNotice(1, 57, T0 + 600.5)),
        last_sent_at=T0 + 600.5,
        external=True,
        acked_by="pagerduty (Tenex Engineer)",
        acked_at=T0 + 700.0,
    )
    return attrs.evolve(record, **changes)


def test_the_alert_state_role_is_exported_and_part_of_every_store() -> None:
    """``AlertState`` is imported from ``ringbearer.store`` and is one of ``Store``'s roles."""
    assert AlertState in Store.__mro__


async def test_a_new_store_holds_no_alerts(store: Store) -> None:
    """Nothing open, and ids start from 0."""
    assert await store.open_alerts() == []
    assert await store.last_alert_id() == 0


async def test_an_alert_is_read_back_as_saved(store: Store) -> None:
    """Every field, its chain and each channel's message and time, comes back equal."""
    saved = alert()
    await store.save_alert(saved)
    assert await store.open_alerts() == [saved]
    assert await store.last_alert_id() == 1


async def test_a_save_replaces_the_alert_by_id(store: Store) -> None:
    """Saving an id again keeps only the latest state of that alert."""
    await store.save_alert(alert(acked_by=None, acked_at=None, level=0, sent=()))
    latest = alert(summary="resend: breaker open for 900 s")
    await store.save_alert(latest)
    assert await store.open_alerts() == [latest]


async def test_resolved_alerts_leave_the_open_ones_but_keep_the_last_id(store: Store) -> None:
    """Open alerts come by id; a resolved one is not among them, yet ids go on after it."""
    await store.save_alert(alert(3, "dead_letters:slack"))
    await store.save_alert(alert(1, "deadline:email"))
    await store.save_alert(alert(7, "preflight", resolved_at=T0 + 900.0))
    await store.save_alert(alert(5, "health_down:sms", acked_by=None, acked_at=None))
    assert [a.id for a in await store.open_alerts()] == [1, 3, 5]
    assert await store.last_alert_id() == 7
    await store.save_alert(alert(5, "health_down:sms", resolved_at=T0 + 901.0))
    assert [a.id for a in await store.open_alerts()] == [1, 3]


@pytest.mark.parametrize(
    ("given", "kept"),
    [("down: \ud800!", "down: \\ud800!"), ("nul\x00here", "nul\\x00here")],
    ids=["lone-surrogate", "nul"],
)
async def test_text_a_store_cannot_hold_is_kept_readable(
    store: Store, given: str, kept: str
) -> None:
    """A summary quoting a provider's bad text is saved escaped, not refused, by both stores."""
    await store.save_alert(alert(summary=given, acked_by=given))
    (read,) = await store.open_alerts()
    assert (read.summary, read.acked_by) == (kept, kept)
    await store.submit([NewMessage("email", {"n": 1})])  # the writer is alive
    assert await store.last_alert_id() == 1


# -- SQLite files -----------------------------------------------------------------------------


async def test_alerts_outlive_the_process_that_saved_them(tmp_path: Path) -> None:
    """Saved (the save returned), an alert is in the file: a fresh connection reads it acked."""
    db = tmp_path / "rb.db"
    async with trio_asyncio.open_loop(), SqliteStore.open(db, clock=time.time) as first:
        await first.save_alert(alert())
        conn = sqlite3.connect(db)  # another reader, as after a SIGKILL
        row = conn.execute("SELECT acked_by, resolved_at FROM alerts WHERE id = 1").fetchone()
        conn.close()
        assert row == ("pagerduty (Tenex Engineer)", None)
    async with trio_asyncio.open_loop(), SqliteStore.open(db, clock=time.time) as second:
        assert await second.open_alerts() == [alert()]


async def test_a_version_4_file_migrates_with_its_data_intact(tmp_path: Path) -> None:
    """Migration 5 adds the alerts; the messages, events and breakers of a v4 file stay."""
    db = tmp_path / "rb.db"
    conn = sqlite3.connect(db)
    for number, script in enumerate(MIGRATIONS[:4], 1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute(
        "INSERT INTO messages (target, priority, payload, idempotency_key, status,"
        " next_attempt_at, created_at, updated_at) VALUES ('slack', 0, '{\"text\": \"hi\"}',"
        " 'alert:1:1750000000.000:0:0:1750000000', 'dead', 0, 0, 0)"
    )
    conn.execute("INSERT INTO breakers VALUES ('resend', 'open', 0, 1750000060.0)")
    conn.commit()
    conn.close()
    async with trio_asyncio.open_loop(), SqliteStore.open(db, clock=time.time) as store:
        assert (await store.open_alerts(), await store.last_alert_id()) == ([], 0)
        (letter,) = await store.dead_letters()
        assert (letter.message_id, letter.payload) == (1, {"text": "hi"})
        assert list(await store.breakers()) == ["resend"]
        assert [e.kind for e in await store.events(message_id=1)] == ["submitted"]
        await store.save_alert(alert())
        assert await store.open_alerts() == [alert()]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
    conn.close()
