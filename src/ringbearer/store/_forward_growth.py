"""The growth roles' face on a store: each method hands over to the part that does it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._growth_model import ExperimentRecord, Exposure, GrowthRow, VariantCounts
from ._protocol import Experiments, GrowthRecords


class ForwardsGrowth:
    """A store's :class:`GrowthRecords` and :class:`Experiments` methods, forwarded to
    ``_growth_records`` and ``_experiments``."""

    _growth_records: GrowthRecords
    _experiments: Experiments

    # -- GrowthRecords --------------------------------------------------------------------

    async def append_growth(
        self, events: Sequence[tuple[str, float, Mapping[str, Any]]]
    ) -> list[int]:
        return await self._growth_records.append_growth(events)

    async def growth_rows(self, *, after: int = 0, limit: int = 10_000) -> list[GrowthRow]:
        return await self._growth_records.growth_rows(after=after, limit=limit)

    async def growth_count(self) -> int:
        return await self._growth_records.growth_count()

    # -- Experiments ----------------------------------------------------------------------

    async def put_experiment(
        self, name: str, spec: Mapping[str, Any], *, by: str
    ) -> ExperimentRecord:
        return await self._experiments.put_experiment(name, spec, by=by)

    async def experiment(self, name: str, phase: int | None = None) -> ExperimentRecord | None:
        return await self._experiments.experiment(name, phase)

    async def experiments(self) -> list[ExperimentRecord]:
        return await self._experiments.experiments()

    async def stop_experiment(self, name: str, phase: int, *, at: float, reason: str) -> bool:
        return await self._experiments.stop_experiment(name, phase, at=at, reason=reason)

    async def assign_unit(
        self, name: str, phase: int, unit: str, variant: int, *, at: float
    ) -> int:
        return await self._experiments.assign_unit(name, phase, unit, variant, at=at)

    async def assignments(self, name: str, phase: int) -> dict[str, int]:
        return await self._experiments.assignments(name, phase)

    async def note_exposures(self, rows: Sequence[Exposure]) -> None:
        await self._experiments.note_exposures(rows)

    async def pending_exposures(self) -> list[Exposure]:
        return await self._experiments.pending_exposures()

    async def exposures_of(self, message_ids: Sequence[int]) -> list[Exposure]:
        return await self._experiments.exposures_of(message_ids)

    async def mark_exposed(self, message_ids: Sequence[int], *, at: float) -> list[Exposure]:
        return await self._experiments.mark_exposed(message_ids, at=at)

    async def exposed_units(self, name: str, phase: int) -> dict[str, int]:
        return await self._experiments.exposed_units(name, phase)

    async def add_conversions(self, rows: Sequence[tuple[str, int, str, int, float]]) -> list[bool]:
        return await self._experiments.add_conversions(rows)

    async def experiment_counts(self, name: str, phase: int) -> list[VariantCounts]:
        return await self._experiments.experiment_counts(name, phase)
