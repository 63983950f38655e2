"""Viral coefficient by cohort: hand-computed figures, any order of arrival, vendor network."""

from __future__ import annotations

import datetime as dt
import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbearer.growth._cohorts import (
    By,
    CohortRow,
    Growth,
    InviteStory,
    Unmatched,
    _Median,
)
from ringbearer.growth._events import (
    Channel,
    GrowthEvent,
    InviteAccepted,
    InviteSent,
    Role,
    Signup,
    VendorBooked,
    parse_event,
)

LONDON = ZoneInfo("Europe/London")
PARIS = ZoneInfo("Europe/Paris")
DAY = 86400.0


def ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def signup(user: str, at: str, role: str = "couple", **more: str) -> dict[str, Any]:
    return {"event": "signup", "user": user, "at": at, "role": role, **more}


def invite(iid: str, inviter: str, invitee: str, at: str, channel: str = "email") -> dict[str, Any]:
    return {
        "event": "invite_sent",
        "invite": iid,
        "inviter": inviter,
        "invitee": invitee,
        "channel": channel,
        "at": at,
    }


def accept(iid: str, user: str, at: str) -> dict[str, Any]:
    return {"event": "invite_accepted", "invite": iid, "user": user, "at": at}


def book(couple: str, email: str, name: str, kind: str = "florist") -> dict[str, Any]:
    return {
        "event": "vendor_booked",
        "couple": couple,
        "vendor_email": email,
        "vendor_name": name,
        "vendor_type": kind,
        "at": "2024-05-01T12:00:00Z",
    }


# Summer time starts in London on 31 March 2024 at 01:00 UTC: ann's sign-up at
# 23:30 UTC is 00:30 on 1 April there (April); ben's at 22:30 UTC is 23:30 on
# 31 March (March). In Paris both are already April.
FIXTURE = [
    signup("ann", "2024-03-31T23:30:00Z", wedding_date="2025-06-14"),
    signup("ben", "2024-03-31T22:30:00Z", wedding_date="2025-07-05"),
    signup("cat", "2024-04-10T12:00:00Z", "vendor", vendor_type="photographer"),
    # ann invites dee twice (the address in two cases): one pair, the first send's time.
    # dee accepts the second invite 31 days after the first send, 29 after the second: outside.
    invite("i1", "ann", "Dee@Example.com", "2024-04-01T10:00:00Z"),
    invite("i2", "ann", "dee@example.com", "2024-04-03T10:00:00Z", "link"),
    accept("i2", "dee", "2024-05-02T10:00:00Z"),
    # Accepted exactly 30 days after the send (inside), and 30 days and 1 s after (outside).
    invite("i3", "ann", "+447700900001", "2024-04-02T00:00:00Z", "sms"),
    accept("i3", "eve", "2024-05-02T00:00:00Z"),
    invite("i4", "ann", "+447700900002", "2024-04-02T00:00:00Z", "sms"),
    accept("i4", "flo", "2024-05-02T00:00:01Z"),
    invite("i5", "ben", "fay@example.com", "2024-04-05T00:00:00Z"),
    invite("i5", "ben", "fay@example.com", "2024-04-05T00:00:00Z"),  # a replay: no change
    accept("i5", "fay", "2024-04-06T00:00:00Z"),
    invite("i6", "ben", "gus@example.com", "2024-04-05T00:00:00Z"),
    invite("i7", "cat", "hal@example.com", "2024-04-11T12:00:00Z"),
    accept("i7", "hal", "2024-04-13T00:00:00Z"),
    invite("i9", "cat", "kim@example.com", "2024-04-12T00:00:00Z"),
    accept("i99", "ivy", "2024-04-20T00:00:00Z"),  # no such invite
    invite("i8", "zed", "jo@example.com", "2024-04-21T00:00:00Z"),  # zed never signed up
]

