"""Growth events and experiments in memory, as the SQLite store keeps them.

Bodies and specs are kept as SQLite gives them back: the JSON they were
written as, read again, so a test sees the same values from either store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio

from .._audit_kinds import EventKind
from ._growth_model import (
    ExperimentRecord,
    Exposure,
    GrowthRow,
    VariantCounts,
    json_object,
    not_json,
)
from ._memory_tables import Tables
from ._model import Event

Phase = tuple[str, int]  # an experiment's name and phase


def as_kept(value: object, field: str) -> dict[str, Any]:
    """``value`` as SQLite would give it back; a ValueError naming ``field`` if it cannot be."""
    mapping = json_object(value, field)
    try:
        kept: dict[str, Any] = json.loads(json.dumps(mapping, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise not_json(field, exc) from exc
    return kept


@attrs.define
class MemoryGrowthRecords:
    _t: Tables
    kept: list[GrowthRow] = attrs.Factory(list)

    async def append_growth(
        self, events: Sequence[tuple[str, float, Mapping[str, Any]]]
    ) -> list[int]:
        await trio.lowlevel.checkpoint()
        now, first = self._t.clock(), len(self.kept) + 1
        bodies = [as_kept(body, f"events[{i}].body") for i, (_, _, body) in enumerate(events)]
        rows = [
            GrowthRow(first + i, kind, at, body, now)
            for i, ((kind, at, _), body) in enumerate(zip(events, bodies, strict=True))
        ]
        self.kept.extend(rows)
        return [r.id for r in rows]

    async def growth_rows(self, *, after: int = 0, limit: int = 10_000) -> list[GrowthRow]:
        await trio.lowlevel.checkpoint()
        rest = self.kept[max(after, 0) :]
        return rest if limit < 0 else rest[:limit]  # SQLite: a negative LIMIT is none

    async def growth_count(self) -> int:
        await trio.lowlevel.checkpoint()
        return len(self.kept)


@attrs.define
class MemoryExperiments:
    _t: Tables
    phases: dict[str, list[ExperimentRecord]] = attrs.Factory(dict)
    assigned: dict[Phase, dict[str, int]] = attrs.Factory(dict)
    exposures: dict[int, Exposure] = attrs.Factory(dict)
    converted: dict[Phase, dict[str, int]] = attrs.Factory(dict)

    async def put_experiment(
        self, name: str, spec: Mapping[str, Any], *, by: str
    ) -> ExperimentRecord:
        await trio.lowlevel.checkpoint()
        kept = as_kept(spec, "spec")
        phases = self.phases.setdefault(name, [])
        record = ExperimentRecord(name, len(phases) + 1, kept, self._t.clock(), by)
        phases.append(record)
        detail = {"name": name, "phase": record.phase, "by": by}
        self._t.log(
            Event(EventKind.EXPERIMENT_CREATED.value, record.created_at, None, None, detail)
        )
        return record

    async def experiment(self, name: str, phase: int | None = None) -> ExperimentRecord | None:
        await trio.lowlevel.checkpoint()
        phases = self.phases.get(name, [])
        if phase is None:
            return phases[-1] if phases else None
        return phases[phase - 1] if 1 <= phase <= len(phases) else None

    async def experiments(self) -> list[ExperimentRecord]:
        await trio.lowlevel.checkpoint()
        return [self.phases[name][-1] for name in sorted(self.phases)]

    async def stop_experiment(self, name: str, phase: int, *, at: float, reason: str) -> bool:
        record = await self.experiment(name, phase)
        if record is None or record.stopped_at is not None:
            return False
        self.phases[name][phase - 1] = attrs.evolve(record, stopped_at=at, stop_reason=reason)
        detail = {"name": name, "phase": phase, "reason": reason}
        self._t.log(Event(EventKind.EXPERIMENT_STOPPED.value, self._t.clock(), None, None, detail))
        return True

    async def assign_unit(
        self, name: str, phase: int, unit: str, variant: int, *, at: float
    ) -> int:
        await trio.lowlevel.checkpoint()
        return self.assigned.setdefault((name, phase), {}).setdefault(unit, variant)

    async def assignments(self, name: str, phase: int) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        return dict(sorted(self.assigned.get((name, phase), {}).items()))

    async def note_exposures(self, rows: Sequence[Exposure]) -> None:
        await trio.lowlevel.checkpoint()
        for row in rows:
            self.exposures.setdefault(row.message_id, row)

    async def pending_exposures(self) -> list[Exposure]:
        await trio.lowlevel.checkpoint()
        return [e for _, e in sorted(self.exposures.items()) if e.exposed_at is None]

    async def exposures_of(self, message_ids: Sequence[int]) -> list[Exposure]:
        await trio.lowlevel.checkpoint()
        return [self.exposures[i] for i in sorted(set(message_ids)) if i in self.exposures]

    async def mark_exposed(self, message_ids: Sequence[int], *, at: float) -> list[Exposure]:
        await trio.lowlevel.checkpoint()
        pending = [self.exposures.get(i) for i in sorted(set(message_ids))]
        exposed = [attrs.evolve(e, exposed_at=at) for e in pending if e and e.exposed_at is None]
        self.exposures.update((e.message_id, e) for e in exposed)
        return exposed

    async def exposed_units(self, name: str, phase: int) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        return _first_variants(self._exposed(name, phase))

    def _exposed(self, name: str, phase: int) -> list[Exposure]:
        """The phase's exposures whose message was delivered, by message id."""
        return [
            e
            for _, e in sorted(self.exposures.items())
            if (e.experiment, e.phase) == (name, phase) and e.exposed_at is not None
        ]

    async def add_conversions(self, rows: Sequence[tuple[str, int, str, int, float]]) -> list[bool]:
        await trio.lowlevel.checkpoint()
        new = []
        for name, phase, unit, variant, _ in rows:
            units = self.converted.setdefault((name, phase), {})
            new.append(unit not in units)
            units.setdefault(unit, variant)
        return new

    async def experiment_counts(self, name: str, phase: int) -> list[VariantCounts]:
        await trio.lowlevel.checkpoint()
        assigned = _tally(self.assigned.get((name, phase), {}).items())
        exposed = _tally({(e.unit, e.variant) for e in self._exposed(name, phase)})
        converted = _tally(self.converted.get((name, phase), {}).items())
        return [
            VariantCounts(v, assigned[v], exposed.get(v, 0), converted.get(v, 0))
            for v in sorted(assigned)
        ]


def _first_variants(exposures: Sequence[Exposure]) -> dict[str, int]:
    """Each unit's variant in the first of its exposures (by message id)."""
    first: dict[str, int] = {}
    for e in exposures:
        first.setdefault(e.unit, e.variant)
    return dict(sorted(first.items()))


def _tally(pairs: Iterable[tuple[str, int]]) -> dict[int, int]:
    """How many (distinct) units each variant has, from ``(unit, variant)`` pairs."""
    counts: dict[int, int] = {}
    for _, variant in pairs:
        counts[variant] = counts.get(variant, 0) + 1
    return counts
