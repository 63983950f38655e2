"""The opportunity rules at work: each candidate submitted like any message, each decision
an audit event naming its rule (``growth_decision``), read back by ``growth explain``.

    vendor_invite  a vendor booked by a couple, the vendor's address not a sign-up's
                   (compared by keyed hash): an invite email from that couple, with the
                   ``vendor_invite`` template; it counts as the invite's invite_sent
    referral_ask   a couple 2 to 8 weeks after their wedding, asked once (its key is the
                   couple's), with the ``referral_ask`` template; swept every hour

Submit does the rest as for any message: suppression, consent, frequency caps and stage
rules; a repeat (the same key) is answered as the message already kept. Each candidate is
scheduled (``not_before``) inside the sending hours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from zoneinfo import ZoneInfo

import attrs
import trio

from .._audit_kinds import EventKind
from .._errors import RequestError
from .._logging import fields
from ..control import MessageIn, Submit
from ..control import _replies as r
from ..privacy._vault import is_subject_id
from ..store import AuditLog, Event
from ._cohorts import Growth
from ._events import Role, VendorBooked
from ._opportunities import (
    Candidate,
    OpportunitySettings,
    Skip,
    referral_ask,
    vendor_invite,
)
from ._recording import Recorded
from ._sealing import Sealer

log = logging.getLogger("ringbearer.growth")
SWEEP_SECONDS = 3600.0
RULE_OFF = "rule disabled"
Submitter = Callable[[Submit], Awaitable[r.SubmitReply]]


@attrs.define(eq=False)
class Scout:
    settings: OpportunitySettings
    model: Growth
    sealer: Sealer
    submit: Submitter
    audit: AuditLog
    zone: ZoneInfo
    wall: Callable[[], float]
    _decided_users: set[tuple[str, str]] = attrs.Factory(set)  # (rule, user) this run
    _ready: trio.Event | None = None  # the kept events are read back
    _waiting: list[Recorded] = attrs.Factory(list)  # bookings recorded before that

    async def recorded(self, batch: Sequence[Recorded]) -> None:
        """A recorder's observer: each booking judged by the vendor-invite rule (those that
        come while the kept events are read back wait for them: who is on the platform
        is known only then)."""
        bookings = [one for one in batch if isinstance(one.event, VendorBooked)]
        if self._ready is not None and not self._ready.is_set():
            self._waiting += bookings
            return
        for one in bookings:
            await self._booking(one)

    async def _booking(self, one: Recorded) -> None:
        event = one.event
        assert isinstance(event, VendorBooked)
        vendor = event.vendor_email  # as the model has it: a subject id (with the vault)
        clear = attrs.evolve(event, vendor_email=one.clear["vendor_email"])
        decision = vendor_invite(
            self.settings, clear, vendor_id=_vendor_id(vendor),
            vendor_on_platform=self.model.user_with_email(vendor) is not None,
            couple_known=self.model.signup(event.couple) is not None,
            now=self.wall(), zone=self.zone,
        )  # fmt: skip
        await self._act(decision)

    async def sweep(self) -> int:
        """Ask the couples whose wedding was 2 to 8 weeks ago; how many were submitted."""
        today = dt.datetime.fromtimestamp(self.wall(), self.zone).date()
        first = today - dt.timedelta(days=self.settings.referral_until_days)
        last = today - dt.timedelta(days=self.settings.referral_after_days)
        sent = 0
        for signup in self.model.couples_married_between(first, last):
            if signup.role is not Role.COUPLE or signup.wedding_date is None:
                continue
            if ("referral_ask", signup.user) in self._decided_users:
                continue
            address = await self.sealer.identity(signup.email) if signup.email else None
            if address is None:
                continue  # no address, or erased: nobody to ask
            decision = referral_ask(
                self.settings, user=signup.user, address=address,
                wedding=signup.wedding_date, asked=False, now=self.wall(), zone=self.zone,
            )  # fmt: skip
            sent += await self._act(decision, quiet_repeat=True)
        return sent

    async def run(
        self, ready: trio.Event | None = None,
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:  # fmt: skip
        """Judge the bookings that waited for ``ready``, then sweep every hour."""
        self._ready = ready
        task_status.started()
        if ready is not None:
            await ready.wait()
            waiting, self._waiting = self._waiting, []
            for one in waiting:
                await self._booking(one)
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the next sweep tries again
                log.error("referral sweep failed", extra=fields(error=repr(exc)))
            await trio.sleep(SWEEP_SECONDS)

    async def _act(self, decision: Candidate | Skip, *, quiet_repeat: bool = False) -> int:
        if isinstance(decision, Skip):
            if decision.reason == RULE_OFF:
                return 0  # a rule switched off decides nothing: no audit noise
            self._decided(decision.rule, decision.user, "skipped", decision.reason, None)
            return 0
        try:
            reply = await self.submit(Submit([_message(decision)]))
        except RequestError as exc:
            self._decided(decision.rule, decision.user, "refused", exc.message, None)
            return 0
        if reply.refused:
            self._decided(decision.rule, decision.user, "refused", reply.refused[0].reason, None)
            return 0
        (accepted,) = reply.accepted
        if accepted.duplicate:
            self._decided_users.add((decision.rule, decision.user))
            if not quiet_repeat:
                why = "already sent: the same candidate was submitted before"
                self._decided(decision.rule, decision.user, "skipped", why, accepted.id)
            return 0
        why = "scheduled" if accepted.held is None else f"scheduled; {accepted.held}"
        self._decided(decision.rule, decision.user, "scheduled", why, accepted.id)
        return 1

    def _decided(
        self, rule: str, user: str, outcome: str, reason: str, message_id: int | None
    ) -> None:
        self._decided_users.add((rule, user))
        detail = {"rule": rule, "user": user, "outcome": outcome, "reason": reason}
        kind = EventKind.GROWTH_DECISION.value
        self.audit.append_event(Event(kind, self.wall(), message_id, None, detail))


def _vendor_id(vendor: str) -> str:
    """The vendor's id in a key: its subject id; without the vault (people kept by their
    address) a hash of the address, so the key names no one in clear."""
    if is_subject_id(vendor):
        return vendor
    return "s_" + hashlib.sha256(vendor.encode()).hexdigest()[:32]


def _message(candidate: Candidate) -> MessageIn:
    """The candidate's email; an invite's counts as that invite's invite_sent."""
    if candidate.invite is None:
        return candidate.message
    return attrs.evolve(candidate.message, invite=candidate.invite, inviter=candidate.user)
