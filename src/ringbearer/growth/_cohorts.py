"""The viral coefficient by cohort, kept current event by event; and the vendor network.

A cohort is the users sharing one key of a view (:class:`By`): the month of
their sign-up in the calendar's time zone, the month of their wedding date (a
calendar date, already in that zone), their role, or their vendor type. Users
without the key (a vendor has no wedding date) make the cohort ``None``, so
every view adds up to the same totals. For a cohort:

    users              its members (users with a sign-up)
    invites            distinct (inviter, invitee) pairs sent by members; the
                       invitee compared normalised (an email lower-cased, a
                       phone as given)
    accepted           those pairs accepted at most ``window_days`` after the
                       pair's first send (an acceptance stamped before it, a
                       clock's skew, counts as within)
    invites_per_user   invites / users
    conversion         accepted / invites (None without invites)
    k                  accepted / users
    cycle_days_median  the median, over accepted pairs, of the days from the
                       inviter's sign-up to the pair's first acceptance
    small              fewer than ``min_cohort`` users

How it stays cheap: each pair holds the share it adds to its inviter's
cohorts (one per view), and any change to the pair or to the inviter takes
that share back and adds the new one. A cohort keeps its counts and the
multiset of its cycle times with their median (two heaps), so ``apply`` is
O(log n) amortised and ``report`` is O(cohorts). That is why the time zone
and ``window_days`` are fixed when the model is made; ``min_cohort`` is the
report's. Two cases cost more, O(the pairs involved): a second, earlier
sign-up of one user (which moves the user and every pair they sent), and an
invite id sent again to another invitee (which rescans its old pair). A
booking costs O(the vendors its couple booked before), for the vendor network.

Events may come in any order and more than once: of several sign-ups of one
user, sends of one invite id or acceptances of one invite, the earliest (then
the least by its other fields) is the one that holds, so any order of the same
events gives the same model. What references something still unknown (an
acceptance of an invite never sent, an invite from a user who never signed
up, a booking by an unknown couple) is kept, counted once the missing piece
arrives, and listed by :meth:`Growth.unmatched` until then.

The model compares invitees and vendors only for equality: the daemon may
hand it subject ids in place of addresses.
"""

from __future__ import annotations

import datetime as dt
import enum
import heapq
from collections import Counter
from zoneinfo import ZoneInfo

import attrs

from ringbearer.privacy import normalise_identity

from ._events import Channel, GrowthEvent, InviteAccepted, InviteSent, Signup, VendorBooked

DAY = 86400.0
WINDOW_DAYS = 30
MIN_COHORT = 20


class By(enum.StrEnum):
    """A view: what groups users into cohorts."""

    SIGNUP_MONTH = "signup_month"
    WEDDING_MONTH = "wedding_month"
    ROLE = "role"
    VENDOR_TYPE = "vendor_type"


_VIEWS = tuple(By)
_Keys = tuple[str | None, ...]  # a user's cohort in each view, in _VIEWS order
_PairKey = tuple[str, str]  # (inviter, normalised invitee)


@attrs.frozen
class CohortRow:
    """One cohort's figures; ``cohort`` None holds the users without that view's key."""

    cohort: str | None
    users: int
    invites: int
    accepted: int
    invites_per_user: float
    conversion: float | None
    k: float
    cycle_days_median: float | None
    small: bool


@attrs.frozen
class Unmatched:
    """What still references something unknown, kept until it arrives; each list sorted."""

    acceptances: tuple[str, ...]  # invite ids accepted but never sent
    invites: tuple[str, ...]  # invite ids sent by a user who never signed up
    couples: tuple[str, ...]  # couples who booked vendors but never signed up


@attrs.frozen
class Partner:
    """A vendor booked by couples who also booked the vendor asked about."""

    vendor: str = attrs.field(repr=False)  # its normalised identity (an address or a subject id)
    name: str = attrs.field(repr=False)  # the least of the names it was booked under
    couples: int  # couples who booked both


@attrs.frozen
class InviteStory:
    """One invite a user sent, as the model counts it."""

    invite: str
    at: float
    channel: Channel
    first_send: bool  # the send of its pair whose time starts the window
    accepted_at: float | None  # when this invite was accepted, if it was
    pair_accepted: bool  # its pair was accepted within the window


