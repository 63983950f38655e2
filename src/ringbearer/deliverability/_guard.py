"""The reputation guard: a sending domain whose complaints or bounces run high pauses.

Mailbox providers judge a sending domain by its complaint rate (Gmail asks
for under 0.10%, never 0.30%) and its bounce rate. Per sending domain the
guard keeps a rolling window of delivered, complained and hard-bounced email,
in time buckets (1/1440 of the window: a minute of a day), so that memory is
bounded whatever the volume. A rate is judged only over ``min_delivered``
emails or more (for the bounce rate: delivered plus bounced).

* complaints over ``complaint_warn``: a warning alert;
* complaints over ``complaint_pause`` or bounces over ``bounce_pause``: the
  domain **pauses**. Its mail of ``paused_categories`` and of bulk priority
  waits in the store (the gate holds it under ``domain:<domain>``); its
  other (transactional) mail, and critical mail of any category, goes on.
  An alert is raised and a ``reputation_paused`` audit event written.

A pause ends by hand (:meth:`ReputationGuard.resume`), after which only
events after the resume count towards pausing that domain again (the
complaints that caused it must not pause it again at once); or by itself
once the rates have stayed quiet (complaints under ``complaint_warn``,
bounces under ``bounce_pause``) for ``resume_after_minutes``.

A pause survives a restart: it is kept as the paused name ``domain:<domain>``
through the store's Controls role (names of integrations and groups never
hold a colon, so it is no one else's), and manual resumes are read back from
the audit log. Each tick also releases mail held under a domain that is not
paused, which a stop between un-pausing and releasing could leave waiting.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import attrs
import trio

from .._audit_kinds import EventKind
from .._delivery import Priority
from .._errors import RingbearerError
from .._logging import fields
from ..control._replies import Severity
from ._model import DomainStanding, EventType, MailEventRow
from ._settings import ReputationSettings

log = logging.getLogger("ringbearer.deliverability")

HOLD_PREFIX = "domain:"
GUARD = "reputation guard"  # ``by`` of what the guard does on its own
BUCKETS = 1440
_COUNTED = {EventType.DELIVERED: 0, EventType.COMPLAINED: 1, EventType.HARD_BOUNCE: 2}


def hold_key(domain: str) -> str:
    """The key a paused domain's mail is held under, and its paused name."""
    return f"{HOLD_PREFIX}{domain}"


class AlertSink(Protocol):
    """Where the guard raises and clears its alerts (the AlertManager)."""

    def found(self, key: str, severity: Severity, summary: str) -> None: ...

    def cleared(self, key: str) -> None: ...


class AuditSink(Protocol):
    """Where the guard writes its audit events (the Journal)."""

    def event(self, kind: EventKind, integration: str | None = None, **detail: object) -> None: ...


class AuditRecord(Protocol):
    @property
    def at(self) -> float: ...

    @property
    def detail(self) -> Mapping[str, Any] | None: ...


class GuardStore(Protocol):
    """What the guard reads and writes: events, holds, paused names, the audit log."""

    async def mail_events(self, *, since: float) -> list[MailEventRow]: ...

    async def release_held(self, key: str, *, at: float, by: str) -> int: ...

    async def held_keys(self) -> dict[str, int]: ...

    async def set_paused(self, name: str, paused: bool) -> None: ...

    async def paused(self) -> set[str]: ...

    async def events(
        self, *, since: float | None = None, kinds: Sequence[str] = (), limit: int = 1000
    ) -> Sequence[AuditRecord]: ...


class ComplaintGauge(Protocol):
    def complaint_ratio(self, domain: str, value: float) -> None: ...

    def forget_domain(self, domain: str) -> None: ...


