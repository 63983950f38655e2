"""The growth model alone: events applied per second, and ``report`` time for each view.

Builds N synthetic growth events (default 1,000,000) before the clock starts:
a tenth sign-ups (four couples to one vendor, weddings over two years),
about half invites (one in five a repeat to the same invitee), a quarter
acceptances (some outside the 30-day window, some of invites never sent) and
the rest vendor bookings; a fifth of them are shuffled out of time order.
Then it applies them all to one :class:`Growth` (Europe/London, 30-day window)
and times ``report`` for each ``by``. Only the pure model: no parsing, no store,
no daemon (those are in the daemon's own benchmark).

    python bench/growth.py [--events 1000000] [--seed 14]

It prints a table; it does not pass or fail. The issue's targets: ingest at
least 20,000 events/s (the daemon, of which this is a part) and the report
under 1 s at 1,000,000 events.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import time
from zoneinfo import ZoneInfo

from ringbearer.growth._cohorts import By, Growth
from ringbearer.growth._events import (
    Channel,
    GrowthEvent,
    InviteAccepted,
    InviteSent,
    Role,
    Signup,
    VendorBooked,
)

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
DAY = 86400.0
SPAN = 2 * 365 * DAY
VENDOR_TYPES = ("photographer", "florist", "venue", "caterer", "dj", "cake", "planner", "dress")


def _signups(rng: random.Random, n: int) -> list[Signup]:
    out = []
    for user in range(n):
        at = START + rng.random() * SPAN
        if user % 5 == 4:
            vendor_type = rng.choice(VENDOR_TYPES)
            out.append(Signup(f"u{user}", at, Role.VENDOR, vendor_type=vendor_type))
        else:
            wedding = dt.date.fromtimestamp(at + rng.uniform(60, 700) * DAY)
            out.append(Signup(f"u{user}", at, Role.COUPLE, wedding_date=wedding))
    return out


def _invites(rng: random.Random, users: list[Signup], n: int) -> list[InviteSent]:
    out: list[InviteSent] = []
    for number in range(n):
        if out and rng.random() < 0.2:  # a reminder: the same invitee again, later
            again = rng.choice(out)
            inviter, invitee, at = again.inviter, again.invitee, again.at + rng.uniform(1, 9) * DAY
        else:
            who = rng.choice(users)
            inviter, invitee = who.user, f"guest{rng.randrange(10 * n)}@example.com"
            at = who.at + rng.expovariate(1 / (20 * DAY))
        channel = rng.choice((Channel.EMAIL, Channel.EMAIL, Channel.SMS, Channel.LINK))
        out.append(InviteSent(f"i{number}", inviter, invitee, channel, at))
    return out


def _acceptances(rng: random.Random, invites: list[InviteSent], n: int) -> list[InviteAccepted]:
    out = []
    for number in range(n):
        if number % 50 == 0:  # an acceptance of an invite never sent
            out.append(
                InviteAccepted(f"missing{number}", f"n{number}", START + rng.random() * SPAN)
            )
            continue
        sent = rng.choice(invites)
        out.append(InviteAccepted(sent.invite, f"n{number}", sent.at + rng.uniform(0, 45) * DAY))
    return out


def _bookings(rng: random.Random, users: list[Signup], n: int) -> list[VendorBooked]:
    couples = [u for u in users if u.role is Role.COUPLE]
    out = []
    for _ in range(n):
        couple, vendor = rng.choice(couples), rng.randrange(len(users) // 2)
        kind = VENDOR_TYPES[vendor % len(VENDOR_TYPES)]
        email, name = f"vendor{vendor}@example.com", f"Vendor {vendor}"
        out.append(VendorBooked(couple.user, email, name, kind, couple.at + rng.random() * DAY))
    return out


def synthetic(total: int, seed: int) -> list[GrowthEvent]:
    """``total`` events, mostly in time order, a fifth of them moved elsewhere at random."""
    rng = random.Random(seed)
    users = _signups(rng, total // 10)
    invites = _invites(rng, users, total // 2)
    accepted = _acceptances(rng, invites, total // 4)
    booked = _bookings(rng, users, total - len(users) - len(invites) - len(accepted))
    events: list[GrowthEvent] = [*users, *invites, *accepted, *booked]
    events.sort(key=lambda e: e.at)
    for i in rng.sample(range(len(events)), len(events) // 5):
        j = rng.randrange(len(events))
        events[i], events[j] = events[j], events[i]
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    events = synthetic(args.events, args.seed)
    growth = Growth(ZoneInfo("Europe/London"))
    began = time.perf_counter()
    for event in events:
        growth.apply(event)
    applied = time.perf_counter() - began
    print(f"{len(events):,} events applied in {applied:.2f} s: {len(events) / applied:,.0f}/s")
    for by in By:
        began = time.perf_counter()
        rows = growth.report(by)
        took = time.perf_counter() - began
        print(f"report by {by:<14} {1000 * took:8.2f} ms  ({len(rows)} cohorts)  target < 1000 ms")
    unmatched = growth.unmatched()
    print(
        f"unmatched: {len(unmatched.acceptances):,} acceptances, {len(unmatched.invites):,} invites"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:,.0f} MiB (events and model together)")


if __name__ == "__main__":
    main()
