"""What the daemon answers: one frozen class per command's result.

Replies cross the wire through the project's one cattrs converter, which
unstructures them to the JSON the protocol documents (``status --json``'s
fields among them) and structures them back in the client. A reply holds
plain values, enums and other reply classes; a message's payload is the one
free-form JSON object.
"""

from __future__ import annotations

import enum

import attrs

from . import _growth_replies as g

Json = dict[str, object]  # a JSON object as a producer gave it (payloads, event details)


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


# -- messages ---------------------------------------------------------------------------


@attrs.frozen
class AcceptedMessage:
    id: int
    key: str
    duplicate: bool  # the key (with the same target and payload) was known: the earlier message
    held: str | None = None  # a stage rule holds it (which, and why); it goes when that ends


@attrs.frozen
class RefusedMessage:
    """A message of a submit refused on its own (a suppressed recipient); the rest went on."""

    index: int  # its place in the request's messages
    code: str  # an ErrorCode's value
    reason: str


@attrs.frozen
class SubmitReply:
    accepted: list[AcceptedMessage]  # the messages not refused, in the request's order
    refused: list[RefusedMessage] = attrs.Factory(list)


@attrs.frozen
class EventView:
    """One audit event."""

    kind: str
    at: float
    message_id: int | None = None
    integration: str | None = None
    detail: Json | None = None
    id: int | None = None


@attrs.frozen
class MessageReply:
    """One message's record and its history, oldest event first."""

    id: int
    target: str
    integration: str | None
    priority: str
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    provider_id: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None
    events: list[EventView]


@attrs.frozen
class WaitReply:
    """``reached``: the condition held before the timeout."""

    reached: bool
    idle: bool
    queued: int  # queued and in flight, every target
    name: str | None = None  # waiting for a breaker: its integration and state now
    breaker: str | None = None


# -- the audit log and dead letters ------------------------------------------------------


@attrs.frozen
class AuditReply:
    """Events newest first; ``before``: pass it as ``before`` for the next page (None: no more)."""

    events: list[EventView]
    before: int | None = None


@attrs.frozen
class DeadLetterView:
    message_id: int
    target: str
    integration: str | None
    reason: str
    at: float
    attempts: int
    payload: Json


@attrs.frozen
class DeadLettersReply:
    """Dead letters newest first; ``before`` as for :class:`AuditReply`."""

    dead_letters: list[DeadLetterView]
    before: int | None = None


@attrs.frozen
class DeadLetterReply:
    """One dead letter with its message and history."""

    message_id: int
    target: str
    integration: str | None
    reason: str
    at: float
    attempts: int
    payload: Json
    message: MessageReply | None
    events: list[EventView]


@attrs.frozen
class ReplayReply:
    replayed: list[int]
    skipped: list[int]  # asked for, but not dead letters
    remaining: int  # with ``all``: how many more match


@attrs.frozen
class PurgeReply:
    purged: list[int]
    skipped: list[int]
    remaining: int


# -- operating ----------------------------------------------------------------------------


@attrs.frozen
class PauseReply:
    name: str
    paused: bool


@attrs.frozen
class BreakerReply:
    name: str
    breaker: str
    forced: bool


@attrs.frozen
class CrashReply:
    name: str
    armed: bool


@attrs.frozen
class ReloadReply:
    added: list[str]
    removed: list[str]
    changed: list[str]
    kept: list[str]
    groups_changed: bool
    needs_restart: list[str]
    # With ``drop_queued``: messages of targets left with no route, now dead letters, by target.
    dropped: dict[str, int] = attrs.Factory(dict)


@attrs.frozen
class OverrideView:
    on: bool
    until: float | None


@attrs.frozen
class ModeReply:
    """Wedding-day mode now, why, and the operator's override if any."""

    wedding_day: bool
    cause: str
    detail: str
    override: OverrideView | None


@attrs.frozen
class AlertView:
    id: int
    key: str
    severity: Severity
    summary: str
    opened_at: float
    level: int
    channels: list[str]
    acked: bool
    resolved: bool


@attrs.frozen
class AlertsReply:
    alerts: list[AlertView]


# -- preflight ---------------------------------------------------------------------------


@attrs.frozen
class PreflightStep:
    step: str  # config | credentials | reachability
    verdict: str  # pass | warn | fail | skip
    reason: str


@attrs.frozen
class PreflightIntegration:
    name: str
    kind: str
    family: str
    verdict: str
    steps: list[PreflightStep]


