"""The growth roles of the contract: on the in-memory fake and on SQLite, the same.

Growth events are appended and replayed by cursor. Experiments are kept by phase;
a unit's assignment is sticky, an exposure waits for its message's delivery, a
unit converts once per phase, and the counts are of distinct units. At the end,
what only a file can show: all of it outlives a restart, and a file of the
previous schema gains the new tables.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio_asyncio

from ringbearer.store import (
    SCHEMA_VERSION,
    ExperimentRecord,
    Exposure,
    GrowthRow,
    SqliteStore,
    Store,
    VariantCounts,
)
from ringbearer.store._schema import MIGRATIONS

from .test_store_contract import T0, Wall
from .test_store_contract import store as store  # the two-store fixture
from .test_store_contract import wall as wall

SIGNUP = {"user": "u1", "role": "couple", "email": {"sealed": "v1.abc"}}


def exposure(message_id: int, unit: str, variant: int, name: str = "subject") -> Exposure:
    return Exposure(message_id, name, 1, unit, variant, None)


# -- growth events ----------------------------------------------------------------------------


async def test_appended_events_get_ascending_ids_and_replay_by_cursor(
    store: Store, wall: Wall
) -> None:
    """Ids go on from one append to the next; ``after`` and ``limit`` page through them."""
    first = await store.append_growth(
        [("signup", T0 - 5, SIGNUP), ("invite_sent", T0 - 4, {"invite": "i1", "n": [1, 2.5]})]
    )
    wall.now = T0 + 1
    second = await store.append_growth([("invite_accepted", T0 - 3, {"invite": "i1"})])
    assert (first, second) == ([1, 2], [3])
    assert await store.append_growth([]) == []
    assert await store.growth_count() == 3
    rows = await store.growth_rows()
    assert rows == [
        GrowthRow(1, "signup", T0 - 5, SIGNUP, T0),
        GrowthRow(2, "invite_sent", T0 - 4, {"invite": "i1", "n": [1, 2.5]}, T0),
        GrowthRow(3, "invite_accepted", T0 - 3, {"invite": "i1"}, T0 + 1),
    ]
    assert [r.id for r in await store.growth_rows(after=1, limit=1)] == [2]
    assert [r.id for r in await store.growth_rows(after=2)] == [3]
    assert await store.growth_rows(after=3) == []


async def test_a_thousand_events_append_in_one_call_in_order(store: Store) -> None:
    """A daemon's batch: 1,000 events keep their order and ids 1..1000."""
    events = [("signup", T0 + n, {"user": f"u{n}"}) for n in range(1000)]
    ids = await store.append_growth(events)
    assert ids == list(range(1, 1001))
    page = await store.growth_rows(after=998)
    assert [(r.id, r.at, r.body) for r in page] == [
        (999, T0 + 998, {"user": "u998"}),
        (1000, T0 + 999, {"user": "u999"}),
    ]


async def test_a_body_that_is_no_json_object_is_refused_naming_it(store: Store) -> None:
    """The whole batch is refused, the error names the event's body and not its value."""
    with pytest.raises(ValueError, match=r"events\[1\]\.body must be a JSON object") as caught:
        await store.append_growth([("signup", T0, {"a": 1}), ("signup", T0, ["secret@x.io"])])  # type: ignore[list-item]
    assert "secret" not in str(caught.value)
    with pytest.raises(ValueError, match=r"events\[0\]\.body holds a value JSON cannot"):
        await store.append_growth([("signup", T0, {"at": {1, 2}})])
    assert await store.growth_count() == 0


# -- experiments ------------------------------------------------------------------------------


async def test_each_put_starts_the_next_phase_and_earlier_phases_stay(
    store: Store, wall: Wall
) -> None:
    """Phases count from 1 per name; the latest is the default; the list is the latest by name."""
    spec = {"variants": 2, "weights": [0.5, 0.5]}
    first = await store.put_experiment("subject", spec, by="ops")
    wall.now = T0 + 60
    second = await store.put_experiment("subject", {"variants": 3}, by="growth")
    other = await store.put_experiment("cta", {"variants": 2}, by="ops")
    assert first == ExperimentRecord("subject", 1, spec, T0, "ops")
    assert (second.phase, second.created_at, other.phase) == (2, T0 + 60, 1)
    assert await store.experiment("subject") == second
    assert await store.experiment("subject", 1) == first
    assert await store.experiment("subject", 3) is None
    assert await store.experiment("nope") is None
    assert await store.experiments() == [other, second]
    events = await store.events(kinds=["experiment_created"])
    assert [e.detail for e in reversed(events)] == [
        {"name": "subject", "phase": 1, "by": "ops"},
        {"name": "subject", "phase": 2, "by": "growth"},
        {"name": "cta", "phase": 1, "by": "ops"},
    ]


