"""The growth commands' handlers over a real config and an in-memory store: what they
answer while the kept events are read back, and after."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ringbearer._config import load
from ringbearer._errors import ErrorCode, RequestError
from ringbearer._growth_parts import GrowthSide
from ringbearer.control import _growth_protocol as p
from ringbearer.growth._sealing import ClearSealer
from ringbearer.handlers._growth import growth_table
from ringbearer.store import MemoryStore

T0 = 1_750_000_000.0
SHIPPED = Path(__file__).parent.parent / "config.toml"
EVENTS = [
    {"event": "signup", "user": "c1", "at": T0, "role": "couple", "email": "a@example.org"},
    {"event": "invite_sent", "invite": "i1", "inviter": "c1", "invitee": "b@example.org",
     "channel": "email", "at": T0 + 60},
    {"event": "invite_accepted", "invite": "i1", "user": "u2", "at": T0 + 120},
    {"event": "invite_accepted", "invite": "nope", "user": "u3", "at": T0 + 180},
]  # fmt: skip


async def side(tmp_path: Path, store: MemoryStore) -> GrowthSide:
    text = SHIPPED.read_text().replace('state_dir = "state"', f'state_dir = "{tmp_path}"')
    (tmp_path / "config.toml").write_text(text)
    config = load(tmp_path / "config.toml")
    return await GrowthSide.load(config, store, ClearSealer(), lambda: T0, CollectorRegistry())


async def test_reads_are_busy_until_the_kept_events_are_read_back(tmp_path: Path) -> None:
    store = MemoryStore(lambda: T0)
    first = await side(tmp_path, store)
    await first.recorder.replay()  # nothing kept yet
    table = growth_table(first, store)
    recorded = await table[p.GrowthRecord](p.GrowthRecord(EVENTS))
    assert (recorded.recorded, recorded.refused, recorded.unmatched) == (4, [], 1)
    restarted = await side(tmp_path, store)  # a restart: the events are in the store
    table = growth_table(restarted, store)
    with pytest.raises(RequestError) as busy:
        await table[p.GrowthReport](p.GrowthReport("role"))
    assert busy.value.code is ErrorCode.BUSY and "0 of 4 events" in busy.value.message
    assert await restarted.recorder.replay() == 4
    report = await table[p.GrowthReport](p.GrowthReport("role"))
    (couples,) = report.cohorts
    assert (couples.cohort, couples.users, couples.invites, couples.accepted) == ("couple", 1, 1, 1)
    assert (report.events, report.unmatched_acceptances) == (4, 1)


async def test_a_malformed_event_refuses_the_request_naming_it(tmp_path: Path) -> None:
    store = MemoryStore(lambda: T0)
    growth = await side(tmp_path, store)
    await growth.recorder.replay()
    table = growth_table(growth, store)
    bad = [EVENTS[0], {**EVENTS[1], "channel": "pigeon"}]
    with pytest.raises(RequestError) as refused:
        await table[p.GrowthRecord](p.GrowthRecord(bad))
    assert refused.value.code is ErrorCode.BAD_ARGS
    assert refused.value.message.startswith("events[1]: channel: one of")
    assert await store.growth_count() == 0  # all or nothing
    with pytest.raises(RequestError) as many:
        await table[p.GrowthRecord](p.GrowthRecord([EVENTS[0]] * (p.MAX_EVENTS_PER_RECORD + 1)))
    assert many.value.code is ErrorCode.TOO_MANY