@attrs.frozen
class PreflightReply:
    """``ringbearer preflight --json``: each integration checked, sending nothing."""

    verdict: str  # ready | ready with warnings | not ready
    exit_code: int  # 0 ready (with or without warnings), 1 not ready
    checked: str  # what was checked: the running daemon's sandbox, its providers, the config
    sandbox: str | None
    integrations: list[PreflightIntegration]


# -- deliverability -------------------------------------------------------------------------


@attrs.frozen
class SuppressionView:
    """An address kept from mail of ``scope`` (a category, or ``*`` for every one)."""

    id: int | None
    address: str
    scope: str
    reason: str  # a Reason's value: hard_bounce, complaint, unsubscribe, soft_bounce, manual
    created_at: float
    until: float | None  # None: until removed
    by: str  # an operator, or the provider whose event it was
    note: str
    last_try_at: float | None = None  # a hard bounce: when critical mail last tried anyway


@attrs.frozen
class SuppressionsReply:
    """Suppressions by id ascending; ``after``: pass it as ``after`` for the next page
    (None: no more)."""

    suppressions: list[SuppressionView]
    after: int | None = None


@attrs.frozen
class SuppressionVerdict:
    """Whether a message of ``category`` at ``priority`` to the address would be refused."""

    category: str
    priority: str
    refused: bool
    reason: str  # why, for people
    suppression: int | None = None  # the id of the suppression that refuses it


@attrs.frozen
class SuppressionCheckReply:
    address: str  # as normalised
    suppressions: list[SuppressionView]  # the address's suppressions in force
    verdicts: list[SuppressionVerdict]


@attrs.frozen
class SuppressionRemoveReply:
    address: str
    removed: list[SuppressionView]  # empty: the address had none of that scope


@attrs.frozen
class FunnelView:
    """One provider and sending domain: sent -> accepted -> delivered -> bounced /
    complained -> opened / clicked. A rate is None when there is nothing to divide by."""

    integration: str
    domain: str
    sent: int  # submitted
    accepted: int  # taken by the provider
    delivered: int  # the provider reported it delivered
    hard_bounced: int
    soft_bounced: int
    complained: int
    unsubscribed: int
    opened: int
    clicked: int
    accepted_rate: float | None  # of sent
    delivered_rate: float | None  # of accepted
    bounce_rate: float | None  # hard and soft, of accepted
    complaint_rate: float | None  # of delivered
    open_rate: float | None  # of delivered
    click_rate: float | None  # of delivered


@attrs.frozen
class DomainView:
    """A sending domain's standing with the reputation guard, over the guard's window."""

    domain: str
    state: str  # ok | warning | paused
    delivered: int
    complaints: int
    hard_bounces: int
    complaint_rate: float
    bounce_rate: float
    paused_since: float | None
    held: int  # messages waiting for its pause to end


@attrs.frozen
class DeliverabilityReply:
    """``ringbearer deliverability --json``."""

    since: float
    funnel: list[FunnelView]
    domains: list[DomainView]


@attrs.frozen
class DomainResumeReply:
    domain: str
    was_paused: bool
    released: int  # held messages made due again


# -- status ---------------------------------------------------------------------------------


@attrs.frozen
class QueueDepth:
    critical: int = 0
    normal: int = 0
    bulk: int = 0

    @property
    def total(self) -> int:
        return self.critical + self.normal + self.bulk


@attrs.frozen
class BudgetView:
    """A quota budget: how much of it is used, and what is left for whom."""

    limit: int
    per: str
    used: int
    left_for_critical: int
    left_for_others: int


@attrs.frozen
class IntegrationStatus:
    name: str
    kind: str
    state: str
    paused: bool
    breaker: str
    breaker_forced: bool
    health: str
    success_rate: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    lanes: int
    restarts: int
    delivered: int
    retried: int
    dead: int
    last_error: str | None
    queued: QueueDepth
    in_flight: int
    attempting: int
    budgets: list[BudgetView]


@attrs.frozen
class GroupStatus:
    members: list[str]
    paused: bool
    queued: QueueDepth
    in_flight: int


@attrs.frozen
class StoreStatus:
    path: str
    commits: int
    committed_ops: int
    pending_ops: int


@attrs.frozen
class StallView:
    """A target whose work does not move: why, since when (wall clock), how much waits."""

    target: str
    why: str  # no_route | no_progress | paused
    since: float
    queued: int
    in_flight: int
    detail: str  # for people: what the detector saw


@attrs.frozen
class TokenView:
    """An OAuth access token an integration keeps fresh: how long it has left."""

    integration: str
    has_token: bool
    seconds_left: float
    refresh_seconds_left: float | None  # the refresh token's, where the provider says
    failures: int  # refreshes failed in a row
    reconnect: bool  # the provider refused the refresh token: connect the account again
    last_problem: str | None