# Days from the inviter's sign-up to the acceptance, by hand:
ANN_CYCLE = 31 + 1 / 48  # 31 March 23:30 -> 2 May 00:00 (UTC)
BEN_CYCLE = 5 + 1.5 / 24  # 31 March 22:30 -> 6 April 00:00
CAT_CYCLE = 2.5  # 10 April 12:00 -> 13 April 00:00


def row(
    cohort: str | None, users: int, invites: int, accepted: int, cycle: float | None
) -> CohortRow:
    return CohortRow(
        cohort=cohort,
        users=users,
        invites=invites,
        accepted=accepted,
        invites_per_user=invites / users,
        conversion=accepted / invites if invites else None,
        k=accepted / users,
        cycle_days_median=cycle,
        small=users < 2,  # the reports below use min_cohort=2
    )


EXPECTED = {
    By.SIGNUP_MONTH: [
        row("2024-03", 1, 2, 1, BEN_CYCLE),
        row("2024-04", 2, 5, 2, (ANN_CYCLE + CAT_CYCLE) / 2),
    ],
    By.WEDDING_MONTH: [
        row("2025-06", 1, 3, 1, ANN_CYCLE),
        row("2025-07", 1, 2, 1, BEN_CYCLE),
        row(None, 1, 2, 1, CAT_CYCLE),
    ],
    By.ROLE: [
        row("couple", 2, 5, 2, (ANN_CYCLE + BEN_CYCLE) / 2),
        row("vendor", 1, 2, 1, CAT_CYCLE),
    ],
    By.VENDOR_TYPE: [
        row("photographer", 1, 2, 1, CAT_CYCLE),
        row(None, 2, 5, 2, (ANN_CYCLE + BEN_CYCLE) / 2),
    ],
}


def model(objs: Iterable[dict[str, Any]], zone: ZoneInfo = LONDON, **kw: Any) -> Growth:
    growth = Growth(zone, **kw)
    for obj in objs:
        growth.apply(parse_event(obj))
    return growth


def everything(growth: Growth, users: Sequence[str] = ()) -> tuple[object, ...]:
    reports = tuple(tuple(growth.report(by, min_cohort=2)) for by in By)
    stories = tuple(growth.explain(user) for user in users)
    return reports, growth.unmatched(), stories


def rounded(rows: Iterable[CohortRow]) -> list[CohortRow]:
    """Rows with every ratio rounded to 9 places: a hand-written 31 + 1/48 is not bit-exact."""
    return [
        attrs.evolve(
            r,
            invites_per_user=round(r.invites_per_user, 9),
            conversion=None if r.conversion is None else round(r.conversion, 9),
            k=round(r.k, 9),
            cycle_days_median=None
            if r.cycle_days_median is None
            else round(r.cycle_days_median, 9),
        )
        for r in rows
    ]


@pytest.mark.parametrize("by", list(By))
def test_every_figure_matches_the_hand_computed_fixture(by: By) -> None:
    assert rounded(model(FIXTURE).report(by, min_cohort=2)) == rounded(EXPECTED[by])


def test_one_cohort_written_out_by_hand() -> None:
    """The 2024-04 sign-up cohort in London, every figure written out."""
    april = model(FIXTURE).report("signup_month", min_cohort=2)[1]
    assert (april.cohort, april.users, april.invites, april.accepted) == ("2024-04", 2, 5, 2)
    assert (april.invites_per_user, april.conversion, april.k) == (2.5, 0.4, 1.0)
    assert april.cycle_days_median == pytest.approx(16.7604166667)  # (31.0208 + 2.5) / 2
    assert april.small is False


def test_the_time_zone_decides_the_sign_up_month() -> None:
    """In Paris, 22:30 UTC on 31 March is already April: one cohort of three."""
    paris = model(FIXTURE, PARIS).report(By.SIGNUP_MONTH, min_cohort=2)
    assert [(r.cohort, r.users, r.invites, r.accepted) for r in paris] == [("2024-04", 3, 7, 3)]


