"""Growth events and experiments in SQLite (migration 9).

Writes go through the writer, so growth shares group commits with the queue's
own work, and each caller returns after its commit. Reads go to the reader,
which never waits for the writer: a replay of every growth event at start
does not hold up submits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..._audit_kinds import EventKind
from .._growth_model import (
    ExperimentRecord,
    Exposure,
    GrowthRow,
    VariantCounts,
    json_object,
    not_json,
)
from ._db import Row, Tx, dumps
from ._reads import Reads
from ._rows import INSERT_EVENT
from ._shared import Shared
from ._writer import Writer

_INSERT_GROWTH = "INSERT INTO growth_events (id, kind, at, body, recorded_at) VALUES (?,?,?,?,?)"
_EXPERIMENT = "name, phase, spec, created_at, by, stopped_at, stop_reason"
_EXPOSURE = "message_id, experiment, phase, unit, variant, exposed_at"
_EXPOSED = "experiment = ? AND phase = ? AND exposed_at IS NOT NULL"
# A conversion is new if its (experiment, phase, unit) is not kept yet.
_CONVERTED = (
    "SELECT experiment, phase, unit FROM conversions WHERE (experiment, phase, unit) IN"
    " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]') FROM json_each(?))"
)
_COUNTS = (
    "SELECT variant, COUNT(*) FROM assignments WHERE experiment = ? AND phase = ?"
    " GROUP BY variant ORDER BY variant",
    f"SELECT variant, COUNT(DISTINCT unit) FROM exposures WHERE {_EXPOSED} GROUP BY variant",
    "SELECT variant, COUNT(*) FROM conversions WHERE experiment = ? AND phase = ? GROUP BY variant",
)


def json_text(value: object, field: str) -> str:
    """``value`` as the store writes it; a ValueError naming ``field`` if it is no JSON object."""
    mapping = json_object(value, field)
    try:
        return dumps(dict(mapping))
    except (TypeError, ValueError, RecursionError) as exc:
        raise not_json(field, exc) from exc


class SqliteGrowthRecords:
    """Implements :class:`~ringbearer.store.GrowthRecords`: one transaction per append."""

    def __init__(self, writer: Writer, reads: Reads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def append_growth(
        self, events: Sequence[tuple[str, float, Mapping[str, Any]]]
    ) -> list[int]:
        if not events:
            return []
        now = self._shared.clock()
        # Bodies are made text here, before the writer: one that cannot be fails its
        # caller alone, and the transaction only binds.
        rows = [
            (kind, at, json_text(body, f"events[{i}].body"), now)
            for i, (kind, at, body) in enumerate(events)
        ]

        async def append(tx: Tx) -> int:
            found = await tx.fetchall("SELECT COALESCE(MAX(id), 0) FROM growth_events")
            first = int(found[0][0]) + 1
            await tx.executemany(_INSERT_GROWTH, [(first + i, *r) for i, r in enumerate(rows)])
            return first

        first: int = await self._writer.run(append)
        return list(range(first, first + len(rows)))

    async def growth_rows(self, *, after: int = 0, limit: int = 10_000) -> list[GrowthRow]:
        rows = await self._reads.query(
            "SELECT id, kind, at, body, recorded_at FROM growth_events"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [GrowthRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    async def growth_count(self) -> int:
        rows = await self._reads.query("SELECT COUNT(*) FROM growth_events")
        return int(rows[0][0])


class SqliteExperiments:
    """Implements :class:`~ringbearer.store.Experiments` on the writer and the reader."""

    def __init__(self, writer: Writer, reads: Reads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def put_experiment(
        self, name: str, spec: Mapping[str, Any], *, by: str
    ) -> ExperimentRecord:
        text, now = json_text(spec, "spec"), self._shared.clock()

        async def put(tx: Tx) -> int:
            rows = await tx.fetchall(
                "INSERT INTO experiments (name, phase, spec, created_at, by)"
                " SELECT ?, COALESCE(MAX(phase), 0) + 1, ?, ?, ? FROM experiments WHERE name = ?"
                " RETURNING phase",
                (name, text, now, by, name),
            )
            phase = int(rows[0][0])
            detail = {"name": name, "phase": phase, "by": by}
            await tx.execute(
                INSERT_EVENT, (now, EventKind.EXPERIMENT_CREATED.value, None, None, dumps(detail))
            )
            return phase

        phase: int = await self._writer.run(put)
        return ExperimentRecord(name, phase, json.loads(text), now, by)

    async def experiment(self, name: str, phase: int | None = None) -> ExperimentRecord | None:
        if phase is None:
            rows = await self._reads.query(
                f"SELECT {_EXPERIMENT} FROM experiments WHERE name = ? ORDER BY phase DESC LIMIT 1",
                (name,),
            )
        else:
            rows = await self._reads.query(
                f"SELECT {_EXPERIMENT} FROM experiments WHERE name = ? AND phase = ?",
                (name, phase),
            )
        return _experiment(rows[0]) if rows else None

    async def experiments(self) -> list[ExperimentRecord]:
        rows = await self._reads.query(
            f"SELECT {_EXPERIMENT} FROM experiments e WHERE phase ="
            " (SELECT MAX(phase) FROM experiments WHERE name = e.name) ORDER BY name"
        )
        return [_experiment(r) for r in rows]

    async def stop_experiment(self, name: str, phase: int, *, at: float, reason: str) -> bool:
        now = self._shared.clock()

        async def stop(tx: Tx) -> bool:
            rows = await tx.fetchall(
                "UPDATE experiments SET stopped_at = ?, stop_reason = ?"
                " WHERE name = ? AND phase = ? AND stopped_at IS NULL RETURNING phase",
                (at, reason, name, phase),
            )
            if not rows:
                return False
            detail = {"name": name, "phase": phase, "reason": reason}
            await tx.execute(
                INSERT_EVENT, (now, EventKind.EXPERIMENT_STOPPED.value, None, None, dumps(detail))
            )
            return True

        stopped: bool = await self._writer.run(stop)
        return stopped

    async def assign_unit(
        self, name: str, phase: int, unit: str, variant: int, *, at: float
    ) -> int:
        async def assign(tx: Tx) -> int:
            await tx.execute(
                "INSERT OR IGNORE INTO assignments (experiment, phase, unit, variant, at)"
                " VALUES (?,?,?,?,?)",
                (name, phase, unit, variant, at),
            )
            rows = await tx.fetchall(
                "SELECT variant FROM assignments WHERE experiment = ? AND phase = ? AND unit = ?",
                (name, phase, unit),
            )
            return int(rows[0][0])

        kept: int = await self._writer.run(assign)
        return kept

    async def assignments(self, name: str, phase: int) -> dict[str, int]:
        rows = await self._reads.query(
            "SELECT unit, variant FROM assignments WHERE experiment = ? AND phase = ?"
            " ORDER BY unit",
            (name, phase),
        )
        return {unit: variant for unit, variant in rows}

    async def note_exposures(self, rows: Sequence[Exposure]) -> None:
        if not rows:
            return
        values = [
            (e.message_id, e.experiment, e.phase, e.unit, e.variant, e.exposed_at) for e in rows
        ]

        async def note(tx: Tx) -> None:
            await tx.executemany(
                f"INSERT OR IGNORE INTO exposures ({_EXPOSURE}) VALUES (?,?,?,?,?,?)", values
            )

        await self._writer.run(note)

    async def pending_exposures(self) -> list[Exposure]:
        rows = await self._reads.query(
            f"SELECT {_EXPOSURE} FROM exposures INDEXED BY exposures_pending"
            " WHERE exposed_at IS NULL ORDER BY message_id"
        )
        return [Exposure(*r) for r in rows]

    async def exposures_of(self, message_ids: Sequence[int]) -> list[Exposure]:
        if not message_ids:
            return []
        rows = await self._reads.query(
            f"SELECT {_EXPOSURE} FROM exposures"
            " WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY message_id",
            (dumps(list(message_ids)),),
        )
        return [Exposure(*r) for r in rows]

    async def mark_exposed(self, message_ids: Sequence[int], *, at: float) -> list[Exposure]:
        if not message_ids:
            return []

        async def mark(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                "UPDATE exposures SET exposed_at = ? WHERE exposed_at IS NULL"
                " AND message_id IN (SELECT value FROM json_each(?))"
                f" RETURNING {_EXPOSURE}",
                (at, dumps(list(message_ids))),
            )

        rows: list[Row] = await self._writer.run(mark)
        return sorted((Exposure(*r) for r in rows), key=lambda e: e.message_id)

    async def exposed_units(self, name: str, phase: int) -> dict[str, int]:
        rows = await self._reads.query(
            f"SELECT unit, variant FROM exposures WHERE {_EXPOSED} ORDER BY message_id",
            (name, phase),
        )
        first: dict[str, int] = {}
        for unit, variant in rows:
            first.setdefault(unit, variant)
        return dict(sorted(first.items()))

    async def add_conversions(self, rows: Sequence[tuple[str, int, str, int, float]]) -> list[bool]:
        if not rows:
            return []
        keys = dumps([[name, phase, unit] for name, phase, unit, _, _ in rows])

        async def add(tx: Tx) -> list[bool]:
            kept = {tuple(r) for r in await tx.fetchall(_CONVERTED, (keys,))}
            new = []
            for name, phase, unit, _, _ in rows:
                new.append((name, phase, unit) not in kept)
                kept.add((name, phase, unit))
            await tx.executemany(
                "INSERT OR IGNORE INTO conversions (experiment, phase, unit, variant, at)"
                " VALUES (?,?,?,?,?)",
                rows,
            )
            return new

        new: list[bool] = await self._writer.run(add)
        return new

    async def experiment_counts(self, name: str, phase: int) -> list[VariantCounts]:
        async def counts(tx: Tx) -> list[dict[int, int]]:
            return [dict(await tx.fetchall(sql, (name, phase))) for sql in _COUNTS]

        assigned, exposed, converted = await self._reads.several(counts)
        return [
            VariantCounts(v, assigned[v], exposed.get(v, 0), converted.get(v, 0))
            for v in sorted(assigned)
        ]


def _experiment(r: Row) -> ExperimentRecord:
    return ExperimentRecord(r[0], int(r[1]), json.loads(r[2]), r[3], r[4], r[5], r[6])
