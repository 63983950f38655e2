"""Growth events: the four kinds parsed from JSON, refused naming the field, personal kept out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbearer.growth._events import (
    Channel,
    InviteAccepted,
    InviteSent,
    Role,
    Signup,
    VendorBooked,
    event_json,
    parse_event,
    personal_fields,
)

# 2024-03-31T23:30:00Z
AT = dt.datetime(2024, 3, 31, 23, 30, tzinfo=dt.UTC).timestamp()

SIGNUP = {
    "event": "signup",
    "user": "u_ann",
    "at": "2024-03-31T23:30:00Z",
    "role": "couple",
    "email": "Ann.Canary@Example.com",
    "wedding_date": "2025-06-14",
}
INVITE = {
    "event": "invite_sent",
    "invite": "i_1",
    "inviter": "u_ann",
    "invitee": "Dee.Canary@Example.com",
    "channel": "email",
    "at": AT,
}
ACCEPTED = {"event": "invite_accepted", "invite": "i_1", "user": "u_dee", "at": int(AT)}
BOOKED = {
    "event": "vendor_booked",
    "couple": "u_ann",
    "vendor_email": "Hello@Bloom.example",
    "vendor_name": " Bloom Canary Flowers ",
    "vendor_type": " Florist",
    "at": "2024-04-01T00:30:00+01:00",
}


def test_each_kind_parses_to_its_value() -> None:
    """Every field lands typed: times as Unix seconds, enums, the date, labels lower-cased."""
    assert parse_event(SIGNUP) == Signup(
        "u_ann", AT, Role.COUPLE, "Ann.Canary@Example.com", None, dt.date(2025, 6, 14)
    )
    assert parse_event(INVITE) == InviteSent(
        "i_1", "u_ann", "Dee.Canary@Example.com", Channel.EMAIL, AT
    )
    assert parse_event(ACCEPTED) == InviteAccepted("i_1", "u_dee", AT)
    assert parse_event(BOOKED) == VendorBooked(
        "u_ann", "Hello@Bloom.example", "Bloom Canary Flowers", "florist", AT
    )


def test_a_vendor_signup_and_a_phone_invitee() -> None:
    vendor = {"event": "signup", "user": "v", "at": 0, "role": "vendor", "vendor_type": "DJ"}
    assert parse_event(vendor) == Signup("v", 0.0, Role.VENDOR, vendor_type="dj")
    sms = dict(INVITE, invitee="+44 7700 900123", channel="sms")
    assert parse_event(sms) == InviteSent("i_1", "u_ann", "+44 7700 900123", Channel.SMS, AT)


@pytest.mark.parametrize(
    "at",
    [AT, int(AT), "2024-03-31T23:30:00Z", "2024-04-01T00:30:00+01:00", "2024-03-31T18:30-05:00"],
)
def test_at_is_unix_seconds_or_iso_8601_with_an_offset(at: object) -> None:
    assert parse_event(dict(ACCEPTED, at=at)).at == AT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event": "signed_up"}, "event: unknown kind"),
        ({"event": 3}, "event: unknown kind"),
        ({"event": None}, "event: missing"),
        ({"user": None}, "user: missing"),
        ({"user": 7}, "user: expected a string"),
        ({"user": ""}, "user: expected 1 to 128"),
        ({"user": "u" * 129}, "user: expected 1 to 128"),
        ({"user": " u_ann"}, "user: an id has no surrounding spaces"),
        ({"at": True}, "at: expected Unix seconds or ISO 8601"),
        ({"at": [1]}, "at: expected Unix seconds or ISO 8601"),
        ({"at": -1}, "at: expected a time from 1970 to 9999"),
        ({"at": float("nan")}, "at: expected a time from 1970 to 9999"),
        ({"at": "2024-03-31T23:30:00"}, "at: an ISO 8601 time needs its offset"),
        ({"at": "2024-03-31"}, "at: an ISO 8601 time needs its offset"),
        ({"at": "31/03/2024"}, "at: expected ISO 8601"),
        ({"role": "guest"}, "role: one of couple, vendor"),
        ({"email": "ann"}, "email: expected an email address"),
        ({"email": "a@" + "b" * 320}, "email: expected 1 to 320"),
        ({"wedding_date": "2025-6-14"}, "wedding_date: expected a date, YYYY-MM-DD"),
        ({"wedding_date": "2025-02-30"}, "wedding_date: expected a date, YYYY-MM-DD"),
        ({"wedding_date": 20250614}, "wedding_date: expected a date, YYYY-MM-DD"),
        ({"vendor_type": "x" * 65}, "vendor_type: expected 1 to 64"),
        ({"referrer": "u_ben"}, "signup: unknown field(s) 'referrer'"),
    ],
)
def test_a_bad_signup_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_event({**SIGNUP, **change})


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([INVITE], "a growth event is a JSON object"),
        (dict(INVITE, channel="post"), "channel: one of email, sms, link"),
        (dict(INVITE, invitee="not a person"), "invitee: expected an email address or a phone"),
        ({k: v for k, v in INVITE.items() if k != "inviter"}, "inviter: missing"),
        ({k: v for k, v in ACCEPTED.items() if k != "at"}, "at: missing"),
        (dict(BOOKED, vendor_name="n" * 201), "vendor_name: expected 1 to 200"),
        (dict(BOOKED, vendor_type=None), "vendor_type: missing"),
    ],
)
def test_other_kinds_are_refused_naming_the_field(obj: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        parse_event(obj)


def test_no_personal_value_shows_in_a_repr_or_an_error() -> None:
    events = [parse_event(SIGNUP), parse_event(INVITE), parse_event(BOOKED)]
    assert not any("Canary" in repr(event) for event in events)
    assert "u_ann" in repr(events[0])  # ids do show: they are opaque
    for field, bad in [("invitee", "Canary Dee"), ("vendor_email", "Canary@")]:
        with pytest.raises(ValueError) as refused:
            parse_event(dict(INVITE if field == "invitee" else BOOKED, **{field: bad}))
        assert "Canary" not in str(refused.value)


def test_personal_fields_name_the_person_they_are_about() -> None:
    """The vendor's name is about the vendor, named by their normalised address."""
    booked = personal_fields(parse_event(BOOKED))
    assert [(f.name, f.value, f.about) for f in booked] == [
        ("vendor_email", "Hello@Bloom.example", "hello@bloom.example"),
        ("vendor_name", "Bloom Canary Flowers", "hello@bloom.example"),
    ]
    invite = personal_fields(parse_event(dict(INVITE, invitee="+447700900123")))
    assert [(f.name, f.about) for f in invite] == [("invitee", "+447700900123")]
    assert [f.name for f in personal_fields(parse_event(SIGNUP))] == ["email"]
    assert personal_fields(parse_event({**SIGNUP, "email": None})) == ()
    assert personal_fields(parse_event(ACCEPTED)) == ()
    assert "Canary" not in repr(booked)


_ids = st.text(alphabet="abcxyz_019", min_size=1, max_size=12)
_times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_events = st.one_of(
    st.builds(
        Signup,
        user=_ids,
        at=_times,
        role=st.sampled_from(Role),
        email=st.none() | st.emails(),
        vendor_type=st.none() | st.sampled_from(["dj", "florist"]),
        wedding_date=st.none() | st.dates(dt.date(1900, 1, 1), dt.date(2999, 12, 31)),
    ),
    st.builds(
        InviteSent,
        _ids,
        _ids,
        st.sampled_from(["a@b.c", "+4477009"]),
        st.sampled_from(Channel),
        _times,
    ),
    st.builds(InviteAccepted, _ids, _ids, _times),
    st.builds(
        VendorBooked, _ids, st.just("v@x.example"), st.just("Bloom"), st.just("florist"), _times
    ),
)


@settings(max_examples=200, deadline=None)
@given(event=_events)
def test_event_json_reads_back_to_the_same_event(event: Any) -> None:
    assert parse_event(event_json(event)) == event
