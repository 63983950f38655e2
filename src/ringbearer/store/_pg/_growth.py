"""Growth events and experiments in PostgreSQL (as SQLite's migration 9 and
``_sqlite._growth``).

Writes go through the writer, so growth shares group commits with the queue's own work,
and each caller returns after its commit; reads go to the reader. What differs from
SQLite, and why:

- Several nodes may append at once. Growth event ids are still the next after the
  highest (not a sequence's), each append taking its turn (``take_turn``) until its
  transaction commits: ids then become visible in ascending order, so a replay by
  cursor (``after``) never passes an id that commits later. A put of an experiment
  takes its turn on the name, so two puts get consecutive phases.
- A conversion is new if its insert kept it: one statement inserts a call's rows in
  order and returns those kept, so two nodes converting one unit at once cannot both
  call it new (SQLite asked first, then inserted, under its one writer).
- Lists of ids are bound as arrays (``= ANY(%s)``), not as JSON for ``json_each``;
  names and units are ordered by their bytes (``COLLATE "C"``), as SQLite orders text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..._audit_kinds import EventKind
from .._growth_model import ExperimentRecord, Exposure, GrowthRow, VariantCounts
from .._sqlite._growth import _experiment as experiment_record
from .._sqlite._growth import json_text
from .._sqlite._shared import Shared
from ._db import PgTx, Row, dumps
from ._reads import PgReads
from ._templates import take_turn
from ._writer import INSERT_EVENT, PgWriter

_INSERT_GROWTH = (
    "INSERT INTO growth_events (id, kind, at, body, recorded_at) VALUES (%s,%s,%s,%s,%s)"
)
_EXPERIMENT = "name, phase, spec, created_at, by, stopped_at, stop_reason"
_EXPOSURE = "message_id, experiment, phase, unit, variant, exposed_at"
_EXPOSED = "experiment = %s AND phase = %s AND exposed_at IS NOT NULL"
# A call's conversions, inserted in their order: a repeated key is not inserted again,
# and what was kept is returned.
_CONVERT = (
    "INSERT INTO conversions (experiment, phase, unit, variant, at)"
    " SELECT experiment, phase, unit, variant, at FROM unnest("
    "  %s::text[], %s::bigint[], %s::text[], %s::bigint[], %s::double precision[])"
    "  WITH ORDINALITY AS c (experiment, phase, unit, variant, at, n) ORDER BY n"
    " ON CONFLICT DO NOTHING RETURNING experiment, phase, unit"
)
_COUNTS = (
    "SELECT variant, COUNT(*) FROM assignments WHERE experiment = %s AND phase = %s"
    " GROUP BY variant ORDER BY variant",
    f"SELECT variant, COUNT(DISTINCT unit) FROM exposures WHERE {_EXPOSED} GROUP BY variant",
    "SELECT variant, COUNT(*) FROM conversions WHERE experiment = %s AND phase = %s"
    " GROUP BY variant",
)


class PgGrowthRecords:
    """Implements :class:`~ringbearer.store.GrowthRecords`: one transaction per append."""

    def __init__(self, writer: PgWriter, reads: PgReads, shared: Shared) -> None:
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

        def append(tx: PgTx) -> int:
            take_turn(tx, "growth_events", "")
            found = tx.fetchall("SELECT COALESCE(MAX(id), 0) FROM growth_events")
            first = int(found[0][0]) + 1
            tx.executemany(_INSERT_GROWTH, [(first + i, *r) for i, r in enumerate(rows)])
            return first

        first = await self._writer.run(append)
        return list(range(first, first + len(rows)))

    async def growth_rows(self, *, after: int = 0, limit: int = 10_000) -> list[GrowthRow]:
        rows = await self._reads.query(
            "SELECT id, kind, at, body, recorded_at FROM growth_events"
            " WHERE id > %s ORDER BY id LIMIT %s",
            (after, limit),
        )
        return [GrowthRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    async def growth_count(self) -> int:
        rows = await self._reads.query("SELECT COUNT(*) FROM growth_events")
        return int(rows[0][0])


class PgExperiments:
    """Implements :class:`~ringbearer.store.Experiments` on the writer and the reader."""

    def __init__(self, writer: PgWriter, reads: PgReads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def put_experiment(
        self, name: str, spec: Mapping[str, Any], *, by: str
    ) -> ExperimentRecord:
        text, now = json_text(spec, "spec"), self._shared.clock()

        def put(tx: PgTx) -> int:
            take_turn(tx, "experiments", name)
            rows = tx.fetchall(
                "INSERT INTO experiments (name, phase, spec, created_at, by)"
                " SELECT %s, COALESCE(MAX(phase), 0) + 1, %s, %s, %s FROM experiments"
                " WHERE name = %s RETURNING phase",
                (name, text, now, by, name),
            )
            phase = int(rows[0][0])
            detail = {"name": name, "phase": phase, "by": by}
            kind = EventKind.EXPERIMENT_CREATED.value
            tx.execute(INSERT_EVENT, (now, kind, None, None, dumps(detail)))
            return phase

        phase = await self._writer.run(put)
        return ExperimentRecord(name, phase, json.loads(text), now, by)

    async def experiment(self, name: str, phase: int | None = None) -> ExperimentRecord | None:
        if phase is None:
            rows = await self._reads.query(
                f"SELECT {_EXPERIMENT} FROM experiments WHERE name = %s"
                " ORDER BY phase DESC LIMIT 1",
                (name,),
            )
        else:
            rows = await self._reads.query(
                f"SELECT {_EXPERIMENT} FROM experiments WHERE name = %s AND phase = %s",
                (name, phase),
            )
        return experiment_record(rows[0]) if rows else None

    async def experiments(self) -> list[ExperimentRecord]:
        rows = await self._reads.query(
            f"SELECT {_EXPERIMENT} FROM experiments e WHERE phase ="
            ' (SELECT MAX(phase) FROM experiments WHERE name = e.name) ORDER BY name COLLATE "C"'
        )
        return [experiment_record(r) for r in rows]

    async def stop_experiment(self, name: str, phase: int, *, at: float, reason: str) -> bool:
        now = self._shared.clock()

        def stop(tx: PgTx) -> bool:
            rows = tx.fetchall(
                "UPDATE experiments SET stopped_at = %s, stop_reason = %s"
                " WHERE name = %s AND phase = %s AND stopped_at IS NULL RETURNING phase",
                (at, reason, name, phase),
            )
            if not rows:
                return False
            detail = {"name": name, "phase": phase, "reason": reason}
            kind = EventKind.EXPERIMENT_STOPPED.value
            tx.execute(INSERT_EVENT, (now, kind, None, None, dumps(detail)))
            return True

        return await self._writer.run(stop)

    async def assign_unit(
        self, name: str, phase: int, unit: str, variant: int, *, at: float
    ) -> int:
        def assign(tx: PgTx) -> int:
            tx.execute(
                "INSERT INTO assignments (experiment, phase, unit, variant, at)"
                " VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (name, phase, unit, variant, at),
            )
            rows = tx.fetchall(
                "SELECT variant FROM assignments"
                " WHERE experiment = %s AND phase = %s AND unit = %s",
                (name, phase, unit),
            )
            return int(rows[0][0])

        return await self._writer.run(assign)

    async def assignments(self, name: str, phase: int) -> dict[str, int]:
        rows = await self._reads.query(
            "SELECT unit, variant FROM assignments WHERE experiment = %s AND phase = %s"
            ' ORDER BY unit COLLATE "C"',
            (name, phase),
        )
        return {unit: variant for unit, variant in rows}

    async def note_exposures(self, rows: Sequence[Exposure]) -> None:
        if not rows:
            return
        values = [
            (e.message_id, e.experiment, e.phase, e.unit, e.variant, e.exposed_at) for e in rows
        ]

        def note(tx: PgTx) -> None:
            tx.executemany(
                f"INSERT INTO exposures ({_EXPOSURE}) VALUES (%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT DO NOTHING",
                values,
            )

        await self._writer.run(note)

    async def pending_exposures(self) -> list[Exposure]:
        rows = await self._reads.query(
            f"SELECT {_EXPOSURE} FROM exposures WHERE exposed_at IS NULL ORDER BY message_id"
        )
        return [Exposure(*r) for r in rows]

    async def exposures_of(self, message_ids: Sequence[int]) -> list[Exposure]:
        if not message_ids:
            return []
        rows = await self._reads.query(
            f"SELECT {_EXPOSURE} FROM exposures WHERE message_id = ANY(%s) ORDER BY message_id",
            (list(message_ids),),
        )
        return [Exposure(*r) for r in rows]

    async def mark_exposed(self, message_ids: Sequence[int], *, at: float) -> list[Exposure]:
        if not message_ids:
            return []
        sql = (
            "UPDATE exposures SET exposed_at = %s WHERE exposed_at IS NULL"
            f" AND message_id = ANY(%s) RETURNING {_EXPOSURE}"
        )
        params = (at, list(message_ids))
        rows: list[Row] = await self._writer.run(lambda tx: tx.fetchall(sql, params))
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
        columns = [list(column) for column in zip(*rows, strict=True)]
        kept = {tuple(r) for r in await self._writer.run(lambda tx: tx.fetchall(_CONVERT, columns))}
        new, seen = [], set()
        for name, phase, unit, _, _ in rows:
            new.append((name, phase, unit) in kept and (name, phase, unit) not in seen)
            seen.add((name, phase, unit))
        return new

    async def experiment_counts(self, name: str, phase: int) -> list[VariantCounts]:
        def counts(tx: PgTx) -> list[dict[int, int]]:
            return [{v: n for v, n in tx.fetchall(sql, (name, phase))} for sql in _COUNTS]

        assigned, exposed, converted = await self._reads.several(counts)
        return [
            VariantCounts(v, assigned[v], exposed.get(v, 0), converted.get(v, 0))
            for v in sorted(assigned)
        ]
