"""The deliverability commands' handlers: the suppression list, a check, the funnel, resume.

The suppression book and the reputation guard are small fakes here (their
own tests hold their rules); the store is the in-memory one, whose
deliverability role writes the audit events the commands promise. One test
runs the daemon's own suppression book, to hold the handlers' protocol to it.
The wall clock is injected: it reads EPOCH until a test moves it on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbearer._delivery import Priority
from ringbearer._errors import ErrorCode, RequestError
from ringbearer.control import _protocol as proto
from ringbearer.control import _replies as r
from ringbearer.control._access import Role, needed
from ringbearer.deliverability import (
    DEFAULT_CATEGORIES,
    EVERY_CATEGORY,
    Channel,
    DomainStanding,
    EventRecord,
    EventType,
    FunnelRow,
    ProviderEvent,
    Reason,
    Suppression,
)
from ringbearer.deliverability._book import SuppressionBook
from ringbearer.deliverability._guard import hold_key
from ringbearer.deliverability._settings import SuppressionRules
from ringbearer.handlers import Table, answer
from ringbearer.handlers import _deliverability as h
from ringbearer.store import EventKind, MemoryStore, NewMessage, Settle, SettleKind

from .harness import EPOCH, wire

R = TypeVar("R")


async def ask(table: Table, request: proto.Asks[R]) -> R:
    """The handler's reply, typed as the request names it."""
    reply = await answer(table, request)  # type: ignore[arg-type]
    assert isinstance(reply, request.reply)
    return reply  # type: ignore[no-any-return]


CONVERTER = proto.converter()
CATEGORIES = (*DEFAULT_CATEGORIES, "digest")
HOUR = 3600.0
DAY = 24 * HOUR


def categories() -> Sequence[str]:
    return CATEGORIES


@attrs.define
class Wall:
    """The wall clock the handlers and the store read; a test moves it on."""

    now: float = EPOCH

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- fakes -------------------------------------------------------------------------------------


@attrs.define
class FakeBook:
    """The book's four methods over the store's role: a suppression blocks its scope, but
    critical mail passes a hard bounce it has not tried within the day."""

    store: MemoryStore
    held: list[Suppression] = attrs.Factory(list)

    def blocking(
        self, address: str, category: str, priority: Priority, now: float
    ) -> Suppression | None:
        for s in self.entries(address):
            if s.scope not in (EVERY_CATEGORY, category) or (s.until or now + 1) <= now:
                continue
            tried = s.last_try_at is not None and now - s.last_try_at < DAY
            if s.reason is Reason.HARD_BOUNCE and priority is Priority.CRITICAL and not tried:
                continue
            return s
        return None

    def entries(self, address: str) -> list[Suppression]:
        return [s for s in self.held if s.address == address]

    async def add(self, s: Suppression) -> Suppression:
        kept = await self.store.add_suppression(s)
        self.held.append(kept)
        return kept

    async def remove(
        self, address: str, *, scope: str | None, by: str, note: str = ""
    ) -> list[Suppression]:
        gone = await self.store.remove_suppression(address, scope=scope, by=by, note=note)
        self.held = [s for s in self.held if s.id not in {g.id for g in gone}]
        return gone


@attrs.define
class FakeGuard:
    standings: list[DomainStanding] = attrs.Factory(list)
    resumed: list[tuple[str, str]] = attrs.Factory(list)
    releases: int = 0

    async def resume(self, domain: str, *, by: str) -> int:
        self.resumed.append((domain, by))
        return self.releases

    def domains(self, now: float) -> list[DomainStanding]:
        return list(self.standings)


@attrs.define
class Deliverability:
    """The commands' table over one store, book and guard, answered as the socket does."""

    store: MemoryStore
    book: FakeBook
    guard: FakeGuard
    wall: Wall

    async def ask(self, request: Any) -> Any:
        table = h.deliverability_table(
            reads=self.store,
            book=self.book,
            guard=self.guard,
            categories=categories,
            wall=self.wall,
        )
        return await ask(table, request)

    async def refused(self, request: Any) -> RequestError:
        with pytest.raises(RequestError) as caught:
            await self.ask(request)
        return caught.value

    def audit(self, kind: EventKind) -> list[dict[str, Any]]:
        return [dict(e.detail or {}) for e in self.store.event_log if e.kind == kind.value]