def test_the_window_is_fixed_by_the_model() -> None:
    """With a 31-day window, flo's acceptance 30 days and 1 s after the send counts."""
    wide = model(FIXTURE, window_days=31).report(By.WEDDING_MONTH, min_cohort=2)
    june = wide[0]
    # dee's acceptance is 31 days after the first send: inside too.
    assert (june.cohort, june.invites, june.accepted) == ("2025-06", 3, 3)
    # eve's 31 d 30 min, flo's a second more, dee's 31 d 10 h 30 min: the median is flo's.
    assert june.cycle_days_median == pytest.approx(ANN_CYCLE + 1 / DAY, abs=1e-9)
    assert Growth(LONDON, window_days=31).window_days == 31
    with pytest.raises(ValueError, match="window_days"):
        Growth(LONDON, window_days=0)


def test_a_cohort_under_min_cohort_users_is_small() -> None:
    signups = [signup(f"u{n}", "2024-04-10T12:00:00Z") for n in range(20)]
    signups.append(signup("late", "2024-05-10T12:00:00Z"))
    growth = model(signups)
    april, may = growth.report(By.SIGNUP_MONTH)  # min_cohort defaults to 20
    assert (april.users, april.small) == (20, False)
    assert (may.users, may.small) == (1, True)
    assert [r.small for r in growth.report(By.SIGNUP_MONTH, min_cohort=21)] == [True, True]
    assert (april.invites, april.conversion, april.k, april.cycle_days_median) == (0, None, 0, None)


def test_an_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="by: one of signup_month, wedding_month"):
        Growth(LONDON).report("season")


def test_unmatched_lists_what_references_the_unknown_until_it_arrives() -> None:
    growth = model(FIXTURE)
    assert growth.unmatched() == Unmatched(acceptances=("i99",), invites=("i8",), couples=())
    before = growth.report(By.ROLE, min_cohort=2)
    growth.apply(parse_event(signup("zed", "2024-04-01T12:00:00Z", "vendor")))
    growth.apply(parse_event(invite("i99", "ann", "ivy@example.com", "2024-04-19T00:00:00Z")))
    assert growth.unmatched() == Unmatched((), (), ())
    after = growth.report(By.ROLE, min_cohort=2)
    assert (after[0].invites, after[0].accepted) == (before[0].invites + 1, before[0].accepted + 1)
    assert (after[1].users, after[1].invites, after[1].accepted) == (2, 3, 1)


def test_a_booking_by_an_unknown_couple_is_unmatched_until_they_sign_up() -> None:
    growth = model([book("zoe", "a@flowers.example", "Alder")])
    assert growth.unmatched().couples == ("zoe",)
    growth.apply(parse_event(signup("zoe", "2024-04-01T12:00:00Z")))
    assert growth.unmatched().couples == ()


def test_an_acceptance_before_its_invite_counts_once_the_invite_arrives() -> None:
    growth = model(
        [signup("ann", "2024-04-01T00:00:00Z"), accept("i1", "dee", "2024-04-11T00:00:00Z")]
    )
    assert growth.unmatched().acceptances == ("i1",)
    assert growth.report(By.ROLE)[0].accepted == 0
    growth.apply(parse_event(invite("i1", "ann", "dee@example.com", "2024-04-06T00:00:00Z")))
    (couples,) = growth.report(By.ROLE)
    assert (couples.invites, couples.accepted, couples.cycle_days_median) == (1, 1, 10.0)
    assert growth.unmatched() == Unmatched((), (), ())


def test_an_invite_before_its_inviters_sign_up_counts_once_they_sign_up() -> None:
    growth = model([invite("i1", "ann", "dee@example.com", "2024-04-06T00:00:00Z")])
    assert growth.report(By.ROLE) == []
    assert growth.unmatched().invites == ("i1",)
    growth.apply(parse_event(signup("ann", "2024-04-01T00:00:00Z")))
    (couples,) = growth.report(By.ROLE)
    assert (couples.users, couples.invites, couples.accepted) == (1, 1, 0)


