"""Deliverability for operators: the suppression list, the funnel, a domain's pause.

The handlers reach the suppression book and the reputation guard through
the two small protocols below (the daemon's own objects match them), and the
store only through its ``Deliverability`` role. Each is given the wall clock:
what is "in force" and "the last 24 hours" are wall-clock questions.

Addresses are personal data: a handler names one in an error reply to the
operator who typed it, never in a log line.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from .._delivery import Priority
from .._errors import ErrorCode, RequestError
from .._logging import fields
from ..control import _replies as r
from ..control._protocol import (
    DeliverabilityReport,
    DeliverabilityResume,
    SuppressionAdd,
    SuppressionCheck,
    SuppressionList,
    SuppressionRemove,
)
from ..deliverability import (
    EVERY_CATEGORY,
    DomainStanding,
    EventType,
    FunnelRow,
    Reason,
    Suppression,
    normalise_address,
)
from ..deliverability._guard import HOLD_PREFIX
from ..privacy._vault import is_subject_id
from ..store import Deliverability

log = logging.getLogger("ringbearer.control")

MAX_LIST = 10_000
MAX_ADDRESS = 320  # RFC 5321's longest mailbox, 64 + 1 + 255
MAX_NOTE = 500
DEFAULT_WINDOW = 24 * 3600.0  # the funnel's, without ``since``
CHECKED_PRIORITIES = (Priority.NORMAL, Priority.CRITICAL)

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_WHY = {
    Reason.HARD_BOUNCE: "suppressed after a hard bounce",
    Reason.COMPLAINT: "suppressed after a spam complaint",
    Reason.UNSUBSCRIBE: "unsubscribed",
    Reason.SOFT_BOUNCE: "held after repeated soft bounces",
    Reason.MANUAL: "suppressed by hand",
    Reason.ERASED: "erased at the subject's request",
}


class SuppressionBook(Protocol):
    """The suppression list as the daemon keeps it in force."""

    def blocking(
        self, address: str, category: str, priority: Priority, now: float
    ) -> Suppression | None: ...

    def entries(self, address: str) -> list[Suppression]: ...

    async def add(self, s: Suppression) -> Suppression: ...

    async def remove(
        self, address: str, *, scope: str | None, by: str, note: str = ""
    ) -> list[Suppression]: ...


class ReputationGuard(Protocol):
    """The per-domain reputation guard: its standings, and a pause ended by hand."""

    async def resume(self, domain: str, *, by: str) -> int: ...

    def domains(self, now: float) -> list[DomainStanding]: ...


Categories = Callable[[], Sequence[str]]  # the configured categories, as config says now


# -- checks --------------------------------------------------------------------------------


def checked_address(
    text: str, where: str = "address", name: Callable[[str], str] = normalise_address
) -> str:
    """The address as the book names it (``name``: with the vault, its subject id; a subject
    id is taken as given); BAD_ARGS naming it unless it is an email address or E.164."""
    address = normalise_address(text)
    if is_subject_id(address):
        return address
    if len(address) <= MAX_ADDRESS and (_EMAIL.fullmatch(address) or _E164.fullmatch(address)):
        return name(address)
    shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
    raise RequestError(
        ErrorCode.BAD_ARGS,
        f"{where}: {shown!r} is neither an email address (name@example.com), an E.164 "
        "phone number (+15005550001) nor a subject id (s_ and 32 hex)",
    )


def checked_scope(scope: str, categories: Sequence[str], where: str = "scope") -> str:
    """``*`` or a configured category; BAD_ARGS listing the known ones."""
    if scope == EVERY_CATEGORY or scope in categories:
        return scope
    raise RequestError(
        ErrorCode.BAD_ARGS,
        f"{where}: unknown scope {scope!r}; known: {EVERY_CATEGORY} (every category), "
        + ", ".join(categories),
    )


def checked_category(category: str, categories: Sequence[str]) -> str:
    if category in categories:
        return category
    known = ", ".join(categories)
    raise RequestError(ErrorCode.BAD_ARGS, f"category: unknown {category!r}; known: {known}")


def checked_domain(text: str) -> str:
    """A sending domain, lower case; BAD_ARGS unless it is a host name."""
    domain = text.strip().lower().rstrip(".")
    if len(domain) <= 253 and _DOMAIN.fullmatch(domain):
        return domain
    raise RequestError(ErrorCode.BAD_ARGS, f"domain: {text!r} is not a domain name")


def _checked_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise RequestError(ErrorCode.BAD_ARGS, f"note: at most {MAX_NOTE} characters")
    return note.strip()


# -- views ---------------------------------------------------------------------------------


def suppression_view(s: Suppression) -> r.SuppressionView:
    return r.SuppressionView(
        id=s.id,
        address=s.address,
        scope=s.scope,
        reason=s.reason.value,
        created_at=s.created_at,
        until=s.until,
        by=s.by,
        note=s.note,
        last_try_at=s.last_try_at,
    )


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def why(s: Suppression, priority: Priority) -> str:
    """What a refusal by ``s`` says: the rule, its scope, who, and for how long."""
    scope = "every category" if s.scope == EVERY_CATEGORY else s.scope
    said = f"{_WHY[s.reason]} ({scope}) by {s.by}"
    if s.note:
        said += f": {s.note}"
    if s.until is not None:
        said += f"; until {_iso(s.until)}"
    if priority is Priority.CRITICAL and s.reason is Reason.HARD_BOUNCE and s.last_try_at:
        said += f"; critical mail last tried it at {_iso(s.last_try_at)}"
    return said


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def funnel_view(row: FunnelRow) -> r.FunnelView:
    """A funnel row with its stages named and its rates worked out."""
    count = {t: row.events.get(t.value, 0) for t in EventType}
    delivered = count[EventType.DELIVERED]
    bounced = count[EventType.HARD_BOUNCE] + count[EventType.SOFT_BOUNCE]
    return r.FunnelView(
        integration=row.integration,
        domain=row.domain,
        sent=row.sent,
        accepted=row.accepted,
        delivered=delivered,
        hard_bounced=count[EventType.HARD_BOUNCE],
        soft_bounced=count[EventType.SOFT_BOUNCE],
        complained=count[EventType.COMPLAINED],
        unsubscribed=count[EventType.UNSUBSCRIBED],
        opened=count[EventType.OPENED],
        clicked=count[EventType.CLICKED],
        accepted_rate=_rate(row.accepted, row.sent),
        delivered_rate=_rate(delivered, row.accepted),
        bounce_rate=_rate(bounced, row.accepted),
        complaint_rate=_rate(count[EventType.COMPLAINED], delivered),
        open_rate=_rate(count[EventType.OPENED], delivered),
        click_rate=_rate(count[EventType.CLICKED], delivered),
    )


def domain_views(
    standings: Sequence[DomainStanding], held: Mapping[str, int], only: str | None
) -> list[r.DomainView]:
    """Each domain the guard knows, with what waits under its pause; and a domain the guard
    does not know (yet, after a restart) but whose mail is held, as paused."""
    views = {s.domain: _domain_view(s, held.get(HOLD_PREFIX + s.domain, 0)) for s in standings}
    for key, count in held.items():
        domain = key.removeprefix(HOLD_PREFIX)
        if key.startswith(HOLD_PREFIX) and count and domain not in views:
            views[domain] = r.DomainView(domain, "paused", 0, 0, 0, 0.0, 0.0, None, count)
    return [views[d] for d in sorted(views) if only is None or d == only]


def _domain_view(s: DomainStanding, held: int) -> r.DomainView:
    return r.DomainView(
        domain=s.domain,
        state=s.state,
        delivered=s.delivered,
        complaints=s.complaints,
        hard_bounces=s.hard_bounces,
        complaint_rate=s.complaint_rate,
        bounce_rate=s.bounce_rate,
        paused_since=s.paused_since,
        held=held,
    )


# -- the handlers ----------------------------------------------------------------------------


@attrs.frozen
class SuppressionListHandler:
    reads: Deliverability
    wall: Callable[[], float]
    name: Callable[[str], str] = normalise_address

    async def __call__(self, request: SuppressionList) -> r.SuppressionsReply:
        limit = max(1, min(request.limit, MAX_LIST))
        address = (
            None if request.address is None else checked_address(request.address, name=self.name)
        )
        found = await self.reads.suppressions(
            address=address, active_at=self.wall(), after=request.after, limit=limit + 1
        )
        after = found[limit - 1].id if len(found) > limit else None
        return r.SuppressionsReply([suppression_view(s) for s in found[:limit]], after)


@attrs.frozen
class SuppressionCheckHandler:
    """Which suppressions an address has, and what each would refuse, as the gate decides."""

    book: SuppressionBook
    categories: Categories
    wall: Callable[[], float]
    reads: Deliverability | None = None  # the stored rows, with their ids, for the list
    name: Callable[[str], str] = normalise_address

    async def __call__(self, request: SuppressionCheck) -> r.SuppressionCheckReply:
        address = checked_address(request.address, name=self.name)
        known = self.categories()
        asked = known if request.category is None else [checked_category(request.category, known)]
        now = self.wall()
        entries = [s for s in self.book.entries(address) if s.until is None or s.until > now]
        if self.reads is not None:  # the book decides; the store names them by id
            ids = {(s.scope, s.reason): s.id for s in await self.reads.suppressions(
                address=address, active_at=now
            )}  # fmt: skip
            entries = [attrs.evolve(s, id=ids.get((s.scope, s.reason), s.id)) for s in entries]
        verdicts = [
            self._verdict(address, category, priority, now, entries)
            for category in asked
            for priority in CHECKED_PRIORITIES
        ]
        return r.SuppressionCheckReply(address, [suppression_view(s) for s in entries], verdicts)

    def _verdict(
        self,
        address: str,
        category: str,
        priority: Priority,
        now: float,
        entries: Sequence[Suppression],
    ) -> r.SuppressionVerdict:
        found = self.book.blocking(address, category, priority, now)
        if found is not None:
            same = [e.id for e in entries if (e.scope, e.reason) == (found.scope, found.reason)]
            known = same[0] if same else found.id
            return r.SuppressionVerdict(category, priority.label, True, why(found, priority), known)
        passes = _passes(entries, category, priority)
        return r.SuppressionVerdict(category, priority.label, False, passes)


def _passes(entries: Sequence[Suppression], category: str, priority: Priority) -> str:
    """Why none of the address's suppressions refuses this mail."""
    covering = [s for s in entries if s.scope in (EVERY_CATEGORY, category)]
    if not entries:
        return "no suppression of this address"
    if not covering:
        return f"its suppressions are of other categories than {category}"
    reasons = {s.reason for s in covering}
    if priority is Priority.CRITICAL and Reason.HARD_BOUNCE in reasons:
        return "critical mail may still try a hard-bounced address, once a day"
    if Reason.COMPLAINT in reasons:
        return f"a complaint spares {category} mail"
    return f"none of its suppressions holds {category} mail at {priority.label} priority"