async def test_a_phase_stops_once_with_its_reason(store: Store, wall: Wall) -> None:
    """A second stop, or a stop of an unknown phase, is False and writes nothing."""
    await store.put_experiment("subject", {}, by="ops")
    await store.put_experiment("subject", {}, by="ops")
    wall.now = T0 + 30
    assert await store.stop_experiment("subject", 1, at=T0 + 20, reason="srm") is True
    assert await store.stop_experiment("subject", 1, at=T0 + 25, reason="again") is False
    assert await store.stop_experiment("subject", 9, at=T0, reason="x") is False
    assert await store.stop_experiment("nope", 1, at=T0, reason="x") is False
    stopped = await store.experiment("subject", 1)
    assert stopped is not None
    assert (stopped.stopped_at, stopped.stop_reason) == (T0 + 20, "srm")
    latest = await store.experiment("subject")
    assert latest is not None and latest.stopped_at is None
    (event,) = await store.events(kinds=["experiment_stopped"])
    assert (event.at, event.detail) == (T0 + 30, {"name": "subject", "phase": 1, "reason": "srm"})


async def test_a_spec_that_is_no_json_object_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="spec must be a JSON object"):
        await store.put_experiment("subject", [1, 2], by="ops")  # type: ignore[arg-type]
    assert await store.experiments() == []


async def test_an_assignment_is_sticky_per_phase(store: Store) -> None:
    """A second assignment with another variant gets the first one; another phase is apart."""
    assert await store.assign_unit("subject", 1, "s_ann", 1, at=T0) == 1
    assert await store.assign_unit("subject", 1, "s_ann", 0, at=T0 + 1) == 1
    assert await store.assign_unit("subject", 2, "s_ann", 0, at=T0 + 1) == 0
    assert await store.assign_unit("subject", 1, "s_bob", 0, at=T0) == 0
    assert await store.assignments("subject", 1) == {"s_ann": 1, "s_bob": 0}
    assert await store.assignments("subject", 2) == {"s_ann": 0}
    assert await store.assignments("cta", 1) == {}


# -- exposures and conversions ----------------------------------------------------------------


async def test_exposures_wait_for_delivery_and_are_exposed_once(store: Store) -> None:
    """A repeated message id is ignored; ``mark_exposed`` returns only those newly exposed."""
    await store.note_exposures([exposure(12, "s_ann", 1), exposure(10, "s_bob", 0)])
    await store.note_exposures([exposure(12, "s_bob", 0), exposure(11, "s_cid", 1)])
    await store.note_exposures([])
    pending = await store.pending_exposures()
    assert pending == [exposure(10, "s_bob", 0), exposure(11, "s_cid", 1), exposure(12, "s_ann", 1)]
    exposed = await store.mark_exposed([12, 10, 99], at=T0 + 5)
    assert exposed == [
        Exposure(10, "subject", 1, "s_bob", 0, T0 + 5),
        Exposure(12, "subject", 1, "s_ann", 1, T0 + 5),
    ]
    assert await store.mark_exposed([10, 12], at=T0 + 9) == []
    assert await store.mark_exposed([], at=T0 + 9) == []
    assert await store.pending_exposures() == [exposure(11, "s_cid", 1)]
    assert await store.exposed_units("subject", 1) == {"s_bob": 0, "s_ann": 1}
    assert await store.exposed_units("subject", 2) == {}
    assert await store.exposures_of([12, 99, 11, 12]) == [
        exposure(11, "s_cid", 1),
        Exposure(12, "subject", 1, "s_ann", 1, T0 + 5),
    ]
    assert await store.exposures_of([]) == []


async def test_a_units_first_delivered_exposure_names_its_variant(store: Store) -> None:
    await store.note_exposures([exposure(3, "s_ann", 1), exposure(2, "s_ann", 0)])
    await store.mark_exposed([2, 3], at=T0)
    assert await store.exposed_units("subject", 1) == {"s_ann": 0}