def test_the_first_send_starts_the_window_even_when_it_arrives_last() -> None:
    """dee accepts 20 days after the second send: inside, until the first send (41 days) arrives."""
    growth = model(
        [
            signup("ann", "2024-04-01T00:00:00Z"),
            invite("i2", "ann", "dee@example.com", "2024-05-01T00:00:00Z"),
            accept("i2", "dee", "2024-05-21T00:00:00Z"),
        ]
    )
    assert [(r.invites, r.accepted) for r in growth.report(By.ROLE)] == [(1, 1)]
    growth.apply(parse_event(invite("i1", "ann", "DEE@example.com", "2024-04-10T00:00:00Z")))
    assert [(r.invites, r.accepted, r.cycle_days_median) for r in growth.report(By.ROLE)] == [
        (1, 0, None)
    ]


def test_two_accepted_invites_of_one_pair_count_once_at_the_earliest_acceptance() -> None:
    events = [
        signup("ann", "2024-04-01T00:00:00Z"),
        invite("i1", "ann", "dee@example.com", "2024-04-02T00:00:00Z"),
        invite("i2", "ann", "dee@example.com", "2024-04-03T00:00:00Z"),
        accept("i1", "dee", "2024-04-04T00:00:00Z"),
        accept("i2", "dee2", "2024-04-05T00:00:00Z"),
    ]
    for order in (events, events[::-1]):
        (couples,) = model(order).report(By.ROLE)
        assert (couples.invites, couples.accepted, couples.cycle_days_median) == (1, 1, 3.0)


def test_an_earlier_sign_up_of_the_same_user_moves_them_and_their_invites() -> None:
    """Of two sign-ups of one user, the earlier holds, whichever came first."""
    events = [
        signup("ann", "2024-05-02T00:00:00Z", wedding_date="2025-06-14"),
        invite("i1", "ann", "dee@example.com", "2024-05-03T00:00:00Z"),
        accept("i1", "dee", "2024-05-04T00:00:00Z"),
        signup("ann", "2024-04-30T00:00:00Z", wedding_date="2025-09-01"),
    ]
    growth = model(events)
    assert [
        (r.cohort, r.users, r.invites, r.accepted, r.cycle_days_median)
        for r in growth.report(By.SIGNUP_MONTH)
    ] == [("2024-04", 1, 1, 1, 4.0)]
    assert [r.cohort for r in growth.report(By.WEDDING_MONTH)] == ["2025-09"]
    assert everything(model(reversed(events)), ["ann"]) == everything(growth, ["ann"])


def test_out_of_order_arrival_equals_in_order() -> None:
    in_order = everything(model(FIXTURE), ["ann", "ben", "dee", "zed"])
    backwards = everything(model(reversed(FIXTURE)), ["ann", "ben", "dee", "zed"])
    shuffled = FIXTURE[:]
    random.Random(14).shuffle(shuffled)
    assert backwards == in_order
    assert everything(model(shuffled), ["ann", "ben", "dee", "zed"]) == in_order


def test_explain_tells_what_the_model_knows_of_a_user() -> None:
    growth = model(FIXTURE)
    ann = growth.explain("ann")
    assert ann.signed_up_at == ts("2024-03-31T23:30:00Z")
    assert ann.cohorts == {
        "signup_month": "2024-04",
        "wedding_month": "2025-06",
        "role": "couple",
        "vendor_type": None,
    }
    assert ann.invites == (
        InviteStory("i1", ts("2024-04-01T10:00:00Z"), Channel.EMAIL, True, None, False),
        InviteStory(
            "i3", ts("2024-04-02T00:00:00Z"), Channel.SMS, True, ts("2024-05-02T00:00:00Z"), True
        ),
        InviteStory(
            "i4", ts("2024-04-02T00:00:00Z"), Channel.SMS, True, ts("2024-05-02T00:00:01Z"), False
        ),
        InviteStory(
            "i2", ts("2024-04-03T10:00:00Z"), Channel.LINK, False, ts("2024-05-02T10:00:00Z"), False
        ),
    )
    assert (ann.invitees, ann.accepted, ann.joined_through, ann.vendors_booked) == (3, 1, (), 0)
    assert growth.explain("dee").joined_through == ("i2",)
    zed = growth.explain("zed")  # never signed up: its invite is known, not counted
    assert (zed.signed_up_at, zed.cohorts, zed.invitees, len(zed.invites)) == (None, {}, 0, 1)
    assert "Example" not in repr(ann) and "dee@" not in repr(ann)


