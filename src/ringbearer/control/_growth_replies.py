"""Replies of the growth commands: growth events recorded, cohorts, partners, a user's
story, experiments."""

from __future__ import annotations

from typing import Any

import attrs

Json = Any


@attrs.frozen
class RefusedEvent:
    """A well-formed growth event not kept (its subject was erased): by its index."""

    index: int
    code: str
    reason: str


@attrs.frozen
class GrowthRecordReply:
    """Events kept (in order), those refused, and how many references are still unmatched."""

    recorded: int
    refused: list[RefusedEvent]
    unmatched: int  # references to invites or users not seen yet, over all events kept


@attrs.frozen
class CohortView:
    cohort: str | None
    users: int
    invites: int
    accepted: int
    invites_per_user: float
    conversion: float | None
    k: float
    cycle_days_median: float | None
    small: bool


@attrs.frozen
class GrowthReportReply:
    """The viral coefficient by cohort (``growth --json`` prints the first three fields)."""

    window_days: int
    by: str
    cohorts: list[CohortView]
    min_cohort: int
    events: int  # growth events kept
    unmatched_acceptances: int
    unmatched_inviters: int  # users who sent invites but never signed up
    unmatched_couples: int


@attrs.frozen
class PartnerView:
    name: str  # the vendor's name; "(erased)" once the vendor's key is destroyed
    couples: int


@attrs.frozen
class PartnersReply:
    """The vendors most often booked by the couples who booked ``vendor``."""

    vendor: str  # the vendor's name, as asked about
    couples: int  # couples who booked it
    partners: list[PartnerView]


@attrs.frozen
class InviteStoryView:
    invite: str
    at: float
    channel: str
    first_send: bool
    accepted_at: float | None
    pair_accepted: bool


@attrs.frozen
class DecisionView:
    """One opportunity rule's decision about the user, from the audit log."""

    at: float
    rule: str
    outcome: str  # scheduled | skipped | refused
    reason: str
    message_id: int | None


@attrs.frozen
class ExplainReply:
    """What the growth model knows of one user, and every rule's decision about them."""

    user: str
    signed_up_at: float | None
    cohorts: dict[str, str | None]
    invites: list[InviteStoryView]
    invitees: int
    accepted: int
    joined_through: list[str]
    vendors_booked: int
    decisions: list[DecisionView]


@attrs.frozen
class ExperimentView:
    name: str
    phase: int
    spec: Json
    created_at: float
    by: str
    stopped_at: float | None
    stop_reason: str | None


@attrs.frozen
class ExperimentsReply:
    experiments: list[ExperimentView]


@attrs.frozen
class ExperimentReportReply:
    """``experiment show``: the report as JSON (``growth/_experiments.report_json``)."""

    report: Json


@attrs.frozen
class AssignReply:
    """The variant GrowthBook's hashing gives a unit, and the one recorded for it, if any."""

    experiment: str
    phase: int
    variant: int | None  # None: outside the experiment's coverage
    variant_name: str | None
    recorded: int | None  # the variant recorded for this unit (sticky), if it was assigned


GrowthReply = (
    GrowthRecordReply
    | GrowthReportReply
    | PartnersReply
    | ExplainReply
    | ExperimentView
    | ExperimentsReply
    | ExperimentReportReply
    | AssignReply
)