@attrs.frozen
class UserStory:
    """What the model knows of one user (``growth explain``)."""

    user: str
    signed_up_at: float | None
    cohorts: dict[str, str | None]  # view -> cohort; empty until the user signs up
    invites: tuple[InviteStory, ...]  # sorted by time, then id
    invitees: int  # distinct invitees (pairs), counted once the user is a member
    accepted: int  # of those, accepted within the window
    joined_through: tuple[str, ...]  # invite ids this user accepted
    vendors_booked: int


@attrs.define
class _Median:
    """A multiset of floats and its median: two heaps, removals applied lazily (O(log n))."""

    _low: list[float] = attrs.field(factory=list)  # the lower half, negated (a max-heap)
    _high: list[float] = attrs.field(factory=list)  # the upper half
    _low_size: int = 0  # live values in each half (the heaps also hold removed ones)
    _high_size: int = 0
    _gone: dict[float, int] = attrs.field(factory=dict)  # removed, not yet popped

    def __len__(self) -> int:
        return self._low_size + self._high_size

    def add(self, value: float) -> None:
        if self._low and value > -self._low[0]:
            heapq.heappush(self._high, value)
            self._high_size += 1
        else:
            heapq.heappush(self._low, -value)
            self._low_size += 1
        self._balance()

    def remove(self, value: float) -> None:
        """Take out one ``value``, which must be present."""
        self._gone[value] = self._gone.get(value, 0) + 1
        if value <= -self._low[0]:
            self._low_size -= 1
            if value == -self._low[0]:
                self._prune(self._low, -1.0)
        else:
            self._high_size -= 1
            if value == self._high[0]:
                self._prune(self._high, 1.0)
        self._balance()
        if len(self._low) + len(self._high) > 2 * len(self) + 64:
            self._rebuild()

    def median(self) -> float | None:
        if not len(self):
            return None
        if self._low_size > self._high_size:
            return -self._low[0]
        return (-self._low[0] + self._high[0]) / 2

    def _balance(self) -> None:
        # Both tops are always live values: pruned whenever they could be a removed one.
        if self._low_size > self._high_size + 1:
            heapq.heappush(self._high, -heapq.heappop(self._low))
            self._low_size, self._high_size = self._low_size - 1, self._high_size + 1
            self._prune(self._low, -1.0)
        elif self._low_size < self._high_size:
            heapq.heappush(self._low, -heapq.heappop(self._high))
            self._low_size, self._high_size = self._low_size + 1, self._high_size - 1
            self._prune(self._high, 1.0)

    def _prune(self, heap: list[float], sign: float) -> None:
        while heap and (count := self._gone.get(sign * heap[0], 0)):
            if count == 1:
                del self._gone[sign * heap[0]]
            else:
                self._gone[sign * heap[0]] = count - 1
            heapq.heappop(heap)

    def _rebuild(self) -> None:
        """Drop the removed values the heaps still hold (when they outnumber the live ones)."""
        gone, live = Counter(self._gone), []
        for value in sorted([-v for v in self._low] + self._high):
            if gone[value]:
                gone[value] -= 1
            else:
                live.append(value)
        half = (len(live) + 1) // 2
        self._low = [-v for v in reversed(live[:half])]  # descending: already a max-heap
        self._high = live[half:]  # ascending: already a min-heap
        self._low_size, self._high_size, self._gone = half, len(live) - half, {}


@attrs.define(eq=False)  # compared by identity: a share names the very cohorts it counts in
class _Cohort:
    users: int = 0
    invites: int = 0
    accepted: int = 0
    cycles: _Median = attrs.field(factory=_Median)


@attrs.frozen
class _Share:
    """What one pair adds to the cohorts of its inviter (one per view)."""

    cohorts: tuple[_Cohort, ...]
    accepted: bool
    cycle_days: float | None


@attrs.define
class _Pair:
    """One (inviter, invitee): its invites, its first send, its first acceptance."""

    inviter: str
    invites: set[str]
    first: tuple[float, str]  # (at, invite id) of the first send
    accept_at: float | None = None
    share: _Share | None = None  # what it adds now, to be taken back exactly


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _signup_order(s: Signup) -> tuple[float, str, str, str, str]:
    wedding = s.wedding_date.isoformat() if s.wedding_date else ""
    return (s.at, s.role.value, s.email or "", s.vendor_type or "", wedding)


def _invite_order(i: InviteSent) -> tuple[float, str, str, str]:
    return (i.at, i.inviter, i.invitee, i.channel.value)