def test_partners_are_the_vendors_booked_by_the_same_couples() -> None:
    """Counts are couples, each once; ties by name; addresses compared lower-cased."""
    growth = model(
        [
            book("c1", "v1@x.example", "Cake One"),
            book("c1", "v2@x.example", "Bloom"),
            book("c1", "v3@x.example", "Alder"),
            book("c1", "V2@X.example", "Bloom"),  # the same booking again
            book("c2", "v1@x.example", "Cake One"),
            book("c2", "v2@x.example", "Bloom"),
            book("c3", "V1@x.example", "Cake One"),
            book("c3", "v3@x.example", "Alder"),
            book("c3", "v4@x.example", "Dune DJ", "dj"),
            book("c4", "v2@x.example", "Bloom"),
        ]
    )
    partners = growth.partners("V1@x.example")
    assert [(p.vendor, p.name, p.couples) for p in partners] == [
        ("v3@x.example", "Alder", 2),
        ("v2@x.example", "Bloom", 2),
        ("v4@x.example", "Dune DJ", 1),
    ]
    assert [(p.vendor, p.couples) for p in growth.partners("v2@x.example")] == [
        ("v1@x.example", 2),
        ("v3@x.example", 1),
    ]
    assert growth.partners("nobody@x.example") == []
    assert "x.example" not in repr(partners[0])
    assert growth.explain("c1").vendors_booked == 3


# --- properties -------------------------------------------------------------------------------

BASE = ts("2024-03-25T00:00:00Z")
_users = st.sampled_from(["u0", "u1", "u2"])
_invites = st.sampled_from(["i0", "i1", "i2", "i3", "i4", "i5"])
_at = st.integers(min_value=0, max_value=100).map(lambda half_days: BASE + half_days * DAY / 2)
_events = st.one_of(
    st.builds(
        Signup,
        user=_users,
        at=_at,
        role=st.sampled_from(Role),
        vendor_type=st.sampled_from([None, "dj", "florist"]),
        wedding_date=st.sampled_from([None, dt.date(2025, 6, 1), dt.date(2025, 7, 1)]),
    ),
    st.builds(
        InviteSent,
        invite=_invites,
        inviter=_users,
        invitee=st.sampled_from(["a@x.io", "A@X.io", "+4477001"]),
        channel=st.sampled_from(Channel),
        at=_at,
    ),
    st.builds(InviteAccepted, invite=_invites, user=st.sampled_from(["n0", "n1"]), at=_at),
    st.builds(
        VendorBooked,
        couple=_users,
        vendor_email=st.sampled_from(["v0@x.io", "V0@x.io", "v1@x.io", "v2@x.io"]),
        vendor_name=st.sampled_from(["Alder", "Bloom"]),
        vendor_type=st.just("florist"),
        at=_at,
    ),
)


def applied(events: Iterable[GrowthEvent]) -> Growth:
    growth = Growth(LONDON, window_days=10)
    for event in events:
        growth.apply(event)
    return growth


def full_state(growth: Growth) -> tuple[object, ...]:
    vendors = ["v0@x.io", "v1@x.io", "v2@x.io"]
    partners = tuple(tuple(growth.partners(v)) for v in vendors)
    return (*everything(growth, ["u0", "u1", "u2", "u3", "n0", "n1"]), partners)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), events=st.lists(_events, max_size=40))
def test_any_order_of_the_same_events_gives_the_same_model(
    data: st.DataObject, events: list[GrowthEvent]
) -> None:
    shuffled = data.draw(st.permutations(events))
    assert full_state(applied(shuffled)) == full_state(applied(events))


