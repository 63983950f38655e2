"""Experiments at work: each message naming one gets its unit's sticky variant, its
exposure is kept when it is delivered, and conversions are counted once per unit.

    at submit     the unit (the recipient, or the producer's ``unit``) is hashed as
                  GrowthBook does (``_assignment``) on its normalised identity; the
                  variant is recorded once per phase (a later different hash, e.g.
                  after a weight change in a new phase, does not move a unit within a
                  phase); the message takes the variant's template or fields
    accepted      a pending exposure is kept with the message id
    delivered     the exposure is marked (``ringbearer_experiment_exposures_total``)
    converted     a delivery event of an exposed message (delivered, opened, clicked)
                  or a growth event naming an exposed unit (signup, invite_accepted),
                  as the experiment names: once per unit and phase
                  (``ringbearer_experiment_conversions_total``)

Units are kept by subject id, never in clear. Nothing stops an experiment by itself
unless its definition says ``auto_stop``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter

from .._errors import ErrorCode, RequestError
from .._logging import fields
from ..control import MessageIn
from ..store import ExperimentRecord, Experiments, Exposure, Settle, SettleKind
from ._experiments import (
    ExperimentSpec,
    apply_variant,
    experiment_report,
    parse_spec,
    report_json,
    same_design,
    spec_json,
    unit_identity,
)
from ._sealing import Sealer

log = logging.getLogger("ringbearer.growth")
DAY = 86400.0
STOP_CHECK_SECONDS = 60.0  # how often an auto_stop experiment's rule is judged


@attrs.frozen
class Draft:
    """An exposure to keep once its message is accepted."""

    experiment: str
    phase: int
    unit: str
    variant: int


@attrs.frozen
class LabMetrics:
    exposures: Counter
    conversions: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> LabMetrics:
        labels = ("experiment", "variant")
        return cls(
            Counter("ringbearer_experiment_exposures", "Units exposed to an experiment's "
                    "variant (first delivery of a message in it)", labels, registry=registry),
            Counter("ringbearer_experiment_conversions", "Exposed units converted, once per "
                    "unit and phase", labels, registry=registry),
        )  # fmt: skip


@attrs.define(eq=False)
class Lab:
    store: Experiments
    sealer: Sealer
    wall: Any  # () -> float
    metrics: LabMetrics
    _running: dict[str, tuple[ExperimentRecord, ExperimentSpec]] = attrs.Factory(dict)
    _pending: dict[int, Exposure] = attrs.Factory(dict)
    _exposed: dict[tuple[str, int], dict[str, int]] = attrs.Factory(dict)
    _delivered: list[int] = attrs.Factory(list)
    _wake: trio.Event = attrs.Factory(trio.Event)
    _next_check: dict[str, float] = attrs.Factory(dict)  # auto_stop: when to judge again

    async def load(self, configured: Mapping[str, Mapping[str, Any]]) -> None:
        """The experiments kept; those in config started (or refused: see ``same_design``)."""
        for record in await self.store.experiments():
            if record.stopped_at is None:
                self._remember(record)
        for name, table in configured.items():
            await self._configured(name, parse_spec(table, name=name))
        for exposure in await self.store.pending_exposures():
            self._pending[exposure.message_id] = exposure
        for record, _ in self._running.values():
            units = await self.store.exposed_units(record.name, record.phase)
            self._exposed[(record.name, record.phase)] = units

    async def _configured(self, name: str, spec: ExperimentSpec) -> None:
        running = self._running.get(name)
        if running is None:
            kept = await self.store.experiment(name)
            if kept is not None and parse_spec(kept.spec, name=name) == spec:
                return  # stopped, as it was: config does not restart it
            self._remember(await self.store.put_experiment(name, spec_json(spec), by="config"))
            return
        differs = same_design(running[1], spec)
        if differs is not None:
            raise RequestError(
                ErrorCode.BAD_ARGS,
                f"[growth.experiments.{name}]: {differs} (ringbearer experiment create"
                f" {name} --new-phase)",
            )

    def _remember(self, record: ExperimentRecord) -> None:
        spec = parse_spec(record.spec, name=record.name)
        self._running[record.name] = (record, spec)
        self._exposed.setdefault((record.name, record.phase), {})

    # -- the operator's commands ---------------------------------------------------------------

    async def create(
        self, name: str, obj: Mapping[str, Any], *, new_phase: bool, by: str
    ) -> ExperimentRecord:
        try:
            spec = parse_spec(obj, name=name)
        except ValueError as exc:
            raise RequestError(ErrorCode.BAD_ARGS, f"experiment {name}: {exc}") from None
        running = self._running.get(name)
        if running is not None and not new_phase:
            differs = same_design(running[1], spec)
            if differs is None:
                return running[0]
            raise RequestError(ErrorCode.BAD_ARGS, f"experiment {name}: {differs} (--new-phase)")
        if running is not None:
            await self.stop(name, "a new phase started")
        record = await self.store.put_experiment(name, spec_json(spec), by=by)
        self._remember(record)
        return record

    async def stop(self, name: str, reason: str) -> ExperimentRecord:
        record, _ = self._running_one(name)
        await self.store.stop_experiment(name, record.phase, at=self.wall(), reason=reason)
        del self._running[name]
        stopped = await self.store.experiment(name, record.phase)
        assert stopped is not None
        return stopped

    async def record(self, name: str, phase: int | None = None) -> ExperimentRecord:
        found = await self.store.experiment(name, phase)
        if found is None:
            raise RequestError(ErrorCode.NOT_FOUND, f"no experiment {name!r}")
        return found

    async def report(self, name: str, phase: int | None = None) -> dict[str, Any]:
        record = await self.record(name, phase)
        spec = parse_spec(record.spec, name=name)
        counts = await self.store.experiment_counts(name, record.phase)
        report = experiment_report(
            spec, phase=record.phase, started_at=record.created_at,
            stopped_at=record.stopped_at, stop_reason=record.stop_reason,
            counts={c.variant: (c.assigned, c.exposed, c.converted) for c in counts},
            now=self.wall(),
        )  # fmt: skip
        return report_json(report)

    async def preview(
        self, name: str, unit: str
    ) -> tuple[ExperimentRecord, ExperimentSpec, int | None, int | None]:
        """The variant ``unit`` hashes to, and the one recorded for it (if any)."""
        record = await self.record(name)
        spec = parse_spec(record.spec, name=name)
        recorded = (await self.store.assignments(name, record.phase)).get(self.sealer.name(unit))
        return record, spec, spec.variant_of(_hashed(unit)), recorded

    # -- submit ----------------------------------------------------------------------------------

    async def assign(
        self, where: str, message: MessageIn, family: str
    ) -> tuple[MessageIn, Draft | None]:
        """``message`` as its unit's variant makes it, and the exposure to keep once accepted."""
        if message.experiment is None:
            if message.unit is not None:
                raise RequestError(ErrorCode.BAD_ARGS, f"{where}.unit: given without an experiment")
            return message, None
        record, spec = self._running_one(message.experiment, where=f"{where}.experiment")
        identity = self._unit(where, spec, message, family)
        variant = spec.variant_of(_hashed(identity))
        if variant is None:  # outside the experiment's coverage: sent as it is, not counted
            return message, None
        unit = self.sealer.name(identity)
        variant = await self.store.assign_unit(
            record.name, record.phase, unit, variant, at=self.wall()
        )
        try:
            varied = apply_variant(spec, variant, message)
        except ValueError as exc:
            raise RequestError(ErrorCode.BAD_ARGS, f"{where}: {exc}") from None
        return varied, Draft(record.name, record.phase, unit, variant)

    def _unit(self, where: str, spec: ExperimentSpec, message: MessageIn, family: str) -> str:
        if spec.unit == "user":
            if not message.unit:
                raise RequestError(
                    ErrorCode.BAD_ARGS,
                    f"{where}.unit: experiment {spec.name!r} is by user; give the unit",
                )
            return message.unit
        found = unit_identity(spec, message, family)
        if found is None:
            raise RequestError(
                ErrorCode.BAD_ARGS, f"{where}: experiment {spec.name!r} is by recipient;"
                " the message names none",
            )  # fmt: skip
        return found

    async def accepted(self, drafts: Sequence[tuple[Draft, int]]) -> None:
        """Keep the pending exposures of messages just accepted (``(draft, message id)``)."""
        rows = [
            Exposure(message_id, d.experiment, d.phase, d.unit, d.variant, None)
            for d, message_id in drafts
            if message_id not in self._pending
        ]
        if rows:
            await self.store.note_exposures(rows)
            for row in rows:
                self._pending[row.message_id] = row

    # -- delivery and conversions ----------------------------------------------------------------

    def settled(self, settles: Sequence[Settle], now: float) -> None:
        """A settle observer: delivered messages with a pending exposure are marked, soon."""
        found = [s.message_id for s in settles
                 if s.kind is SettleKind.DELIVERED and s.message_id in self._pending]  # fmt: skip
        if found:
            self._delivered.extend(found)
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Mark exposures as deliveries come; every minute, apply the stop rule of each
        experiment that says ``auto_stop``."""
        task_status.started()
        while True:
            with trio.move_on_after(STOP_CHECK_SECONDS):
                await self._wake.wait()
            self._wake = trio.Event()
            ids, self._delivered = self._delivered, []
            try:
                if ids:
                    await self._expose(ids)
                await self._auto_stop()
            except Exception as exc:  # the exposures stay pending; the next delivery retries
                log.error("experiment exposures not kept", extra=fields(error=repr(exc)))
                self._delivered.extend(ids)

    async def _auto_stop(self) -> None:
        """Stop the experiments whose stop rule says so, where their definition allows it."""
        now = trio.current_time()
        for name, (record, spec) in list(self._running.items()):
            if not spec.auto_stop or now < self._next_check.get(name, 0.0):
                continue
            self._next_check[name] = now + STOP_CHECK_SECONDS
            decision = (await self.report(name, record.phase))["decision"]
            if decision["stop"]:
                await self.stop(name, f"stop rule: {decision['explanation']}")
                log.info("experiment stopped by its stop rule", extra=fields(
                    experiment=name, phase=record.phase, reason=decision["reason"]))  # fmt: skip

    async def _expose(self, ids: list[int]) -> None:
        exposed = await self.store.mark_exposed(ids, at=self.wall())
        for e in exposed:
            self._pending.pop(e.message_id, None)
            units = self._exposed.setdefault((e.experiment, e.phase), {})
            if e.unit not in units:
                units[e.unit] = e.variant
                self.metrics.exposures.labels(e.experiment, self._name(e)).inc()
        await self._convert("delivered", [(e.experiment, e.phase, e.unit) for e in exposed])

    async def mail_events(self, events: Sequence[tuple[int, str]]) -> None:
        """Delivery events ``(message id, type)`` kept: a conversion where one names it."""
        wanted = {"opened", "clicked", "delivered"} & {
            s.conversion for _, s in self._running.values()
        }
        events = [(m, kind) for m, kind in events if kind in wanted]
        if not events:
            return
        found = {e.message_id: e for e in await self.store.exposures_of([m for m, _ in events])}
        for kind in {kind for _, kind in events}:
            units = [found[m] for m, k in events if k == kind and m in found]
            await self._convert(kind, [(e.experiment, e.phase, e.unit) for e in units])

    async def growth_units(self, kind: str, units: Sequence[str]) -> None:
        """A growth event of ``kind`` names these units (subject ids)."""
        if units:
            wanted = [(r.name, r.phase, u) for r, s in self._running.values()
                      if s.conversion == kind for u in units]  # fmt: skip
            await self._convert(kind, wanted)

    async def _convert(self, kind: str, units: Sequence[tuple[str, int, str]]) -> None:
        rows = []
        for name, phase, unit in units:
            running = self._running.get(name)
            variant = self._exposed.get((name, phase), {}).get(unit)
            counts = running and running[0].phase == phase and running[1].conversion == kind
            if counts and variant is not None:
                rows.append((name, phase, unit, variant, self.wall()))
        if not rows:
            return
        new = await self.store.add_conversions(rows)
        for (name, _, _, variant, _), was_new in zip(rows, new, strict=True):
            if was_new:
                spec = self._running[name][1]
                self.metrics.conversions.labels(name, spec.variants[variant].name).inc()

    def _name(self, e: Exposure) -> str:
        running = self._running.get(e.experiment)
        if running is None or running[0].phase != e.phase:
            return str(e.variant)
        return running[1].variants[e.variant].name

    def _running_one(
        self, name: str, where: str = "experiment"
    ) -> tuple[ExperimentRecord, ExperimentSpec]:
        running = self._running.get(name)
        if running is None:
            known = ", ".join(sorted(self._running)) or "none"
            raise RequestError(
                ErrorCode.NOT_FOUND, f"{where}: no running experiment {name!r}; running: {known}"
            )
        return running

    def running(self) -> list[ExperimentRecord]:
        return [record for record, _ in self._running.values()]


def _hashed(identity: str) -> str:
    """The unit id GrowthBook hashes: the identity normalised (an address in lower case)."""
    from ..privacy import normalise_identity

    return normalise_identity(identity)
