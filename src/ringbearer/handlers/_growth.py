"""The growth commands: record events, the cohorts' figures, partners, a user's story,
experiments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .._errors import ErrorCode, RequestError
from .._growth_parts import GrowthSide
from ..control import _growth_protocol as p
from ..control import _growth_replies as g
from ..growth._cohorts import By
from ..growth._events import GrowthEvent, parse_event
from ..store import ExperimentRecord, Queries

DECISIONS_READ = 10_000  # the latest growth decisions `explain` looks through


@attrs.frozen
class RecordHandler:
    growth: GrowthSide

    async def __call__(self, request: p.GrowthRecord) -> g.GrowthRecordReply:
        events = request.events
        if not events:
            raise RequestError(ErrorCode.BAD_ARGS, "growth-record needs at least one event")
        if len(events) > p.MAX_EVENTS_PER_RECORD:
            raise RequestError(
                ErrorCode.TOO_MANY, f"at most {p.MAX_EVENTS_PER_RECORD} events a request"
            )
        parsed = [_parsed(i, event) for i, event in enumerate(events)]
        recorded, refused = await self.growth.recorder.record(parsed)
        return g.GrowthRecordReply(
            len(recorded), [g.RefusedEvent(r.index, r.code.value, r.reason) for r in refused],
            sum(self.growth.model.unmatched_counts()),
        )  # fmt: skip


def _parsed(index: int, event: object) -> GrowthEvent:
    try:
        return parse_event(event)
    except ValueError as exc:
        raise RequestError(ErrorCode.BAD_ARGS, f"events[{index}]: {exc}") from None


@attrs.frozen
class ReportHandler:
    growth: GrowthSide

    async def __call__(self, request: p.GrowthReport) -> g.GrowthReportReply:
        if request.by not in tuple(By):
            raise RequestError(ErrorCode.BAD_ARGS, f"by: one of {', '.join(By)}")
        self.growth.loading()
        model, settings = self.growth.model, self.growth.config.growth
        rows = model.report(request.by, min_cohort=settings.min_cohort)
        acceptances, invites, couples = model.unmatched_counts()
        return g.GrowthReportReply(
            model.window_days, request.by,
            [g.CohortView(**attrs.asdict(row)) for row in rows], settings.min_cohort,
            self.growth.recorder.kept, acceptances, invites, couples,
        )  # fmt: skip


@attrs.frozen
class PartnersHandler:
    growth: GrowthSide

    async def __call__(self, request: p.GrowthPartners) -> g.PartnersReply:
        if request.limit < 1:
            raise RequestError(ErrorCode.BAD_ARGS, "limit: at least 1")
        self.growth.loading()
        model = self.growth.model
        vendor = self.growth.sealer.name(request.vendor)
        name = model.vendor_name(vendor)
        if name is None:
            raise RequestError(ErrorCode.NOT_FOUND, "no booking of that vendor is kept")
        found = model.partners(vendor)[: request.limit]
        return g.PartnersReply(
            name, model.couples_of(vendor), [g.PartnerView(f.name, f.couples) for f in found]
        )


@attrs.frozen
class ExplainHandler:
    growth: GrowthSide
    reads: Queries

    async def __call__(self, request: p.GrowthExplain) -> g.ExplainReply:
        self.growth.loading()
        story = self.growth.model.explain(request.user)
        events = await self.reads.events(kinds=["growth_decision"], limit=DECISIONS_READ)
        details = [(e, e.detail or {}) for e in reversed(events)]
        decisions = [
            g.DecisionView(e.at, str(d.get("rule")), str(d.get("outcome")),
                           str(d.get("reason")), e.message_id)
            for e, d in details
            if d.get("user") == request.user
        ]  # fmt: skip
        return g.ExplainReply(
            story.user, story.signed_up_at, dict(story.cohorts),
            [g.InviteStoryView(s.invite, s.at, s.channel.value, s.first_send, s.accepted_at,
                               s.pair_accepted) for s in story.invites],
            story.invitees, story.accepted, list(story.joined_through), story.vendors_booked,
            decisions,
        )  # fmt: skip


def experiment_view(record: ExperimentRecord) -> g.ExperimentView:
    return g.ExperimentView(
        record.name, record.phase, dict(record.spec), record.created_at, record.by,
        record.stopped_at, record.stop_reason,
    )  # fmt: skip


@attrs.frozen
class ExperimentHandler:
    """Every experiment command, each a thin call on the lab."""

    growth: GrowthSide

    async def __call__(self, request: Any) -> Any:
        lab = self.growth.lab
        match request:
            case p.ExperimentCreate():
                return experiment_view(await lab.create(
                    request.name, request.spec, new_phase=request.new_phase, by=request.by
                ))  # fmt: skip
            case p.ExperimentStop():
                return experiment_view(await lab.stop(request.name, request.reason))
            case p.ExperimentShow():
                return g.ExperimentReportReply(await lab.report(request.name, request.phase))
            case p.ExperimentList():
                kept = await lab.store.experiments()
                return g.ExperimentsReply([experiment_view(r) for r in kept])
            case p.ExperimentAssign():
                record, spec, variant, recorded = await lab.preview(request.name, request.unit)
                name = None if variant is None else spec.variants[variant].name
                return g.AssignReply(record.name, record.phase, variant, name, recorded)
        raise TypeError(type(request).__name__)


def growth_table(
    growth: GrowthSide, reads: Queries
) -> dict[type[Any], Callable[[Any], Awaitable[Any]]]:
    """The handler of each growth request."""
    experiments = ExperimentHandler(growth)
    return {
        p.GrowthRecord: RecordHandler(growth),
        p.GrowthReport: ReportHandler(growth),
        p.GrowthPartners: PartnersHandler(growth),
        p.GrowthExplain: ExplainHandler(growth, reads),
        p.ExperimentCreate: experiments,
        p.ExperimentStop: experiments,
        p.ExperimentShow: experiments,
        p.ExperimentList: experiments,
        p.ExperimentAssign: experiments,
    }