@pytest.fixture
def d() -> Deliverability:
    wall = Wall()
    store = MemoryStore(wall)
    return Deliverability(store, FakeBook(store), FakeGuard(), wall)


def suppression(address: str, reason: Reason = Reason.HARD_BOUNCE, **kw: Any) -> Suppression:
    kw.setdefault("scope", EVERY_CATEGORY)
    kw.setdefault("by", "resend")
    return Suppression(address, reason=reason, created_at=EPOCH, **kw)


# -- roles and the wire --------------------------------------------------------------------------


def test_reads_are_for_readers_and_changes_for_operators() -> None:
    """List, check and the funnel are reads; add, remove and resume need an operator."""
    assert needed(proto.SuppressionList()) is Role.READ
    assert needed(proto.SuppressionCheck("a@example.com")) is Role.READ
    assert needed(proto.DeliverabilityReport()) is Role.READ
    assert needed(proto.SuppressionAdd("a@example.com", "why")) is Role.OPERATE
    assert needed(proto.SuppressionRemove("a@example.com")) is Role.OPERATE
    assert needed(proto.DeliverabilityResume("example.com")) is Role.OPERATE


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b'{"id":1,"cmd":"suppression-add","args":{"address":"a@x.org","note":"asked"}}',
            proto.SuppressionAdd("a@x.org", "asked"),
        ),
        (
            b'{"id":1,"cmd":"suppression-remove","args":{"address":"a@x.org","scope":"marketing"}}',
            proto.SuppressionRemove("a@x.org", "marketing"),
        ),
        (b'{"id":1,"cmd":"suppression-list","args":{"after":5}}', proto.SuppressionList(after=5)),
        (
            b'{"id":1,"cmd":"suppression-check","args":{"address":"+15005550001"}}',
            proto.SuppressionCheck("+15005550001"),
        ),
        (
            b'{"id":1,"cmd":"deliverability","args":{"since":1800000000}}',
            proto.DeliverabilityReport(since=1_800_000_000.0),
        ),
        (
            b'{"id":1,"cmd":"deliverability-resume","args":{"domain":"x.org","by":"ann"}}',
            proto.DeliverabilityResume("x.org", "ann"),
        ),
    ],
)
def test_each_request_parses_from_the_wire(line: bytes, expected: Any) -> None:
    """Each command's line structures into its typed request."""
    assert proto.parse(line, CONVERTER).request == expected


def test_an_add_without_a_note_is_bad_args_naming_it() -> None:
    """The note is required on the wire, not only by the CLI."""
    line = b'{"id":1,"cmd":"suppression-add","args":{"address":"a@x.org"}}'
    with pytest.raises(RequestError) as refused:
        proto.parse(line, CONVERTER)
    assert refused.value.code == ErrorCode.BAD_ARGS and "note" in refused.value.message


async def test_a_daemon_built_without_deliverability_says_so() -> None:
    """A table without these handlers answers unknown_command, not an internal error."""
    with pytest.raises(RequestError) as refused:
        await answer({}, proto.SuppressionList())
    assert refused.value.code == ErrorCode.UNKNOWN_COMMAND
    assert "'suppression-list' is not available" in refused.value.message


# -- addresses and scopes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (" Bob@Example.COM ", "bob@example.com"),
        ("+15005550001", "+15005550001"),
        ("o'neil+tag@mail.example.co.uk", "o'neil+tag@mail.example.co.uk"),
    ],
)
def test_addresses_are_normalised(given: str, kept: str) -> None:
    """Trimmed and lower-cased; an E.164 number as it is."""
    assert h.checked_address(given) == kept