@attrs.define
class Window:
    """Delivered, complained and hard-bounced counts of one domain, in time buckets."""

    width: float  # seconds a bucket spans
    span: float  # seconds the window spans
    buckets: dict[int, list[int]] = attrs.Factory(dict)
    totals: list[int] = attrs.Factory(lambda: [0, 0, 0])
    oldest: float = math.inf  # the lowest bucket index held: most calls to expire end there

    def add(self, at: float, event: EventType) -> None:
        column = _COUNTED[event]
        index = math.floor(at / self.width)
        bucket = self.buckets.setdefault(index, [0, 0, 0])
        bucket[column] += 1
        self.totals[column] += 1
        self.oldest = min(self.oldest, index)

    def expire(self, now: float) -> None:
        """Forget the buckets wholly older than the window."""
        first_kept = math.floor((now - self.span) / self.width)
        if self.oldest >= first_kept:
            return
        for index in [i for i in self.buckets if i < first_kept]:
            for column, count in enumerate(self.buckets.pop(index)):
                self.totals[column] -= count
        self.oldest = min(self.buckets, default=math.inf)

    def clear(self) -> None:
        self.buckets.clear()
        self.totals = [0, 0, 0]
        self.oldest = math.inf


@attrs.define
class _Domain:
    window: Window
    counted_from: float = -math.inf  # a manual resume: earlier events do not count
    paused_since: float | None = None
    quiet_since: float | None = None  # paused, and quiet since then


@attrs.frozen
class Rates:
    """One domain's window, judged."""

    delivered: int
    complaints: int
    hard_bounces: int
    complaint_rate: float
    bounce_rate: float
    warning: bool  # complaints judged and over complaint_warn
    pausing: bool  # complaints over complaint_pause or bounces over bounce_pause

    @property
    def quiet(self) -> bool:
        return not self.warning and not self.pausing


def judge(totals: Sequence[int], settings: ReputationSettings) -> Rates:
    """The rates of a window's totals (delivered, complaints, hard bounces), and the verdict."""
    delivered, complaints, hard = totals
    complaint_rate = complaints / delivered if delivered else 0.0
    bounce_rate = hard / (delivered + hard) if delivered + hard else 0.0
    judged_complaints = delivered >= settings.min_delivered
    judged_bounces = delivered + hard >= settings.min_delivered
    warning = judged_complaints and complaint_rate > settings.complaint_warn
    pausing = (judged_complaints and complaint_rate > settings.complaint_pause) or (
        judged_bounces and bounce_rate > settings.bounce_pause
    )
    return Rates(delivered, complaints, hard, complaint_rate, bounce_rate, warning, pausing)


