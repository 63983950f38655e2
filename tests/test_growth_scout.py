"""The opportunity rules at work: a booking of an unknown vendor becomes one invite email,
a married couple is asked once, and every decision is an audit event naming its rule."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
import trio
import trio.testing

from ringbearer._errors import ErrorCode, RequestError
from ringbearer.control import MessageIn, Submit
from ringbearer.control import _replies as r
from ringbearer.growth._cohorts import Growth
from ringbearer.growth._events import GrowthEvent, Role, Signup, VendorBooked
from ringbearer.growth._opportunities import OpportunitySettings, parse_settings
from ringbearer.growth._recording import Recorder
from ringbearer.growth._scout import SWEEP_SECONDS, Scout
from ringbearer.growth._sealing import ClearSealer, Sealer, VaultSealer
from ringbearer.privacy import Kek, MemoryKeyStore, Vault
from ringbearer.privacy._books import ErasedBook
from ringbearer.store import MemoryStore

T0 = 1_750_000_000.0  # Sunday 2025-06-15, 16:06:40 in London: outside the sending days
LONDON = ZoneInfo("Europe/London")
MONDAY_9AM = dt.datetime(2025, 6, 16, 9, 0, tzinfo=LONDON).timestamp()  # the next opening
DAY = 86400.0

COUPLE, COUPLE_ADDRESS = "c1", "Ann@Example.com"
VENDOR, VENDOR_NAME = "Lens@Studio.example", "Lens Studio"
BOOKING = VendorBooked(COUPLE, VENDOR, VENDOR_NAME, "photographer", T0)


def couple(user: str = COUPLE, email: str | None = COUPLE_ADDRESS, **kw: Any) -> Signup:
    return Signup(user, T0 - 400 * DAY, Role.COUPLE, email, **kw)


@attrs.define
class Submitter:
    """A fake submit: notes each request, answers from a script (accepted, as id 7 on)."""

    requests: list[Submit] = attrs.Factory(list)
    answers: list[r.SubmitReply | Exception] = attrs.Factory(list)
    times: list[float] = attrs.Factory(list)  # trio's clock at each call
    next_id: int = 7

    async def __call__(self, request: Submit) -> r.SubmitReply:
        self.requests.append(request)
        self.times.append(trio.current_time())
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        accepted = [
            r.AcceptedMessage(self.next_id + i, m.key or "", False)
            for i, m in enumerate(request.messages)
        ]
        self.next_id += len(accepted)
        return r.SubmitReply(accepted)

    def messages(self) -> list[MessageIn]:
        return [m for request in self.requests for m in request.messages]


@attrs.define
class Rig:
    store: MemoryStore
    vault: Vault
    sealer: Sealer
    submit: Submitter
    scout: Scout
    recorder: Recorder

    async def record(self, *events: GrowthEvent) -> None:
        _, refused = await self.recorder.record(list(events))
        assert refused == []

    def decisions(self) -> list[tuple[float, int | None, Any]]:
        """Each growth decision in the audit log: its time, message id and detail."""
        return [
            (e.at, e.message_id, e.detail)
            for e in self.store.event_log
            if e.kind == "growth_decision" and e.integration is None
        ]


async def make_rig(
    settings: OpportunitySettings | None = None, sealer: Sealer | None = None
) -> Rig:
    store = MemoryStore(lambda: T0)
    vault = await Vault.open(MemoryKeyStore(), Kek.generate(), wall=lambda: T0)
    sealer = sealer or VaultSealer(vault, ErasedBook())
    model = Growth(LONDON)
    submit = Submitter()
    settings = settings or OpportunitySettings()
    scout = Scout(settings, model, sealer, submit, store, LONDON, lambda: T0)
    recorder = Recorder(store, sealer, model, [scout.recorded])
    return Rig(store, vault, sealer, submit, scout, recorder)


@pytest.fixture
async def rig() -> Rig:
    return await make_rig()


def decision(outcome: str, reason: str, rule: str = "vendor_invite", user: str = COUPLE) -> Any:
    return {"rule": rule, "user": user, "outcome": outcome, "reason": reason}


# -- the vendor invite -----------------------------------------------------------------------


async def test_a_booked_unknown_vendor_gets_one_invite_email(rig: Rig) -> None:
    """On the couple's behalf, with the vendor_invite template, keyed by couple and vendor's
    subject id, counted as an invite, waiting for Monday's 09:00 in London."""
    await rig.record(couple())
    await rig.record(BOOKING)
    (request,) = rig.submit.requests
    (message,) = request.messages
    vendor_id = rig.vault.subject_id(VENDOR)
    key = f"growth:vendor_invite:{COUPLE}:{vendor_id}"
    invite = "vi_" + hashlib.sha256(key.encode()).hexdigest()[:20]
    assert message == MessageIn(
        target="email",
        payload={"to": VENDOR, "from": "hello@example.com"},
        key=key,
        category="invites",
        not_before=MONDAY_9AM,
        subjects=[VENDOR],
        template="vendor_invite",
        vars={
            "vendor_name": VENDOR_NAME,
            "vendor_type": "photographer",
            "couple_id": COUPLE,
            "invite": invite,
        },
        invite=invite,
        inviter=COUPLE,
    )
    assert rig.decisions() == [(T0, 7, decision("scheduled", "scheduled"))]


