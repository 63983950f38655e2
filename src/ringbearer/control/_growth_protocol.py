"""The growth commands' requests: growth events, cohorts, partners, a user's story,
experiments (their replies: ``_growth_replies``)."""

from __future__ import annotations

from typing import Any

import attrs

from . import _growth_replies as g
from ._asks import Asks

MAX_EVENTS_PER_RECORD = 5_000  # the CLI sends a file's events in chunks of 1,000
BY_DEFAULT = "signup_month"


@attrs.frozen
class GrowthRecord(Asks[g.GrowthRecordReply]):
    """Keep growth events (JSON objects, ``growth/_events.py``), all or none if one is
    malformed; an event refused by policy (an erased subject) is refused on its own."""

    events: list[Any] = attrs.Factory(list)  # each checked by the handler (parse_event)

    reply = g.GrowthRecordReply


@attrs.frozen
class GrowthReport(Asks[g.GrowthReportReply]):
    by: str = BY_DEFAULT

    reply = g.GrowthReportReply


@attrs.frozen
class GrowthPartners(Asks[g.PartnersReply]):
    vendor: str  # the vendor's email address
    limit: int = 20

    reply = g.PartnersReply


@attrs.frozen
class GrowthExplain(Asks[g.ExplainReply]):
    user: str

    reply = g.ExplainReply


@attrs.frozen
class ExperimentCreate(Asks[g.ExperimentView]):
    """Define an experiment; the same definition again changes nothing, another design of
    a running one is refused unless ``new_phase`` (its assignments start afresh)."""

    name: str
    spec: dict[str, Any]
    new_phase: bool = False
    by: str = "operator"

    reply = g.ExperimentView


@attrs.frozen
class ExperimentShow(Asks[g.ExperimentReportReply]):
    name: str
    phase: int | None = None  # None: the latest

    reply = g.ExperimentReportReply


@attrs.frozen
class ExperimentList(Asks[g.ExperimentsReply]):
    reply = g.ExperimentsReply


@attrs.frozen
class ExperimentAssign(Asks[g.AssignReply]):
    """The variant a unit gets (computed as GrowthBook does), and the one recorded."""

    name: str
    unit: str

    reply = g.AssignReply


@attrs.frozen
class ExperimentStop(Asks[g.ExperimentView]):
    name: str
    reason: str = "stopped by an operator"

    reply = g.ExperimentView


GrowthRequest = (
    GrowthRecord
    | GrowthReport
    | GrowthPartners
    | GrowthExplain
    | ExperimentCreate
    | ExperimentShow
    | ExperimentList
    | ExperimentAssign
    | ExperimentStop
)

GROWTH_COMMANDS: dict[str, type[Any]] = {
    "growth-record": GrowthRecord,
    "growth": GrowthReport,
    "growth-partners": GrowthPartners,
    "growth-explain": GrowthExplain,
    "experiment-create": ExperimentCreate,
    "experiment-show": ExperimentShow,
    "experiment-list": ExperimentList,
    "experiment-assign": ExperimentAssign,
    "experiment-stop": ExperimentStop,
}