@attrs.frozen
class SuppressionAddHandler:
    book: SuppressionBook
    categories: Categories
    wall: Callable[[], float]
    name: Callable[[str], str] = normalise_address

    async def __call__(self, request: SuppressionAdd) -> r.SuppressionView:
        address = checked_address(request.address, name=self.name)
        scope = checked_scope(request.scope, self.categories())
        note = _checked_note(request.note)
        if not note:
            raise RequestError(ErrorCode.BAD_ARGS, "note: say why the address is suppressed")
        now = self.wall()
        if request.until is not None and request.until <= now:
            raise RequestError(ErrorCode.BAD_ARGS, "until: must be in the future")
        added = await self.book.add(
            Suppression(address, scope, Reason.MANUAL, now, request.until, request.by, note)
        )
        log.info("suppression added", extra=fields(id=added.id, scope=scope, by=request.by))
        return suppression_view(added)


@attrs.frozen
class SuppressionRemoveHandler:
    book: SuppressionBook
    categories: Categories
    name: Callable[[str], str] = normalise_address

    async def __call__(self, request: SuppressionRemove) -> r.SuppressionRemoveReply:
        address = checked_address(request.address, name=self.name)
        scope = None if request.scope is None else checked_scope(request.scope, self.categories())
        note = _checked_note(request.note)
        removed = await self.book.remove(address, scope=scope, by=request.by, note=note)
        log.info(
            "suppressions removed",
            extra=fields(count=len(removed), scope=scope or "all", by=request.by),
        )
        return r.SuppressionRemoveReply(address, [suppression_view(s) for s in removed])