@pytest.mark.parametrize(
    "given", ["bob", "", "bob@", "@example.com", "a@b@c", "a b@example.com", "15005550001", "+0123"]
)
def test_a_malformed_address_is_bad_args_naming_it(given: str) -> None:
    """Neither an email address nor E.164: refused, and the message names what was given."""
    with pytest.raises(RequestError) as refused:
        h.checked_address(given)
    assert refused.value.code == ErrorCode.BAD_ARGS
    assert repr(given) in refused.value.message and "E.164" in refused.value.message


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(st.text(max_size=40) | st.emails() | st.from_regex(r"\+[0-9]{1,16}", fullmatch=True))
def test_an_address_is_refused_or_kept_in_one_normal_form(text: str) -> None:
    """Whatever is given: BAD_ARGS, or a trimmed lower-case address that checks as itself
    (so a suppression cannot be dodged by case or spaces)."""
    try:
        kept = h.checked_address(text)
    except RequestError as refused:
        assert refused.code == ErrorCode.BAD_ARGS
        return
    assert kept == text.strip().lower() and h.checked_address(kept) == kept
    assert kept.count("@") == 1 or re.fullmatch(r"\+[1-9][0-9]{1,14}", kept)


def test_an_unknown_scope_is_bad_args_listing_the_known_ones() -> None:
    with pytest.raises(RequestError) as refused:
        h.checked_scope("promos", CATEGORIES)
    assert refused.value.code == ErrorCode.BAD_ARGS
    assert "'promos'" in refused.value.message
    assert (
        "*" in refused.value.message
        and "transactional, marketing, invites, digest" in refused.value.message
    )


# -- add, list, remove ---------------------------------------------------------------------------


async def test_add_keeps_who_and_why_and_the_store_audits_it(d: Deliverability) -> None:
    """A manual suppression: normalised address, the scope, the operator and the note."""
    added = await d.ask(
        proto.SuppressionAdd(" Ann@Example.com", "asked by phone", "marketing", by="sam (uid 7)")
    )
    assert isinstance(added, r.SuppressionView) and added.id is not None
    assert (added.address, added.scope, added.reason) == ("ann@example.com", "marketing", "manual")
    assert (added.by, added.note, added.created_at) == ("sam (uid 7)", "asked by phone", EPOCH)
    (event,) = d.audit(EventKind.SUPPRESSED)
    assert event["by"] == "sam (uid 7)" and event["note"] == "asked by phone"
    assert "ann@example.com" not in str(event)  # the audit log keeps a hash only


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (proto.SuppressionAdd("ann@example.com", "x", "promos"), "unknown scope 'promos'"),
        (proto.SuppressionAdd("ann@example.com", "   "), "note: say why"),
        (proto.SuppressionAdd("ann@example.com", "x" * 501), "note: at most 500"),
        (proto.SuppressionAdd("ann@example.com", "x", until=EPOCH), "until: must be in the future"),
        (proto.SuppressionAdd("ann", "x"), "'ann' is neither"),
    ],
)
async def test_a_bad_add_is_refused_and_nothing_is_kept(
    d: Deliverability, request_: proto.SuppressionAdd, said: str
) -> None:
    """Each bad field is named; nothing reaches the store."""
    refused = await d.refused(request_)
    assert refused.code == ErrorCode.BAD_ARGS and said in refused.message
    assert await d.store.suppressions() == [] and d.audit(EventKind.SUPPRESSED) == []


async def test_list_pages_by_id_and_shows_only_what_is_in_force(d: Deliverability) -> None:
    """``after`` pages on from the last id shown; an ended suppression is not listed."""
    for n in range(5):
        await d.book.add(suppression(f"u{n}@example.com"))
    await d.book.add(suppression("short@example.com", Reason.SOFT_BOUNCE, until=EPOCH + HOUR))
    first = await d.ask(proto.SuppressionList(limit=4))
    assert [s.address for s in first.suppressions][-1] == "u3@example.com"
    assert first.after == first.suppressions[-1].id
    rest = await d.ask(proto.SuppressionList(after=first.after, limit=4))
    assert [s.address for s in rest.suppressions] == ["u4@example.com", "short@example.com"]
    assert rest.after is None
    d.wall.advance(HOUR)
    later = await d.ask(proto.SuppressionList())
    assert "short@example.com" not in [s.address for s in later.suppressions]
    assert len(later.suppressions) == 5


