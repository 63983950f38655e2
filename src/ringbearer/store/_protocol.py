"""The store's protocols, one per role that uses it; ``Store`` is all of them, for wiring.

Each part of the daemon is handed the narrowest role it needs: the submit
handler an :class:`Intake`, the dispatchers a :class:`Dispatch`, the operator's
commands :class:`Queries` and :class:`DeadLetterOps`. The SQLite store and the
in-memory fake both provide :class:`Store`; tests/test_store_contract.py
holds them to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from .._delivery import Priority
from ..deliverability import (
    EventRecord,
    FunnelRow,
    MailEventRow,
    MatchedEvent,
    ProviderEvent,
    Suppression,
)
from ._alert_model import AlertRecord
from ._growth_model import ExperimentRecord, Exposure, GrowthRow, TemplateRecord, VariantCounts
from ._model import (
    ALL_PRIORITIES,
    Accepted,
    BreakerRecord,
    Claimed,
    Counters,
    DeadLetter,
    Event,
    MessageRecord,
    NewMessage,
    OverrideRecord,
    Settle,
    Span,
)
from ._privacy_model import (
    ConsentRecord,
    ErasedMessages,
    ErasureRecord,
    MailEvent,
    SubjectMessage,
)


class StoreListener(Protocol):
    """Told what a commit made durable, after it is durable."""

    def submitted(self, targets: set[str]) -> None: ...

    def settled(self, settles: Sequence[Settle]) -> None: ...


class NullListener:
    def submitted(self, targets: set[str]) -> None:
        pass

    def settled(self, settles: Sequence[Settle]) -> None:
        pass


@attrs.frozen
class StoreStatistics:
    commits: int
    committed_ops: int
    pending_ops: int


class Intake(Protocol):
    """Where producers' messages come in."""

    async def submit(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        """Store messages durably, acknowledged after the commit; a reused key raises KeyReused."""


class Dispatch(Protocol):
    """What a dispatcher takes work from: claims, parked claims, due times, queue depth."""

    counters: Counters

    async def claim(self, target: str, limit: int, span: Span = ALL_PRIORITIES) -> list[Claimed]:
        """Mark up to ``limit`` due messages of ``target`` in flight: priority, deadline, id."""

    def park_claim(
        self,
        target: str,
        limit: int,
        handoff: Callable[[list[Claimed]], None],
        span: Span = ALL_PRIORITIES,
    ) -> None:
        """Claim with ``target``'s next submit, in its commit, and hand the claim to ``handoff``."""

    def unpark_claim(self, target: str) -> None:
        """Withdraw ``target``'s parked claim, if it has one."""

    async def next_due(self, target: str) -> float | None:
        """The earliest ``next_attempt_at`` among ``target``'s queued messages."""


class Settling(Protocol):
    """Where the end of each claim, and a multi-step delivery's progress, are kept."""

    async def record(self, settles: Sequence[Settle]) -> None:
        """Settle claimed messages; committed with the next batch (``flush`` waits for it)."""

    async def save_progress(
        self, message_id: int, integration: str, progress: Mapping[str, Any]
    ) -> None:
        """Durably keep a multi-step delivery's completed steps; return after the commit."""


class Controls(Protocol):
    """Durable operator and resilience state: breakers, pauses, recent attempts."""

    def save_breaker(self, record: BreakerRecord) -> None:
        """Persist a breaker's state with the next batch (callable from a sync hook)."""

    async def breakers(self) -> dict[str, BreakerRecord]:
        """Every persisted breaker state, by integration."""

    async def set_paused(self, name: str, paused: bool) -> None:
        """Durably pause or resume a target or integration; return after the commit."""

    async def paused(self) -> set[str]:
        """The names that are paused."""

    async def set_mode_override(self, override: OverrideRecord | None) -> None:
        """Durably keep the operator's wedding-day override (None: back to the calendar)."""

    async def mode_override(self) -> OverrideRecord | None:
        """The operator's wedding-day override kept, if any."""

    async def attempt_times(self, integration: str, *, since: float, limit: int) -> list[float]:
        """When ``integration``'s latest attempts (at most ``limit``) since ``since`` started."""


class AuditLog(Protocol):
    """The append-only audit log, as everything but the store writes to it."""

    def append_event(self, event: Event) -> None:
        """Append an audit event; it is committed with the next batch."""


class Queries(Protocol):
    """Reads for operators and the daemon's duties."""

    async def events(
        self,
        *,
        since: float | None = None,
        message_id: int | None = None,
        kinds: Sequence[str] = (),
        before: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """Audit events, newest first; ``before`` (an event id) is a cursor to older ones."""

    async def dead_letters(
        self, *, target: str | None = None, before: int | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        """Dead letters, newest (highest id) first; ``before`` (a message id) is a cursor."""

    async def dead_letter(self, message_id: int) -> DeadLetter | None:
        """The message ``message_id`` if it is a dead letter, else None."""

    async def message(self, message_id: int) -> MessageRecord | None:
        """The message ``message_id`` as stored, or None."""

    async def holding_key(self, key: str) -> int | None:
        """The id of the message that holds idempotency key ``key``, or None."""

    async def states(self, ids: Sequence[int]) -> dict[int, str]:
        """The status of each of these messages (those that exist)."""

    async def deadlines_before(self, wall: float) -> list[tuple[int, str, float]]:
        """Queued or in-flight messages whose deadline is before ``wall``: id, target, deadline."""

    async def oldest_queued(self) -> dict[tuple[str, Priority], float]:
        """When the oldest message still queued was submitted, by target and priority."""


class DeadLetterOps(Protocol):
    """The operator's tools for dead letters: count, replay, purge."""

    async def count_dead(
        self, *, target: str | None = None, after: int = 0, dead_before: float | None = None
    ) -> int:
        """How many dead letters match (as :meth:`replay_dead` and :meth:`purge_dead` select)."""

    async def replay_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        """Queue dead letters again as fresh work; return their ids, ascending.

        ``ids`` (those of them that are dead letters), or else every dead
        letter of ``target`` (or of every target) with an id above ``after``;
        at most ``limit`` either way. Each is queued due now with no attempts
        and its route from the start, keeping its idempotency key, and gets a
        ``replayed`` audit event naming ``by``; the listener hears of their
        targets as of a submit.
        """

    async def purge_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        target: str | None = None,
        after: int = 0,
        dead_before: float | None = None,
        limit: int = 1000,
        by: str = "operator",
    ) -> list[int]:
        """Delete dead letters (selected as by :meth:`replay_dead`); return their ids.

        ``dead_before`` (wall time) keeps those dead-lettered later. The audit
        log keeps their history and gains a ``purged`` event for each.
        """


class AlertState(Protocol):
    """Open alerts and where their escalation stands, so that a restart neither forgets
    an alert nor pages an acknowledged one again."""

    async def save_alert(self, alert: AlertRecord) -> None:
        """Durably keep ``alert``, replacing what was kept under its id; return after the commit."""

    async def open_alerts(self) -> list[AlertRecord]:
        """The alerts not resolved, by id."""

    async def last_alert_id(self) -> int:
        """The highest alert id ever kept, resolved or not (0 if none): new ids go on from it."""


class Deliverability(Protocol):
    """Provider events on messages, the suppression list, holds, and what the guards read."""

    async def match_events(
        self, events: Sequence[ProviderEvent], *, soft_since: float
    ) -> list[MatchedEvent]:
        """Find each event's message (by ``provider_id``, else by ``key``) and whether its
        ``(source, event_id)`` was committed before; ``soft_bounces`` counts the address's
        soft bounces kept since ``soft_since``. A read: nothing is written."""

    async def commit_events(self, records: Sequence[EventRecord]) -> list[bool]:
        """Keep each event (once per ``(source, event_id)``), its ``provider_event`` audit
        event and its suppressions, in one commit with whatever else is waiting; return
        after the commit, True for each event that was new (False: already kept, and
        nothing of that record was written again)."""

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        """Durably add (or renew: same address, scope and reason) a suppression, with a
        ``suppressed`` audit event; return it with its id, after the commit."""

    async def remove_suppression(
        self, address: str, *, scope: str | None = None, by: str, note: str = ""
    ) -> list[Suppression]:
        """Durably remove the address's suppressions (of ``scope``, or all), each with an
        ``unsuppressed`` audit event naming ``by``; return what was removed."""

    async def suppressions(
        self,
        *,
        address: str | None = None,
        active_at: float | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Suppression]:
        """Suppressions by id ascending, above ``after``; of ``address`` only, if given;
        only those not expired at ``active_at`` (wall time), if given."""

    async def note_suppressed_try(self, suppression_id: int, at: float) -> None:
        """A critical email passed a hard-bounce suppression at ``at`` (its one try a day)."""

    async def release_held(self, key: str, *, at: float, by: str) -> int:
        """Make every message held under ``key`` due at ``at``, each with a ``released``
        audit event naming ``by``; the listener hears of their targets as of a submit.
        Return how many."""

    async def held_keys(self) -> dict[str, int]:
        """How many messages wait under each hold key."""

    async def mail_events(self, *, since: float) -> list[MailEventRow]:
        """Kept email events since ``since`` (wall time), oldest first: the guard's seed."""

    async def marketing_sends(self, *, category: str, since: float) -> list[tuple[str, float, int]]:
        """``(recipient, delivered_at, message id)`` of messages of ``category``
        delivered since ``since``, oldest first: the frequency caps' seed (and, on a
        shared store, what the other nodes sent)."""

    async def funnel(self, *, since: float, domain: str | None = None) -> list[FunnelRow]:
        """Per integration and sending domain, for email submitted since ``since``: sent,
        accepted and each event's count."""


class Privacy(Protocol):
    """Subjects' messages, erasure jobs, consent, retention and sealed tokens."""

    async def subject_messages(
        self, subject: str, *, after: int = 0, limit: int = 1000
    ) -> list[SubjectMessage]:
        """Messages about ``subject`` (by id ascending, above ``after``), payloads as stored."""

    async def subject_mail_events(self, subject: str, *, limit: int = 10_000) -> list[MailEvent]:
        """Provider events kept about ``subject`` (by ``mail_events.address``), oldest first."""

    async def erase_messages(self, subject: str, *, at: float, job: int) -> ErasedMessages:
        """In one commit: mark ``subject`` erased (``erased_subjects``); end its queued and dead
        messages as ``erased`` (each with an ``erased`` audit event naming the job); replace
        the payload of every one not in flight with ``ERASED_PAYLOAD``. Idempotent."""

    async def erased_subjects(self) -> set[str]:
        """The subjects erased so far."""

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        """Durably keep an erasure job (a new one gets its id); return it, after the commit."""

    async def erasures(
        self, *, subject: str | None = None, unfinished: bool = False
    ) -> list[ErasureRecord]:
        """Erasure jobs by id ascending: of ``subject``, or those not finished, if asked."""

    async def add_consent(self, record: ConsentRecord) -> ConsentRecord:
        """Durably append a consent record with its ``consent`` audit event; return it, with id."""

    async def consents(self, subject: str | None = None) -> list[ConsentRecord]:
        """Consent records by id ascending (of ``subject`` only, if given)."""

    async def shred_payloads(
        self, *, delivered_before: float, dead_before: float, limit: int = 1000
    ) -> int:
        """Replace with ``SHREDDED_PAYLOAD`` the payloads of up to ``limit`` messages delivered
        before ``delivered_before`` or dead-lettered before ``dead_before`` (wall times) and
        not shredded yet; return how many (0: none left)."""

    async def scrub(self) -> None:
        """Leave nothing deleted or overwritten readable in the files (free pages, the WAL)."""

    async def load_token(self, integration: str) -> str | None:
        """The sealed token set last saved for ``integration``, or None."""

    async def save_token(self, integration: str, sealed: str) -> None:
        """Durably keep ``integration``'s sealed token set; return after the commit."""


class Templates(Protocol):
    """Versioned templates: a put adds a version, which never changes afterwards."""

    async def put_template(self, name: str, parts: Mapping[str, str], *, by: str) -> TemplateRecord:
        """Durably keep ``parts`` as the next version of ``name`` (1 for a new name), with a
        ``template_put`` audit event; return it, after the commit."""

    async def template(self, name: str, version: int | None = None) -> TemplateRecord | None:
        """That version of ``name`` (None: its latest), or None."""

    async def templates(self) -> list[TemplateRecord]:
        """The latest version of each template, by name."""


class GrowthRecords(Protocol):
    """Growth events, append-only: what the viral coefficient is computed from."""

    async def append_growth(
        self, events: Sequence[tuple[str, float, Mapping[str, Any]]]
    ) -> list[int]:
        """Durably keep each ``(kind, at, body)``, in order, in one commit; their ids, ascending.
        A ``body`` that is not a JSON object raises ValueError and nothing is kept."""

    async def growth_rows(self, *, after: int = 0, limit: int = 10_000) -> list[GrowthRow]:
        """Kept events with an id above ``after``, by id, at most ``limit``: a replay's cursor."""

    async def growth_count(self) -> int:
        """How many growth events are kept."""


class Experiments(Protocol):
    """Experiments by phase: their specs, sticky assignments, exposures and conversions."""

    async def put_experiment(
        self, name: str, spec: Mapping[str, Any], *, by: str
    ) -> ExperimentRecord:
        """Durably start the next phase of ``name`` (1 for a new name) with ``spec``, with an
        ``experiment_created`` audit event; return it, after the commit."""

    async def experiment(self, name: str, phase: int | None = None) -> ExperimentRecord | None:
        """That phase of ``name`` (None: its latest), or None."""

    async def experiments(self) -> list[ExperimentRecord]:
        """The latest phase of each experiment, by name."""

    async def stop_experiment(self, name: str, phase: int, *, at: float, reason: str) -> bool:
        """Mark the phase stopped at ``at``, with an ``experiment_stopped`` audit event; False
        (and nothing written) if it is unknown or already stopped."""

    async def assign_unit(
        self, name: str, phase: int, unit: str, variant: int, *, at: float
    ) -> int:
        """Keep ``unit``'s variant in the phase unless it has one already; the one kept (sticky)."""

    async def assignments(self, name: str, phase: int) -> dict[str, int]:
        """Every unit assigned in the phase, with its variant."""

    async def note_exposures(self, rows: Sequence[Exposure]) -> None:
        """Keep exposures, as given (one per message id: a repeated id is ignored)."""

    async def pending_exposures(self) -> list[Exposure]:
        """The exposures whose message is not delivered yet (``exposed_at`` None), by message id."""

    async def exposures_of(self, message_ids: Sequence[int]) -> list[Exposure]:
        """The exposures of these messages (pending or not), by message id."""

    async def mark_exposed(self, message_ids: Sequence[int], *, at: float) -> list[Exposure]:
        """Set ``exposed_at`` of those of these messages' exposures still pending; return them
        as now kept, by message id (unknown or already exposed ids are left out)."""

    async def exposed_units(self, name: str, phase: int) -> dict[str, int]:
        """Every unit exposed in the phase (an exposure whose message was delivered), with the
        variant of its first such exposure, by message id."""

    async def add_conversions(self, rows: Sequence[tuple[str, int, str, int, float]]) -> list[bool]:
        """Keep each ``(experiment, phase, unit, variant, at)``, a unit converting once per
        phase; True for each that was new."""

    async def experiment_counts(self, name: str, phase: int) -> list[VariantCounts]:
        """Distinct units assigned, exposed and converted, per variant that has an assignment,
        by variant."""


class Lifecycle(Protocol):
    """Start-up, shutdown and the listener told of each commit."""

    listener: StoreListener

    def statistics(self) -> StoreStatistics:
        """Commits made so far and operations waiting for one."""

    async def recover_inflight(self) -> int:
        """Queue again what an earlier run left in flight, each an ambiguous attempt; how many."""

    async def flush(self) -> None:
        """Wait until everything handed to the store so far is committed."""


class Store(
    Intake,
    Dispatch,
    Settling,
    Controls,
    AuditLog,
    Queries,
    DeadLetterOps,
    AlertState,
    Deliverability,
    Privacy,
    Templates,
    GrowthRecords,
    Experiments,
    Lifecycle,
    Protocol,
):
    """Every role: what the daemon wires; the SQLite store and the in-memory fake provide it."""