@attrs.frozen
class DeliverabilityHandler:
    """The funnel per provider and sending domain, and each domain's standing and holds."""

    reads: Deliverability
    guard: ReputationGuard
    wall: Callable[[], float]

    async def __call__(self, request: DeliverabilityReport) -> r.DeliverabilityReply:
        now = self.wall()
        since = now - DEFAULT_WINDOW if request.since is None else request.since
        if since > now:
            raise RequestError(ErrorCode.BAD_ARGS, "since: must not be in the future")
        domain = None if request.domain is None else checked_domain(request.domain)
        rows = await self.reads.funnel(since=since, domain=domain)
        held = await self.reads.held_keys()
        funnel = [funnel_view(row) for row in sorted(rows, key=_row_order)]
        return r.DeliverabilityReply(
            since, funnel, domain_views(self.guard.domains(now), held, domain)
        )


def _row_order(row: FunnelRow) -> tuple[str, str]:
    return row.integration, row.domain


@attrs.frozen
class DeliverabilityResumeHandler:
    """End a domain's reputation pause by hand: its held mail goes out again."""

    guard: ReputationGuard
    wall: Callable[[], float]

    async def __call__(self, request: DeliverabilityResume) -> r.DomainResumeReply:
        domain = checked_domain(request.domain)
        standing = {s.domain: s for s in self.guard.domains(self.wall())}.get(domain)
        was_paused = standing is not None and standing.state == "paused"
        released = await self.guard.resume(domain, by=request.by)
        log.info(
            "sending domain resumed",
            extra=fields(domain=domain, released=released, was_paused=was_paused, by=request.by),
        )
        return r.DomainResumeReply(domain, was_paused or released > 0, released)


def deliverability_table(
    *,
    reads: Deliverability,
    book: SuppressionBook,
    guard: ReputationGuard,
    categories: Categories,
    wall: Callable[[], float],
    name: Callable[[str], str] = normalise_address,
) -> dict[type[Any], Callable[[Any], Awaitable[r.Reply]]]:
    """The handler of each deliverability request (``name``: an address as the book names it)."""
    return {
        SuppressionList: SuppressionListHandler(reads, wall, name),
        SuppressionCheck: SuppressionCheckHandler(book, categories, wall, reads, name),
        SuppressionAdd: SuppressionAddHandler(book, categories, wall, name),
        SuppressionRemove: SuppressionRemoveHandler(book, categories, name),
        DeliverabilityReport: DeliverabilityHandler(reads, guard, wall),
        DeliverabilityResume: DeliverabilityResumeHandler(guard, wall),
    }