async def test_list_of_one_address_normalises_it(d: Deliverability) -> None:
    await d.book.add(suppression("bob@example.com"))
    await d.book.add(suppression("eve@example.com"))
    found = await d.ask(proto.SuppressionList(address="  BOB@example.com"))
    assert [s.address for s in found.suppressions] == ["bob@example.com"]


async def test_remove_by_scope_names_who_and_why(d: Deliverability) -> None:
    """Only the scope asked for goes; the store audits who removed it and why."""
    await d.book.add(suppression("ann@example.com", Reason.UNSUBSCRIBE, scope="marketing"))
    await d.book.add(suppression("ann@example.com", Reason.MANUAL, scope="digest"))
    reply = await d.ask(
        proto.SuppressionRemove("Ann@example.com", "marketing", "resubscribed", "sam")
    )
    assert [(s.scope, s.reason) for s in reply.removed] == [("marketing", "unsubscribe")]
    (event,) = d.audit(EventKind.UNSUPPRESSED)
    assert (event["by"], event["note"], event["scope"]) == ("sam", "resubscribed", "marketing")
    left = await d.ask(proto.SuppressionList(address="ann@example.com"))
    assert [s.scope for s in left.suppressions] == ["digest"]


async def test_remove_of_nothing_removes_nothing(d: Deliverability) -> None:
    reply = await d.ask(proto.SuppressionRemove("nobody@example.com"))
    assert reply == r.SuppressionRemoveReply("nobody@example.com", [])
    assert d.audit(EventKind.UNSUPPRESSED) == []


# -- check -------------------------------------------------------------------------------------


async def test_check_says_what_a_hard_bounce_refuses_and_why(d: Deliverability) -> None:
    """Every configured category at normal and critical priority: the bounce refuses normal
    mail, naming the provider; critical mail may still try."""
    await d.book.add(suppression("bounce@simulator.test", note="550 no such user"))
    reply = await d.ask(proto.SuppressionCheck("Bounce@Simulator.test"))
    assert reply.address == "bounce@simulator.test"
    assert [s.reason for s in reply.suppressions] == ["hard_bounce"]
    verdicts = {(v.category, v.priority): v for v in reply.verdicts}
    assert set(verdicts) == {(c, p) for c in CATEGORIES for p in ("normal", "critical")}
    normal = verdicts["transactional", "normal"]
    assert normal.refused and normal.suppression == reply.suppressions[0].id
    assert normal.reason == (
        "suppressed after a hard bounce (every category) by resend: 550 no such user"
    )
    critical = verdicts["transactional", "critical"]
    assert not critical.refused and "critical mail may still try" in critical.reason


async def test_check_of_one_category_and_a_critical_try_used_today(d: Deliverability) -> None:
    """After critical mail's try of the day, critical is refused too, saying when it tried."""
    d.book.held.append(suppression("b@example.com", id=1, last_try_at=EPOCH - HOUR))
    reply = await d.ask(proto.SuppressionCheck("b@example.com", "marketing"))
    assert [(v.category, v.priority, v.refused) for v in reply.verdicts] == [
        ("marketing", "normal", True),
        ("marketing", "critical", True),
    ]
    assert "critical mail last tried it at" in reply.verdicts[1].reason


async def test_check_of_a_clean_address_and_of_another_category(d: Deliverability) -> None:
    await d.book.add(suppression("ann@example.com", Reason.UNSUBSCRIBE, scope="marketing"))
    clean = await d.ask(proto.SuppressionCheck("new@example.com", "transactional"))
    assert clean.suppressions == []
    assert {v.reason for v in clean.verdicts} == {"no suppression of this address"}
    other = await d.ask(proto.SuppressionCheck("ann@example.com", "transactional"))
    assert not any(v.refused for v in other.verdicts)
    assert other.verdicts[0].reason == "its suppressions are of other categories than transactional"
    unsubscribed = await d.ask(proto.SuppressionCheck("ann@example.com", "marketing"))
    assert all(v.refused for v in unsubscribed.verdicts)
    assert unsubscribed.verdicts[0].reason.startswith("unsubscribed (marketing) by resend")