@attrs.define(eq=False)
class ReputationGuard:
    """Per sending domain: its standing, and whether its marketing and bulk mail waits."""

    settings: ReputationSettings
    store: GuardStore
    journal: AuditSink
    alerts: AlertSink
    wall: Callable[[], float]
    metrics: ComplaintGauge | None = None
    _domains: dict[str, _Domain] = attrs.Factory(dict)
    _lock: trio.Lock = attrs.Factory(trio.Lock)  # one decision at a time

    @classmethod
    async def load(
        cls,
        settings: ReputationSettings,
        store: GuardStore,
        journal: AuditSink,
        alerts: AlertSink,
        wall: Callable[[], float],
        metrics: ComplaintGauge | None = None,
    ) -> ReputationGuard:
        """The guard as the store leaves it: pauses, manual resumes and the window's events."""
        guard = cls(settings, store, journal, alerts, wall, metrics)
        now = wall()
        since = now - guard.span
        for name in await store.paused():
            if name.startswith(HOLD_PREFIX):
                guard._of(name.removeprefix(HOLD_PREFIX)).paused_since = now
        for name, at in (await guard._newest(EventKind.REPUTATION_PAUSED, None)).items():
            known = guard._domains.get(name)
            if known is not None and known.paused_since is not None:
                known.paused_since = at  # paused since then, not since this start
        for name, at in (await guard._newest(EventKind.REPUTATION_RESUMED, since)).items():
            guard._of(name).counted_from = at
        guard.note(await store.mail_events(since=since))
        return guard

    async def _newest(self, kind: EventKind, since: float | None) -> dict[str, float]:
        """When each domain's newest audit event of ``kind`` was (the guard's own resumes
        left out: only a resume by hand resets what counts)."""
        newest: dict[str, float] = {}
        for event in await self.store.events(since=since, kinds=[kind.value]):  # newest first
            detail = event.detail or {}
            domain = detail.get("domain")
            if isinstance(domain, str) and detail.get("by") != GUARD:
                newest.setdefault(domain, event.at)
        return newest

    @property
    def span(self) -> float:
        return self.settings.window_hours * 3600.0

    # -- what the ingest and the gate call ------------------------------------------------

    def note(self, rows: Sequence[MailEventRow]) -> None:
        """Count kept email events (delivered, complained, hard bounces; others are ignored)."""
        for row in rows:
            if row.domain is None or row.event not in _COUNTED:
                continue
            domain = self._of(row.domain.lower())
            if row.at >= domain.counted_from:
                domain.window.add(row.at, row.event)

    def is_held(self, domain: str | None, category: str | None, priority: Priority) -> bool:
        """Must this email wait: its domain paused, and it marketing-like or bulk?

        Critical mail never waits, whatever its category: a pause protects the
        domain from bulk sending, not from the one email that must arrive."""
        if domain is None or priority is Priority.CRITICAL or not self.settings.enabled:
            return False
        known = self._domains.get(domain)
        if known is None or known.paused_since is None:
            return False
        return priority is Priority.BULK or category in self.settings.paused_categories

    def domains(self, now: float) -> list[DomainStanding]:
        """Each watched domain's standing over the window, by name."""
        return [self._standing(name, now) for name in sorted(self._domains)]

    # -- deciding ------------------------------------------------------------------------

    async def evaluate(self, now: float) -> None:
        """Judge every domain: pause, resume by itself, raise and clear alerts."""
        if not self.settings.enabled:
            return
        async with self._lock:
            for name in list(self._domains):
                await self._evaluate_one(name, now)

    async def _evaluate_one(self, name: str, now: float) -> None:
        domain = self._domains[name]
        domain.window.expire(now)
        rates = judge(domain.window.totals, self.settings)
        if domain.paused_since is None and rates.pausing:
            await self._pause(name, rates, now)
        elif domain.paused_since is not None:
            domain.quiet_since = (domain.quiet_since or now) if rates.quiet else None
            if self._quiet_enough(domain, now):
                await self._resume(name, now, by=GUARD)
        self._report(name, domain, rates)
        if domain.paused_since is None and self._idle(domain, now):
            self._forget(name)

    def _quiet_enough(self, domain: _Domain, now: float) -> bool:
        after = self.settings.resume_after_minutes * 60.0
        quiet = domain.quiet_since
        return after > 0 and quiet is not None and now - quiet >= after

    def _idle(self, domain: _Domain, now: float) -> bool:
        """Nothing counted and no resume still shaping its window: no need to keep it."""
        return not domain.window.buckets and domain.counted_from <= now - self.span

    async def _pause(self, name: str, rates: Rates, now: float) -> None:
        """Hold the domain's marketing and bulk mail: in memory at once, then durably."""
        domain = self._domains[name]
        domain.paused_since, domain.quiet_since = now, None
        detail = _rates_detail(rates)
        log.warning("sending domain paused", extra=fields(domain=name, **detail))
        self.journal.event(EventKind.REPUTATION_PAUSED, None, domain=name, **detail)
        await self.store.set_paused(hold_key(name), True)

    async def resume(self, domain: str, *, by: str) -> int:
        """End ``domain``'s pause by hand; its held mail is due now. How many were released.

        Only events after this count towards pausing it again."""
        name = domain.strip().lower()
        async with self._lock:
            now = self.wall()
            known = self._of(name)
            known.window.clear()
            known.counted_from = now
            released = await self._resume(name, now, by=by)
            self._report(name, known, judge(known.window.totals, self.settings))
            return released

    async def _resume(self, name: str, now: float, *, by: str) -> int:
        """Not held from now (memory first: the gate stops holding), then durably, then
        what waited is released."""
        domain = self._of(name)
        domain.paused_since = domain.quiet_since = None
        await self.store.set_paused(hold_key(name), False)
        released = await self.store.release_held(hold_key(name), at=now, by=by)
        self.journal.event(EventKind.REPUTATION_RESUMED, domain=name, by=by, released=released)
        self.alerts.cleared(f"reputation_paused:{name}")
        log.warning("sending domain resumed", extra=fields(domain=name, by=by, released=released))
        return released

    # -- reporting -----------------------------------------------------------------------

    def _report(self, name: str, domain: _Domain, rates: Rates) -> None:
        """Alerts are conditions: raised while they hold, cleared once they do not."""
        paused_key, warning_key = f"reputation_paused:{name}", f"reputation_warning:{name}"
        if domain.paused_since is not None:
            summary = f"sending domain {name} paused: {_rates_text(rates)}"
            self.alerts.found(paused_key, Severity.CRITICAL, summary)
        else:
            self.alerts.cleared(paused_key)
        if rates.warning and domain.paused_since is None:
            summary = f"sending domain {name} complaint rate high: {_rates_text(rates)}"
            self.alerts.found(warning_key, Severity.WARNING, summary)
        else:
            self.alerts.cleared(warning_key)
        if self.metrics is not None:
            self.metrics.complaint_ratio(name, rates.complaint_rate)

    def _standing(self, name: str, now: float) -> DomainStanding:
        domain = self._domains[name]
        domain.window.expire(now)
        rates = judge(domain.window.totals, self.settings)
        paused = domain.paused_since is not None
        state = "paused" if paused else "warning" if rates.warning else "ok"
        return DomainStanding(
            name,
            rates.delivered,
            rates.complaints,
            rates.hard_bounces,
            rates.complaint_rate,
            rates.bounce_rate,
            state,
            domain.paused_since,
        )

    def _forget(self, name: str) -> None:
        del self._domains[name]
        self.alerts.cleared(f"reputation_paused:{name}")
        self.alerts.cleared(f"reputation_warning:{name}")
        if self.metrics is not None:
            self.metrics.forget_domain(name)

    def _of(self, name: str) -> _Domain:
        domain = self._domains.get(name)
        if domain is None:
            window = Window(self.span / BUCKETS, self.span)
            domain = self._domains[name] = _Domain(window)
        return domain

    async def follow(self) -> list[str]:
        """Hold and free domains as the store's holds say: on a shared store only the
        leader's guard decides, and every node's gate must hold what it paused. A hold
        freed elsewhere (an operator's resume on another node) counts from now, as a
        resume here does, so the leader does not pause it again on the same events. The
        domains that changed (none on the leader, whose own holds are the store's)."""
        async with self._lock:
            kept = await self.store.paused()
            held = {n.removeprefix(HOLD_PREFIX) for n in kept if n.startswith(HOLD_PREFIX)}
            now, changed = self.wall(), []
            for name in sorted(held):
                if self._of(name).paused_since is None:
                    self._domains[name].paused_since = now
                    changed.append(name)
            for name, domain in self._domains.items():
                if domain.paused_since is not None and name not in held:
                    domain.paused_since = domain.quiet_since = None
                    domain.window.clear()
                    domain.counted_from = now
                    changed.append(name)
            return changed

    # -- the duty --------------------------------------------------------------------------

    async def step(self) -> None:
        """One tick: judge every domain, and release mail held under no pause."""
        now = self.wall()
        await self.evaluate(now)
        await self._release_strays(now)

    async def _release_strays(self, now: float) -> None:
        async with self._lock:
            for key in await self.store.held_keys():
                name = key.removeprefix(HOLD_PREFIX)
                if key.startswith(HOLD_PREFIX) and not self._paused(name):
                    await self.store.set_paused(key, False)
                    await self.store.release_held(key, at=now, by=GUARD)

    def _paused(self, name: str) -> bool:
        domain = self._domains.get(name)
        return self.settings.enabled and domain is not None and domain.paused_since is not None

    async def run(
        self, tick_seconds: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Tick every ``tick_seconds``, the first at once; a store error waits for the next."""
        task_status.started()
        while True:
            try:
                await self.step()
            except RingbearerError as exc:
                log.error("reputation guard tick failed", extra=fields(error=str(exc)))
            await trio.sleep(tick_seconds)


def _rates_detail(rates: Rates) -> dict[str, object]:
    return {
        "delivered": rates.delivered,
        "complaints": rates.complaints,
        "hard_bounces": rates.hard_bounces,
        "complaint_rate": round(rates.complaint_rate, 6),
        "bounce_rate": round(rates.bounce_rate, 6),
    }


def _rates_text(rates: Rates) -> str:
    return (
        f"complaints {rates.complaints}/{rates.delivered} ({rates.complaint_rate:.2%}),"
        f" hard bounces {rates.hard_bounces} ({rates.bounce_rate:.2%})"
    )