def oracle(events: Sequence[GrowthEvent], by: By, window: float) -> list[CohortRow]:
    """Item 5's definitions computed from scratch over the whole list (no increments)."""
    signups, pairs, accepts = _facts(events)
    users: dict[str | None, int] = defaultdict(int)
    for s in signups.values():
        users[_key(s, by)] += 1
    invites: dict[str | None, int] = defaultdict(int)
    cycles: dict[str | None, list[float]] = defaultdict(list)
    for (inviter, _), group in pairs.items():
        if inviter not in signups:
            continue
        key = _key(signups[inviter], by)
        invites[key] += 1
        first = min(send.at for send in group)
        taken = [accepts[send.invite].at for send in group if send.invite in accepts]
        if taken and min(taken) - first <= window:
            cycles[key].append((min(taken) - signups[inviter].at) / DAY)
    rows = [
        CohortRow(
            key,
            n,
            invites[key],
            len(cycles[key]),
            invites[key] / n,
            len(cycles[key]) / invites[key] if invites[key] else None,
            len(cycles[key]) / n,
            statistics.median(cycles[key]) if cycles[key] else None,
            n < 2,
        )
        for key, n in users.items()
    ]
    return sorted(rows, key=lambda r: (r.cohort is None, r.cohort or ""))


def _facts(
    events: Sequence[GrowthEvent],
) -> tuple[dict[str, Signup], dict[tuple[str, str], list[InviteSent]], dict[str, InviteAccepted]]:
    """Of repeated sign-ups, sends of one id, acceptances of one invite: the earliest."""
    signups: dict[str, Signup] = {}
    sends: dict[str, InviteSent] = {}
    accepts: dict[str, InviteAccepted] = {}
    for e in events:
        if isinstance(e, Signup) and (e.user not in signups or _s(e) < _s(signups[e.user])):
            signups[e.user] = e
        elif isinstance(e, InviteSent) and (e.invite not in sends or _i(e) < _i(sends[e.invite])):
            sends[e.invite] = e
        elif isinstance(e, InviteAccepted) and (
            e.invite not in accepts
            or (e.at, e.user) < (accepts[e.invite].at, accepts[e.invite].user)
        ):
            accepts[e.invite] = e
    pairs: dict[tuple[str, str], list[InviteSent]] = defaultdict(list)
    for send in sends.values():
        invitee = send.invitee.lower() if "@" in send.invitee else send.invitee
        pairs[send.inviter, invitee].append(send)
    return signups, pairs, accepts


def _s(s: Signup) -> tuple[Any, ...]:
    return (s.at, s.role, s.email or "", s.vendor_type or "", s.wedding_date or dt.date.min)


def _i(i: InviteSent) -> tuple[Any, ...]:
    return (i.at, i.inviter, i.invitee, i.channel)


def _key(s: Signup, by: By) -> str | None:
    return {
        By.SIGNUP_MONTH: dt.datetime.fromtimestamp(s.at, LONDON).strftime("%Y-%m"),
        By.WEDDING_MONTH: s.wedding_date.strftime("%Y-%m") if s.wedding_date else None,
        By.ROLE: s.role.value,
        By.VENDOR_TYPE: s.vendor_type,
    }[by]


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_events, max_size=40))
def test_the_increments_equal_the_definitions_computed_from_scratch(
    events: list[GrowthEvent],
) -> None:
    growth = applied(events)
    for by in By:
        assert growth.report(by, min_cohort=2) == oracle(events, by, 10 * DAY)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=200))
def test_the_median_of_a_multiset_with_removals(ops: list[tuple[bool, int]]) -> None:
    """Two heaps with lazy removal agree with a sorted list, duplicates and all."""
    median, kept = _Median(), []
    for add, value in ops:
        if add or value not in kept:
            median.add(float(value))
            kept.append(float(value))
        else:
            median.remove(float(value))
            kept.remove(float(value))
        assert len(median) == len(kept)
        assert median.median() == (statistics.median(kept) if kept else None)