async def test_check_of_an_unknown_category_lists_the_known_ones(d: Deliverability) -> None:
    refused = await d.refused(proto.SuppressionCheck("a@example.com", "promos"))
    assert refused.code == ErrorCode.BAD_ARGS
    assert (
        "'promos'" in refused.message
        and "transactional, marketing, invites, digest" in refused.message
    )


async def test_check_with_the_daemons_own_book() -> None:
    """The book the daemon runs fits the handlers: a complaint refuses marketing, spares
    transactional mail, and is gone once removed."""
    wall = Wall()
    store = MemoryStore(wall)
    book = await SuppressionBook.load(store, SuppressionRules(), wall())
    table = h.deliverability_table(
        reads=store, book=book, guard=FakeGuard(), categories=categories, wall=wall
    )
    await ask(table, proto.SuppressionAdd("c@example.com", "ticket 12", by="sam"))
    await book.add(suppression("c@example.com", Reason.COMPLAINT))
    reply = await ask(table, proto.SuppressionCheck("c@example.com"))
    refused = {(v.category, v.priority): v.refused for v in reply.verdicts}
    assert refused["marketing", "normal"] and refused["transactional", "normal"]  # the manual one
    await ask(table, proto.SuppressionRemove("c@example.com", by="sam"))
    after = await ask(table, proto.SuppressionCheck("c@example.com"))
    assert after.suppressions == [] and not any(v.refused for v in after.verdicts)
    await book.add(suppression("c@example.com", Reason.COMPLAINT))
    spared = await ask(table, proto.SuppressionCheck("c@example.com", "transactional"))
    assert not spared.verdicts[0].refused
    assert spared.verdicts[0].reason == "a complaint spares transactional mail"


# -- the funnel and domains ----------------------------------------------------------------------


def test_funnel_rates_are_of_the_stage_before() -> None:
    """accepted of sent; delivered and bounced of accepted; complaints, opens, clicks of
    delivered; a rate with nothing to divide by is None."""
    events = {"delivered": 990, "hard_bounce": 6, "soft_bounce": 4, "complained": 4}
    events |= {"opened": 300, "clicked": 30, "unsubscribed": 2}
    view = h.funnel_view(FunnelRow("resend", "news.example.com", 1000, 1000, events))
    assert (view.delivered, view.hard_bounced, view.soft_bounced) == (990, 6, 4)
    assert view.accepted_rate == 1.0 and view.delivered_rate == 0.99
    assert view.bounce_rate == 0.01 and view.complaint_rate == pytest.approx(4 / 990)
    assert view.open_rate == pytest.approx(300 / 990) and view.click_rate == pytest.approx(30 / 990)
    empty = h.funnel_view(FunnelRow("mailgun", "x.org", 3, 0, {}))
    assert empty.accepted_rate == 0.0 and empty.delivered_rate is None
    assert empty.complaint_rate is None


async def mail(store: MemoryStore, domain: str, count: int) -> list[int]:
    """``count`` marketing emails from ``domain``, each delivered by resend."""
    new = [
        NewMessage("email", {"n": n}, category="marketing", recipient=f"u{n}@x.org", domain=domain)
        for n in range(count)
    ]
    await store.submit(new)
    claimed = await store.claim("email", count)
    await store.record(
        [settled(c, SettleKind.DELIVERED, provider_id=f"re_{c.id}") for c in claimed]
    )
    return [c.id for c in claimed]


def settled(c: Any, kind: SettleKind, **kw: Any) -> Settle:
    attempts = c.attempts + 1
    return Settle(c.id, c.target, kind, "resend", attempts, EPOCH, created_at=c.created_at, **kw)


async def events(store: MemoryStore, at: float, *typed: tuple[int, EventType]) -> None:
    """Provider events on messages, matched and committed as the ingest does."""
    found = [
        ProviderEvent("resend", f"ev_{n}", t, at, Channel.EMAIL, f"re_{message_id}")
        for n, (message_id, t) in enumerate(typed)
    ]
    matched = await store.match_events(found, soft_since=0.0)
    await store.commit_events([EventRecord(m) for m in matched])