async def test_a_held_invite_is_scheduled_saying_why(rig: Rig) -> None:
    """Accepted but held by a stage rule: scheduled, the hold in the reason."""
    rig.submit.answers.append(
        r.SubmitReply([r.AcceptedMessage(9, "k", False, "final_week: held until 2025-06-22")])
    )
    await rig.record(couple(), BOOKING)
    assert rig.decisions() == [
        (T0, 9, decision("scheduled", "scheduled; final_week: held until 2025-06-22"))
    ]


async def test_a_vendor_already_on_the_platform_is_skipped(rig: Rig) -> None:
    """A vendor who signed up with that address (any case) is not invited: no submit."""
    vendor = Signup("v1", T0 - DAY, Role.VENDOR, "LENS@studio.example", "photographer")
    await rig.record(couple(), vendor)
    await rig.record(BOOKING)
    assert rig.submit.requests == []
    assert rig.decisions() == [(T0, None, decision("skipped", "vendor already on the platform"))]


async def test_a_booking_by_an_unknown_couple_is_skipped(rig: Rig) -> None:
    """The invite speaks for the couple: one not signed up is skipped, nothing sent."""
    await rig.record(BOOKING)
    assert rig.submit.requests == []
    assert rig.decisions() == [(T0, None, decision("skipped", "couple unknown"))]


async def test_a_disabled_rule_sends_nothing_and_decides_nothing() -> None:
    """A rule switched off is not judged: no submit, and no audit event for each booking."""
    rig = await make_rig(parse_settings({"vendor_invite": {"enabled": False}}))
    await rig.record(couple(), BOOKING)
    assert rig.submit.requests == [] and rig.decisions() == []


async def test_a_repeat_of_the_same_candidate_is_skipped_as_already_sent(rig: Rig) -> None:
    """The same key answered as the message already kept: skipped, naming that message."""
    rig.submit.answers.append(r.SubmitReply([r.AcceptedMessage(3, "k", True)]))
    await rig.record(couple(), BOOKING)
    why = "already sent: the same candidate was submitted before"
    assert rig.decisions() == [(T0, 3, decision("skipped", why))]


async def test_a_refused_invite_says_why(rig: Rig) -> None:
    """Refused on its own (suppressed): the decision is refused, with submit's reason."""
    why = "messages[0].to: suppressed for category invites"
    rig.submit.answers.append(r.SubmitReply([], [r.RefusedMessage(0, "suppressed", why)]))
    await rig.record(couple(), BOOKING)
    assert rig.decisions() == [(T0, None, decision("refused", why))]


async def test_an_invite_submit_refuses_as_a_whole_is_refused(rig: Rig) -> None:
    """A RequestError from submit (an unknown target) is a refused decision, not a crash."""
    error = RequestError(ErrorCode.UNKNOWN_TARGET, "messages[0].target: no target 'email'")
    rig.submit.answers.append(error)
    await rig.record(couple(), BOOKING)
    assert rig.decisions() == [(T0, None, decision("refused", error.message))]


async def test_other_events_are_not_judged(rig: Rig) -> None:
    """Sign-ups (a vendor's too) submit nothing and decide nothing."""
    await rig.record(couple(), Signup("v1", T0, Role.VENDOR, VENDOR))
    assert rig.submit.requests == [] and rig.decisions() == []


async def test_without_a_vault_a_booking_is_judged_too() -> None:
    """No [privacy] keys: the vendor is kept by address, and still invited once."""
    rig = await make_rig(sealer=ClearSealer())
    await rig.record(couple(), BOOKING)
    assert [m.payload["to"] for m in rig.submit.messages()] == [VENDOR]


# -- the referral ask ------------------------------------------------------------------------


async def test_the_sweep_asks_couples_two_to_eight_weeks_after_their_wedding(rig: Rig) -> None:
    """Today is 2025-06-15 in London: weddings from 2025-04-20 (56 days) to 2025-06-01 (14
    days) are asked, at the address the vault names (normalised); the days either side are
    not, nor a vendor, a couple without a wedding date or without an address."""
    await rig.record(
        couple("in-14", "Ann@Example.com", wedding_date=dt.date(2025, 6, 1)),
        couple("in-56", "bo@example.com", wedding_date=dt.date(2025, 4, 20)),
        couple("out-13", "cy@example.com", wedding_date=dt.date(2025, 6, 2)),
        couple("out-57", "di@example.com", wedding_date=dt.date(2025, 4, 19)),
        couple("no-date", "ed@example.com"),
        couple("no-address", None, wedding_date=dt.date(2025, 5, 1)),
        Signup("v1", T0, Role.VENDOR, "fi@example.com", "florist"),
    )
    assert await rig.scout.sweep() == 2
    first, second = rig.submit.messages()
    assert first == MessageIn(
        target="email",
        payload={"to": "ann@example.com", "from": "hello@example.com"},
        key="growth:referral_ask:in-14",
        category="marketing",
        not_before=MONDAY_9AM,
        subjects=["ann@example.com"],
        template="referral_ask",
        vars={"couple_id": "in-14", "wedding_date": "2025-06-01"},
        wedding_date="2025-06-01",
    )
    assert (second.key, second.payload["to"]) == ("growth:referral_ask:in-56", "bo@example.com")
    assert rig.decisions() == [
        (T0, 7, decision("scheduled", "scheduled", "referral_ask", "in-14")),
        (T0, 8, decision("scheduled", "scheduled", "referral_ask", "in-56")),
    ]


