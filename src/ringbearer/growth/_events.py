"""Growth events: the four kinds a producer records, parsed and checked from a JSON object.

    signup           user, at, role (couple|vendor), email?, vendor_type?, wedding_date?
    invite_sent      invite, inviter, invitee (an email or a phone), channel (email|sms|link), at
    invite_accepted  invite, user (the new user), at
    vendor_booked    couple, vendor_email, vendor_name, vendor_type, at

``at`` is Unix seconds or ISO 8601 with its offset, kept as Unix seconds;
``wedding_date`` is a calendar date, ``YYYY-MM-DD``. Users and invites are
opaque ids. The personal fields (``email``, ``invitee``, ``vendor_email``,
``vendor_name``) carry in their metadata (key :data:`PERSONAL`) the field that
names the person they are about, so the daemon can seal each under that
person's key and keep it by their subject id (:func:`personal_fields`). They
never show in a repr, and an error names the field, never its value.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from ringbearer.privacy import normalise_identity

PERSONAL = "ringbearer.growth.personal"  # field metadata: the field naming whom it is about
MAX_ID = 128  # users, invites: opaque ids
MAX_ADDRESS = 320  # an email address (RFC 5321's path limit) or a phone number
MAX_NAME = 200  # a vendor's name
MAX_LABEL = 64  # a vendor type
MAX_AT = 253402300799.0  # 9999-12-31T23:59:59Z: a later time is a producer's bug

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{3,31}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Role(enum.StrEnum):
    COUPLE = "couple"
    VENDOR = "vendor"


class Channel(enum.StrEnum):
    """How an invite went out; ``link`` is a link the inviter shared themselves."""

    EMAIL = "email"
    SMS = "sms"
    LINK = "link"


@attrs.frozen
class Signup:
    """A user joined, as a couple or a vendor."""

    KIND: ClassVar[str] = "signup"
    user: str
    at: float
    role: Role
    email: str | None = attrs.field(default=None, repr=False, metadata={PERSONAL: "email"})
    vendor_type: str | None = None  # trimmed, lower case
    wedding_date: dt.date | None = None


@attrs.frozen
class InviteSent:
    """A user invited someone, named by an email address or a phone number."""

    KIND: ClassVar[str] = "invite_sent"
    invite: str
    inviter: str
    invitee: str = attrs.field(repr=False, metadata={PERSONAL: "invitee"})
    channel: Channel
    at: float


@attrs.frozen
class InviteAccepted:
    """Someone joined through an invite, as ``user``."""

    KIND: ClassVar[str] = "invite_accepted"
    invite: str
    user: str
    at: float


@attrs.frozen
class VendorBooked:
    """A couple booked a vendor, who may or may not be on the platform."""

    KIND: ClassVar[str] = "vendor_booked"
    couple: str
    vendor_email: str = attrs.field(repr=False, metadata={PERSONAL: "vendor_email"})
    vendor_name: str = attrs.field(repr=False, metadata={PERSONAL: "vendor_email"})
    vendor_type: str  # trimmed, lower case
    at: float


GrowthEvent = Signup | InviteSent | InviteAccepted | VendorBooked


@attrs.frozen(repr=False)
class PersonalField:
    """One personal value of an event and the normalised identity of the person it is about."""

    name: str
    value: str
    about: str

    def __repr__(self) -> str:
        return f"PersonalField({self.name})"


def personal_fields(event: GrowthEvent) -> tuple[PersonalField, ...]:
    """The personal values ``event`` holds (absent optional ones left out)."""
    found = []
    for name, about in _personal_of(type(event)):
        value = getattr(event, name)
        if value is not None:
            found.append(PersonalField(name, value, normalise_identity(getattr(event, about))))
    return tuple(found)


def _personal_of(kind: type) -> tuple[tuple[str, str], ...]:
    """(field, the field naming whom it is about) of each personal field of a kind."""
    found = _PERSONAL_OF.get(kind)
    if found is None:
        found = _PERSONAL_OF[kind] = tuple(
            (field.name, field.metadata[PERSONAL])
            for field in attrs.fields(kind)
            if PERSONAL in field.metadata
        )
    return found


_PERSONAL_OF: dict[type, tuple[tuple[str, str], ...]] = {}


def event_json(event: GrowthEvent) -> dict[str, object]:
    """``event`` as the JSON object :func:`parse_event` reads back to an equal event."""
    match event:  # written out by kind: this runs once for every event kept
        case Signup():
            out: dict[str, object] = {
                "event": event.KIND, "user": event.user, "at": event.at, "role": event.role.value,
            }  # fmt: skip
            if event.email is not None:
                out["email"] = event.email
            if event.vendor_type is not None:
                out["vendor_type"] = event.vendor_type
            if event.wedding_date is not None:
                out["wedding_date"] = event.wedding_date.isoformat()
            return out
        case InviteSent():
            return {
                "event": event.KIND, "invite": event.invite, "inviter": event.inviter,
                "invitee": event.invitee, "channel": event.channel.value, "at": event.at,
            }  # fmt: skip
        case InviteAccepted():
            return {"event": event.KIND, "invite": event.invite, "user": event.user, "at": event.at}
        case VendorBooked():
            return {
                "event": event.KIND, "couple": event.couple, "vendor_email": event.vendor_email,
                "vendor_name": event.vendor_name, "vendor_type": event.vendor_type, "at": event.at,
            }  # fmt: skip
    raise TypeError(type(event).__name__)


def parse_event(obj: object) -> GrowthEvent:
    """The growth event in a decoded JSON object; ValueError naming the field at fault."""
    if not isinstance(obj, Mapping):
        raise ValueError("a growth event is a JSON object")
    kind = obj.get("event")
    if kind is None:
        raise ValueError("event: missing")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"event: unknown kind; one of {', '.join(_KINDS)}")
    cls, spec = _KINDS[kind]
    extra = obj.keys() - spec.keys() - {"event"}
    if extra:
        unknown = sorted(str(key)[:40] for key in extra)
        raise ValueError(f"{kind}: unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    values = {}
    for name, (parse, required) in spec.items():
        value = obj.get(name)
        if value is not None:
            values[name] = parse(name, value)
        elif required:
            raise ValueError(f"{name}: missing")
    event: GrowthEvent = cls(**values)
    return event


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string")
    value = value.strip()
    if not value or len(value) > limit:
        raise ValueError(f"{name}: expected 1 to {limit} characters")
    return value


def _id(name: str, value: object) -> str:
    if isinstance(value, str) and value != value.strip():
        raise ValueError(f"{name}: an id has no surrounding spaces")
    return _text(name, value, MAX_ID)


def _email(name: str, value: object) -> str:
    text = _text(name, value, MAX_ADDRESS)
    if not _EMAIL.fullmatch(text):
        raise ValueError(f"{name}: expected an email address")
    return text


def _email_or_phone(name: str, value: object) -> str:
    text = _text(name, value, MAX_ADDRESS)
    if not (_EMAIL.fullmatch(text) or _PHONE.fullmatch(text)):
        raise ValueError(f"{name}: expected an email address or a phone number")
    return text


def _vendor_name(name: str, value: object) -> str:
    return _text(name, value, MAX_NAME)


def _label(name: str, value: object) -> str:
    return _text(name, value, MAX_LABEL).lower()


def _time(name: str, value: object) -> float:
    if isinstance(value, str):
        seconds = _iso_time(name, value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{name}: expected Unix seconds or ISO 8601 with an offset")
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_AT):
        raise ValueError(f"{name}: expected a time from 1970 to 9999")
    return seconds


def _iso_time(name: str, value: str) -> float:
    try:
        when = dt.datetime.fromisoformat(value) if len(value) <= 64 else None
    except ValueError:
        when = None
    if when is None:
        raise ValueError(f"{name}: expected ISO 8601, such as 2024-06-01T14:00:00+01:00")
    if when.utcoffset() is None:
        raise ValueError(f"{name}: an ISO 8601 time needs its offset (Z, +01:00)")
    return when.timestamp()


def _date(name: str, value: object) -> dt.date:
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name}: expected a date, YYYY-MM-DD")


def _choice(kind: type[enum.StrEnum]) -> Callable[[str, object], Any]:
    def parse(name: str, value: object) -> Any:
        if isinstance(value, str) and value in {member.value for member in kind}:
            return kind(value)
        raise ValueError(f"{name}: one of {', '.join(kind)}")

    return parse


_Spec = dict[str, tuple[Callable[[str, object], Any], bool]]  # field: (parse, required)
_KINDS: dict[str, tuple[type[GrowthEvent], _Spec]] = {
    Signup.KIND: (
        Signup,
        {
            "user": (_id, True),
            "at": (_time, True),
            "role": (_choice(Role), True),
            "email": (_email, False),
            "vendor_type": (_label, False),
            "wedding_date": (_date, False),
        },
    ),
    InviteSent.KIND: (
        InviteSent,
        {
            "invite": (_id, True),
            "inviter": (_id, True),
            "invitee": (_email_or_phone, True),
            "channel": (_choice(Channel), True),
            "at": (_time, True),
        },
    ),
    InviteAccepted.KIND: (
        InviteAccepted,
        {"invite": (_id, True), "user": (_id, True), "at": (_time, True)},
    ),
    VendorBooked.KIND: (
        VendorBooked,
        {
            "couple": (_id, True),
            "vendor_email": (_email, True),
            "vendor_name": (_vendor_name, True),
            "vendor_type": (_label, True),
            "at": (_time, True),
        },
    ),
}