async def test_a_unit_converts_once_per_phase(store: Store) -> None:
    """Within one call and across calls, the first conversion of a unit in a phase is new."""
    new = await store.add_conversions(
        [
            ("subject", 1, "s_ann", 1, T0),
            ("subject", 1, "s_ann", 1, T0 + 1),
            ("subject", 2, "s_ann", 0, T0),
            ("cta", 1, "s_ann", 0, T0),
        ]
    )
    assert new == [True, False, True, True]
    assert await store.add_conversions(
        [("subject", 1, "s_bob", 0, T0), ("subject", 1, "s_ann", 0, T0)]
    ) == [True, False]
    assert await store.add_conversions([]) == []


async def test_counts_are_of_distinct_units_per_assigned_variant(store: Store) -> None:
    """Variant 0: ann, bob assigned; bob exposed twice (one unit); bob converted.
    Variant 1: cid, dee assigned; cid exposed, dee's message pending; none converted.
    Variant 2 converted one unit but has no assignment, so it is not listed."""
    for unit, variant in (("s_ann", 0), ("s_bob", 0), ("s_cid", 1), ("s_dee", 1)):
        await store.assign_unit("subject", 1, unit, variant, at=T0)
    await store.assign_unit("subject", 2, "s_ann", 1, at=T0)  # another phase: not counted
    units = [("s_bob", 0), ("s_bob", 0), ("s_cid", 1), ("s_dee", 1)]
    await store.note_exposures([exposure(n, *unit) for n, unit in enumerate(units, 1)])
    await store.mark_exposed([1, 2, 3], at=T0 + 1)
    await store.add_conversions(
        [("subject", 1, "s_bob", 0, T0 + 2), ("subject", 1, "s_eve", 2, T0 + 2)]
    )
    assert await store.experiment_counts("subject", 1) == [
        VariantCounts(0, assigned=2, exposed=1, converted=1),
        VariantCounts(1, assigned=2, exposed=1, converted=0),
    ]
    assert await store.experiment_counts("subject", 2) == [VariantCounts(1, 1, 0, 0)]
    assert await store.experiment_counts("nope", 1) == []


# -- SQLite files -----------------------------------------------------------------------------


async def test_growth_and_experiments_outlive_a_restart(tmp_path: Path) -> None:
    """Everything the two roles keep is read back from the file by a new store."""
    path = tmp_path / "rb.db"
    async with trio_asyncio.open_loop(), SqliteStore.open(path, clock=Wall()) as db:
        await db.append_growth([("signup", T0, SIGNUP), ("invite_sent", T0, {"invite": "i"})])
        await db.put_experiment("subject", {"variants": 2}, by="ops")
        await db.stop_experiment("subject", 1, at=T0 + 3, reason="done")
        await db.assign_unit("subject", 1, "s_ann", 1, at=T0)
        await db.note_exposures([exposure(1, "s_ann", 1), exposure(2, "s_ann", 1)])
        await db.mark_exposed([1], at=T0 + 1)
        await db.add_conversions([("subject", 1, "s_ann", 1, T0 + 2)])
    async with trio_asyncio.open_loop(), SqliteStore.open(path, clock=Wall()) as db:
        assert [r.id for r in await db.growth_rows()] == [1, 2]
        assert await db.append_growth([("signup", T0, {})]) == [3]
        assert await db.experiment("subject") == ExperimentRecord(
            "subject", 1, {"variants": 2}, T0, "ops", T0 + 3, "done"
        )
        assert await db.assign_unit("subject", 1, "s_ann", 0, at=T0) == 1
        assert await db.pending_exposures() == [exposure(2, "s_ann", 1)]
        assert await db.exposed_units("subject", 1) == {"s_ann": 1}
        assert await db.add_conversions([("subject", 1, "s_ann", 1, T0)]) == [False]
        assert await db.experiment_counts("subject", 1) == [VariantCounts(1, 1, 1, 1)]


async def test_a_version_8_file_migrates_to_the_growth_tables(tmp_path: Path) -> None:
    """Migration 9 adds the tables; a template kept by version 8 stays."""
    path = tmp_path / "rb.db"
    conn = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:8], 1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO templates VALUES ('invite', 1, '{\"text\": \"hi\"}', 1.0, 'ops')")
    conn.commit()
    conn.close()
    async with trio_asyncio.open_loop(), SqliteStore.open(path, clock=Wall()) as db:
        template = await db.template("invite")
        assert template is not None and template.parts == {"text": "hi"}
        assert await db.append_growth([("signup", T0, {})]) == [1]
        assert (await db.put_experiment("subject", {}, by="ops")).phase == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
    conn.close()