async def test_a_couple_decided_on_is_not_asked_again_in_the_same_run(rig: Rig) -> None:
    """Scheduled or refused, a couple is not submitted again by the next sweep."""
    await rig.record(
        couple("a", "a@example.com", wedding_date=dt.date(2025, 5, 1)),
        couple("b", "b@example.com", wedding_date=dt.date(2025, 5, 1)),
    )
    rig.submit.answers.append(RequestError(ErrorCode.STAGE_RULE, "messages[0]: not now"))
    assert await rig.scout.sweep() == 1
    assert await rig.scout.sweep() == 0
    assert [m.key for m in rig.submit.messages()] == [
        "growth:referral_ask:a", "growth:referral_ask:b",
    ]  # fmt: skip
    assert rig.decisions() == [
        (T0, None, decision("refused", "messages[0]: not now", "referral_ask", "a")),
        (T0, 7, decision("scheduled", "scheduled", "referral_ask", "b")),
    ]


async def test_a_repeat_of_a_referral_ask_is_quiet(rig: Rig) -> None:
    """Asked before a restart: submit answers with the kept message; no decision is logged."""
    await rig.record(couple("a", "a@example.com", wedding_date=dt.date(2025, 5, 1)))
    rig.submit.answers.append(r.SubmitReply([r.AcceptedMessage(3, "k", True)]))
    assert await rig.scout.sweep() == 0
    assert len(rig.submit.requests) == 1 and rig.decisions() == []


async def test_an_erased_couple_is_not_asked(rig: Rig) -> None:
    """Its key destroyed, the vault names no address: nobody to ask."""
    await rig.record(couple("a", "a@example.com", wedding_date=dt.date(2025, 5, 1)))
    assert await rig.vault.destroy(rig.vault.subject_id("a@example.com"))
    assert await rig.scout.sweep() == 0
    assert rig.submit.requests == [] and rig.decisions() == []


async def test_the_window_is_the_configured_one(rig: Rig) -> None:
    """referral_after_days 0 to until 1: today's and yesterday's weddings only."""
    rig = await make_rig(parse_settings({"referral_after_days": 0, "referral_until_days": 1}))
    await rig.record(
        couple("today", "t@example.com", wedding_date=dt.date(2025, 6, 15)),
        couple("yesterday", "y@example.com", wedding_date=dt.date(2025, 6, 14)),
        couple("before", "b@example.com", wedding_date=dt.date(2025, 6, 13)),
    )
    assert await rig.scout.sweep() == 2
    assert [m.key for m in rig.submit.messages()] == [
        "growth:referral_ask:today", "growth:referral_ask:yesterday",
    ]  # fmt: skip


async def test_the_scout_sweeps_every_hour(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sweep at start fails (the store is down): logged; the next, an hour on, asks."""
    await rig.record(couple("a", "a@example.com", wedding_date=dt.date(2025, 5, 1)))
    rig.submit.answers.append(OSError("store unavailable"))
    start = trio.current_time()
    await nursery.start(rig.scout.run)
    await trio.sleep(SWEEP_SECONDS - 1)
    assert [t - start for t in rig.submit.times] == [0.0]
    assert "referral sweep failed" in caplog.text
    assert rig.decisions() == []
    await trio.sleep(2 * SWEEP_SECONDS)
    assert [t - start for t in rig.submit.times] == [0.0, SWEEP_SECONDS]
    assert rig.decisions() == [(T0, 7, decision("scheduled", "scheduled", "referral_ask", "a"))]


async def test_bookings_recorded_while_events_are_read_back_wait_for_them(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, rig: Rig
) -> None:
    """Until the kept events are read back nobody knows who is on the platform: a booking
    recorded meanwhile is judged once they are, against everything kept."""
    ready = trio.Event()
    await nursery.start(rig.scout.run, ready)
    await rig.record(couple(), BOOKING)
    await rig.record(Signup("v1", T0, Role.VENDOR, VENDOR))  # read back: the vendor is in
    await trio.sleep(1)
    assert rig.submit.requests == [] and rig.decisions() == []
    ready.set()
    await trio.sleep(1)
    assert rig.submit.requests == []
    (decision,) = [d for _, _, d in rig.decisions()]
    assert (decision["rule"], decision["outcome"]) == ("vendor_invite", "skipped")
    assert decision["reason"] == "vendor already on the platform"