@attrs.frozen
class PrivacyStatus:
    """The vault: subjects with a key, the KEK, a rotation's progress, erasures, tokens."""

    subjects: int
    kek_id: str
    rotation_pending: int  # data keys still wrapped under an older KEK
    old_key_needed: bool  # an older KEK is still needed (until the rewrap finishes)
    rotating: bool
    erasures_running: int
    tokens: list[TokenView] = attrs.Factory(list)


@attrs.frozen
class StatusReply:
    """``ringbearer status --json``: these fields are documented in the README."""

    version: str
    protocol: int
    uptime_seconds: float
    config: str
    mode: str  # normal | wedding_day
    wedding_day: ModeReply
    sandbox: str | None
    metrics: str | None
    integrations: list[IntegrationStatus]
    groups: dict[str, GroupStatus]
    store: StoreStatus
    stalls: list[StallView] = attrs.Factory(list)  # what the stall detector found
    webhooks: str | None = None  # the public listener's URL (provider events, unsubscribes)
    privacy: PrivacyStatus | None = None  # None: a daemon without the vault (tests)
    cluster: ClusterStatus | None = None  # None: alone, on the embedded store


@attrs.frozen
class NodeStatus:
    node: str
    host: str
    heartbeat_at: float
    leases: int  # messages it holds in flight


@attrs.frozen
class ClusterStatus:
    """Daemons sharing one PostgreSQL: this node, who leads the once-only duties, the nodes."""

    node: str
    leader: str | None  # None: nobody leads right now (a takeover within a lease)
    leader_term: int | None
    nodes: list[NodeStatus]
    fenced: int  # this node's settles refused since its start: its lease had passed on


# -- privacy ------------------------------------------------------------------------------


@attrs.frozen
class ErasureStepView:
    step: str
    done_at: float | None  # None: not done yet
    detail: Json


@attrs.frozen
class ErasureView:
    """One erasure job and where each of its steps stands."""

    id: int
    subject: str  # the opaque id, never the address
    requested_by: str
    requested_at: float
    finished_at: float | None
    outcome: str | None  # completed | provider_failed; None while it runs
    steps: list[ErasureStepView]


@attrs.frozen
class SubjectStatusReply:
    """What is known of a subject: its erasure jobs, consent by purpose, messages held."""

    subject: str
    erased: bool
    has_key: bool
    messages: int
    consent: dict[str, bool]  # purpose -> latest recorded
    erasures: list[ErasureView]


@attrs.frozen
class ConsentView:
    subject: str
    purpose: str
    granted: bool
    source: str
    at: float
    by: str


@attrs.frozen
class SubjectExportReply:
    """Everything about one subject, decrypted, for a subject-access request."""

    subject: str
    identity: str | None  # the address/phone/user id, while the key lives
    exported_at: float
    messages: list[Json]
    events: list[Json]
    mail_events: list[Json]
    suppressions: list[SuppressionView]
    consent: list[ConsentView]


@attrs.frozen
class KeysRotateReply:
    """A KEK rotation started (or already done): the new key's id, rows still to rewrap."""

    kek_id: str
    pending: int
    old_needed: bool
    running: bool


# -- growth: templates --------------------------------------------------------------------


@attrs.frozen
class TemplateView:
    """One version of a template: its parts (a payload field -> Liquid source)."""

    name: str
    version: int
    parts: dict[str, str]
    created_at: float
    by: str


@attrs.frozen
class TemplatesReply:
    """The latest version of each template, by name."""

    templates: list[TemplateView]


@attrs.frozen
class RenderedReply:
    """A template rendered with the given vars: the payload fields it makes, and their digest
    (the same bytes a message rendered from it at submit carries)."""

    name: str
    version: int
    fields: dict[str, str]
    digest: str


Reply = (
    SubmitReply
    | MessageReply
    | WaitReply
    | AuditReply
    | DeadLettersReply
    | DeadLetterReply
    | ReplayReply
    | PurgeReply
    | PauseReply
    | BreakerReply
    | CrashReply
    | ReloadReply
    | ModeReply
    | AlertView
    | AlertsReply
    | PreflightReply
    | StatusReply
    | SuppressionView
    | SuppressionsReply
    | SuppressionCheckReply
    | SuppressionRemoveReply
    | DeliverabilityReply
    | DomainResumeReply
    | ErasureView
    | SubjectStatusReply
    | SubjectExportReply
    | ConsentView
    | KeysRotateReply
    | TemplateView
    | TemplatesReply
    | RenderedReply
    | g.GrowthReply
)