def _pair_key(invite: InviteSent) -> _PairKey:
    return (invite.inviter, normalise_identity(invite.invitee))


class Growth:
    """Growth events in, cohorts' figures, unmatched references and vendor partners out."""

    def __init__(self, zone: ZoneInfo, *, window_days: int = WINDOW_DAYS) -> None:
        if window_days < 1:
            raise ValueError("window_days: at least 1")
        self._zone = zone
        self._window_days = window_days
        self._window = window_days * DAY
        self._signups: dict[str, Signup] = {}
        self._emails: dict[str, str] = {}  # a sign-up's address (as given to the model) -> user
        self._keys: dict[str, _Keys] = {}  # member -> their cohort's key in each view
        self._members: dict[str, tuple[_Cohort, ...]] = {}  # member -> their cohorts
        self._invites: dict[str, InviteSent] = {}
        self._accepts: dict[str, InviteAccepted] = {}
        self._pairs: dict[_PairKey, _Pair] = {}
        self._sent_by: dict[str, set[_PairKey]] = {}
        self._joined: dict[str, set[str]] = {}  # user -> invite ids they accepted
        self._views: tuple[dict[str | None, _Cohort], ...] = tuple({} for _ in _VIEWS)
        self._orphan_accepts: set[str] = set()  # invite ids accepted, never sent
        self._unknown_inviters: set[str] = set()
        self._unknown_couples: set[str] = set()
        self._booked: dict[str, set[str]] = {}  # couple -> vendors
        self._vendor_names: dict[str, str] = {}
        self._together: dict[str, Counter[str]] = {}  # vendor -> vendor -> couples

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone, in which a sign-up's month is told."""
        return self._zone

    @property
    def window_days(self) -> int:
        """How long after its first send an invite's acceptance counts."""
        return self._window_days

    def __repr__(self) -> str:
        return f"Growth(users={len(self._signups)}, pairs={len(self._pairs)})"

    def apply(self, event: GrowthEvent) -> None:
        """Take one event into the figures (in any order; a repeat changes nothing)."""
        match event:
            case Signup():
                self._signup(event)
            case InviteSent():
                self._invite(event)
            case InviteAccepted():
                self._accept(event)
            case VendorBooked():
                self._booking(event)

    def report(self, by: By | str, *, min_cohort: int = MIN_COHORT) -> list[CohortRow]:
        """Every cohort of the view ``by``, in order of key (``None`` last): O(cohorts)."""
        if by not in _VIEWS:
            raise ValueError(f"by: one of {', '.join(_VIEWS)}")
        cohorts = self._views[_VIEWS.index(By(by))]
        rows = [_row(key, cohort, min_cohort) for key, cohort in cohorts.items()]
        return sorted(rows, key=lambda row: (row.cohort is None, row.cohort or ""))

    def unmatched(self) -> Unmatched:
        """What still references an invite or a user the model has not seen."""
        invites = (
            invite
            for inviter in self._unknown_inviters
            for key in self._sent_by[inviter]
            for invite in self._pairs[key].invites
        )
        return Unmatched(
            acceptances=tuple(sorted(self._orphan_accepts)),
            invites=tuple(sorted(invites)),
            couples=tuple(sorted(self._unknown_couples)),
        )

    def user_with_email(self, email: str) -> str | None:
        """The user who signed up with ``email`` (compared as the model was given it)."""
        return self._emails.get(email)

    def invitee_of(self, invite: str) -> str | None:
        """The invitee of invite ``invite`` (as the model was given it), if it was sent."""
        sent = self._invites.get(invite)
        return sent.invitee if sent else None

    def signup(self, user: str) -> Signup | None:
        """The sign-up of ``user`` that holds, if any."""
        return self._signups.get(user)

    def couples_married_between(self, first: dt.date, last: dt.date) -> list[Signup]:
        """Couples whose wedding date lies in ``[first, last]``, by user id (a sweep's list)."""
        found = [
            s for s in self._signups.values()
            if s.role.value == "couple" and s.wedding_date and first <= s.wedding_date <= last
        ]  # fmt: skip
        return sorted(found, key=lambda s: s.user)

    def vendor_name(self, vendor: str) -> str | None:
        """The least of the names ``vendor`` was booked under, if it was booked."""
        return self._vendor_names.get(normalise_identity(vendor))

    def couples_of(self, vendor: str) -> int:
        """How many couples booked ``vendor``."""
        key = normalise_identity(vendor)
        return sum(1 for booked in self._booked.values() if key in booked)

    def unmatched_counts(self) -> tuple[int, int, int]:
        """How many invites accepted but never sent, inviters and booking couples never
        signed up there are now (O(1): for every reply)."""
        acceptances, inviters = len(self._orphan_accepts), len(self._unknown_inviters)
        return acceptances, inviters, len(self._unknown_couples)

    def partners(self, vendor: str) -> list[Partner]:
        """The vendors most often booked by couples who booked ``vendor``; ties by name."""
        together = self._together.get(normalise_identity(vendor), Counter[str]())
        found = [Partner(other, self._vendor_names[other], n) for other, n in together.items()]
        return sorted(found, key=lambda p: (-p.couples, p.name, p.vendor))

    def explain(self, user: str) -> UserStory:
        """What the model knows of ``user``: cohorts, invites sent and their fate, joins."""
        signup = self._signups.get(user)
        keys = self._keys.get(user)
        pairs = [self._pairs[key] for key in self._sent_by.get(user, ())]
        stories = sorted(
            (self._story(pair, invite) for pair in pairs for invite in pair.invites),
            key=lambda s: (s.at, s.invite),
        )
        return UserStory(
            user=user,
            signed_up_at=signup.at if signup else None,
            cohorts=dict(zip(_VIEWS, keys, strict=True)) if keys else {},
            invites=tuple(stories),
            invitees=len(pairs) if signup else 0,
            accepted=sum(self._accepted(pair) for pair in pairs) if signup else 0,
            joined_through=tuple(sorted(self._joined.get(user, ()))),
            vendors_booked=len(self._booked.get(user, ())),
        )

    def _signup(self, event: Signup) -> None:
        old = self._signups.get(event.user)
        if old is not None and _signup_order(old) <= _signup_order(event):
            return
        pairs = [self._pairs[key] for key in self._sent_by.get(event.user, ())]
        for pair in pairs:
            self._withdraw(pair)
        if old is not None:
            self._count_user(self._keys[event.user], -1)
        self._signups[event.user] = event
        if old is not None and old.email is not None and self._emails.get(old.email) == event.user:
            del self._emails[old.email]
        if event.email is not None:
            self._emails.setdefault(event.email, event.user)
        self._keys[event.user] = keys = self._keys_of(event)
        self._members[event.user] = self._count_user(keys, 1)
        for pair in pairs:
            self._refresh(pair)
        self._unknown_inviters.discard(event.user)
        self._unknown_couples.discard(event.user)

    def _invite(self, event: InviteSent) -> None:
        old = self._invites.get(event.invite)
        if old is not None and _invite_order(old) <= _invite_order(event):
            return
        if old is not None:
            self._unlink(old)
        self._invites[event.invite] = event
        self._orphan_accepts.discard(event.invite)
        accepted = self._accepts.get(event.invite)
        key = _pair_key(event)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair(event.inviter, set(), (event.at, event.invite))
            self._sent_by.setdefault(event.inviter, set()).add(key)
            if event.inviter not in self._signups:
                self._unknown_inviters.add(event.inviter)
        pair.invites.add(event.invite)
        pair.first = min(pair.first, (event.at, event.invite))
        pair.accept_at = _earliest(pair.accept_at, accepted.at if accepted else None)
        self._refresh(pair)

    def _unlink(self, old: InviteSent) -> None:
        """Take invite ``old`` out of its pair: the same id came again, earlier, elsewhere."""
        key = _pair_key(old)
        pair = self._pairs[key]
        pair.invites.discard(old.invite)
        if not pair.invites:
            self._withdraw(pair)
            del self._pairs[key]
            sent = self._sent_by[old.inviter]
            sent.discard(key)
            if not sent:
                del self._sent_by[old.inviter]
                self._unknown_inviters.discard(old.inviter)
            return
        sends = [self._invites[invite] for invite in pair.invites]
        pair.first = min((send.at, send.invite) for send in sends)
        accepts = [self._accepts.get(invite) for invite in pair.invites]
        pair.accept_at = min((a.at for a in accepts if a is not None), default=None)
        self._refresh(pair)

    def _accept(self, event: InviteAccepted) -> None:
        old = self._accepts.get(event.invite)
        if old is not None and (old.at, old.user) <= (event.at, event.user):
            return
        if old is not None:
            joined = self._joined[old.user]
            joined.discard(event.invite)
            if not joined:
                del self._joined[old.user]
        self._accepts[event.invite] = event
        self._joined.setdefault(event.user, set()).add(event.invite)
        invite = self._invites.get(event.invite)
        if invite is None:
            self._orphan_accepts.add(event.invite)
            return
        pair = self._pairs[_pair_key(invite)]
        pair.accept_at = _earliest(pair.accept_at, event.at)
        self._refresh(pair)

    def _booking(self, event: VendorBooked) -> None:
        vendor = normalise_identity(event.vendor_email)
        name = self._vendor_names.get(vendor)
        if name is None or event.vendor_name < name:
            self._vendor_names[vendor] = event.vendor_name
        if event.couple not in self._signups:
            self._unknown_couples.add(event.couple)
        booked = self._booked.setdefault(event.couple, set())
        if vendor in booked:
            return
        for other in booked:
            self._together.setdefault(vendor, Counter())[other] += 1
            self._together.setdefault(other, Counter())[vendor] += 1
        booked.add(vendor)

    def _keys_of(self, signup: Signup) -> _Keys:
        month = dt.datetime.fromtimestamp(signup.at, self._zone)
        wedding = signup.wedding_date
        return (
            f"{month.year:04d}-{month.month:02d}",
            f"{wedding.year:04d}-{wedding.month:02d}" if wedding else None,
            signup.role.value,
            signup.vendor_type,
        )

    def _count_user(self, keys: _Keys, sign: int) -> tuple[_Cohort, ...]:
        """Add (or take away) one user to the cohorts ``keys`` names; those cohorts."""
        cohorts = []
        for view, key in zip(self._views, keys, strict=True):
            cohort = view.get(key)
            if cohort is None:
                cohort = view[key] = _Cohort()
            cohort.users += sign
            if not cohort.users:  # its pairs were withdrawn first: nothing else is left
                del view[key]
            cohorts.append(cohort)
        return tuple(cohorts)

    def _accepted(self, pair: _Pair) -> bool:
        return pair.accept_at is not None and pair.accept_at - pair.first[0] <= self._window

    def _share_of(self, pair: _Pair) -> _Share | None:
        """What ``pair`` adds to its inviter's cohorts now; None until the inviter signs up."""
        cohorts = self._members.get(pair.inviter)
        if cohorts is None:
            return None
        accepted = self._accepted(pair)
        cycle = None
        if accepted and pair.accept_at is not None:
            cycle = (pair.accept_at - self._signups[pair.inviter].at) / DAY
        return _Share(cohorts, accepted, cycle)

    def _refresh(self, pair: _Pair) -> None:
        """Take back what ``pair`` added and add what it adds now, if that changed."""
        share = self._share_of(pair)
        if share != pair.share:
            self._withdraw(pair)
            if share is not None:
                _add_share(share, 1)
            pair.share = share

    def _withdraw(self, pair: _Pair) -> None:
        if pair.share is not None:
            _add_share(pair.share, -1)
            pair.share = None

    def _story(self, pair: _Pair, invite: str) -> InviteStory:
        sent = self._invites[invite]
        accepted = self._accepts.get(invite)
        return InviteStory(
            invite=invite,
            at=sent.at,
            channel=sent.channel,
            first_send=pair.first[1] == invite,
            accepted_at=accepted.at if accepted else None,
            pair_accepted=self._accepted(pair),
        )


def _add_share(share: _Share, sign: int) -> None:
    for cohort in share.cohorts:
        cohort.invites += sign
        if share.accepted:
            cohort.accepted += sign
        if share.cycle_days is not None:
            if sign > 0:
                cohort.cycles.add(share.cycle_days)
            else:
                cohort.cycles.remove(share.cycle_days)


def _row(key: str | None, cohort: _Cohort, min_cohort: int) -> CohortRow:
    return CohortRow(
        cohort=key,
        users=cohort.users,
        invites=cohort.invites,
        accepted=cohort.accepted,
        invites_per_user=cohort.invites / cohort.users,
        conversion=cohort.accepted / cohort.invites if cohort.invites else None,
        k=cohort.accepted / cohort.users,
        cycle_days_median=cohort.cycles.median(),
        small=cohort.users < min_cohort,
    )