async def test_the_funnel_counts_events_per_provider_and_domain(d: Deliverability) -> None:
    """Messages and their events since the window's start, per provider and domain; the
    domain filter and the 24-hour default."""
    old = await mail(d.store, "news.example.com", 2)  # before the window
    d.wall.advance(2 * DAY)
    news = await mail(d.store, "news.example.com", 4)
    shop = await mail(d.store, "shop.example.com", 1)
    await events(
        d.store,
        d.wall(),
        *[(m, EventType.DELIVERED) for m in news],
        (news[0], EventType.COMPLAINED),
        (news[1], EventType.OPENED),
        (shop[0], EventType.HARD_BOUNCE),
        (old[0], EventType.OPENED),
    )
    reply = await d.ask(proto.DeliverabilityReport())
    assert reply.since == d.wall() - DAY
    rows = {f.domain: f for f in reply.funnel}
    assert set(rows) == {"news.example.com", "shop.example.com"}
    assert (rows["news.example.com"].sent, rows["news.example.com"].delivered) == (4, 4)
    assert rows["news.example.com"].complaint_rate == 0.25 and rows["news.example.com"].opened == 1
    assert rows["shop.example.com"].bounce_rate == 1.0
    only = await d.ask(proto.DeliverabilityReport(domain="SHOP.example.com"))
    assert [f.domain for f in only.funnel] == ["shop.example.com"]
    everything = await d.ask(proto.DeliverabilityReport(since=EPOCH))
    assert {f.domain: f.sent for f in everything.funnel}["news.example.com"] == 6


async def test_domains_show_the_guards_standing_and_what_is_held(d: Deliverability) -> None:
    """Each domain's standing, with the mail held under its pause; held mail of a domain
    the guard does not know is shown as paused; the domain filter applies."""
    d.guard.standings = [
        DomainStanding("news.example.com", 1000, 4, 0, 0.004, 0.0, "paused", EPOCH - HOUR),
        DomainStanding("shop.example.com", 500, 0, 1, 0.0, 0.002, "ok"),
    ]
    await d.store.submit([NewMessage("email", {"n": n}, domain="x") for n in range(3)])
    claimed = await d.store.claim("email", 3)
    keys = [hold_key("news.example.com")] * 2 + [hold_key("old.example.com")]
    await d.store.record(
        [settled(c, SettleKind.HELD, held=k) for c, k in zip(claimed, keys, strict=True)]
    )
    reply = await d.ask(proto.DeliverabilityReport())
    held = {v.domain: (v.state, v.held) for v in reply.domains}
    assert held == {
        "news.example.com": ("paused", 2),
        "old.example.com": ("paused", 1),
        "shop.example.com": ("ok", 0),
    }
    only = await d.ask(proto.DeliverabilityReport(domain="news.example.com"))
    assert [v.domain for v in only.domains] == ["news.example.com"]
    assert wire(only)["domains"][0]["complaint_rate"] == 0.004


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (proto.DeliverabilityReport(domain="not a domain"), "not a domain name"),
        (proto.DeliverabilityReport(domain="a@b.org"), "not a domain name"),
        (proto.DeliverabilityReport(since=EPOCH + DAY), "must not be in the future"),
        (proto.DeliverabilityResume(""), "not a domain name"),
    ],
)
async def test_bad_domains_and_times_are_bad_args(
    d: Deliverability, request_: Any, said: str
) -> None:
    refused = await d.refused(request_)
    assert refused.code == ErrorCode.BAD_ARGS and said in refused.message


async def test_resume_hands_the_domain_and_who_to_the_guard(d: Deliverability) -> None:
    """The guard resumes the normalised domain in the operator's name; the reply says how many
    held messages were released, and whether it was paused at all."""
    d.guard.standings = [DomainStanding("news.example.com", 1, 0, 0, 0.0, 0.0, "paused", EPOCH)]
    d.guard.releases = 12
    reply = await d.ask(proto.DeliverabilityResume(" News.Example.com.", "sam"))
    assert reply == r.DomainResumeReply("news.example.com", True, 12)
    assert d.guard.resumed == [("news.example.com", "sam")]
    d.guard.releases = 0
    idle = await d.ask(proto.DeliverabilityResume("shop.example.com"))
    assert idle == r.DomainResumeReply("shop.example.com", False, 0)
