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


@attrs.frozen
class SubmitReply:
    accepted: list[AcceptedMessage]


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
)
