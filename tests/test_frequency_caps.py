"""Frequency caps: at most N emails of a category per recipient in a window, then wait or drop."""

from __future__ import annotations

from typing import Literal

import trio
from hypothesis import given
from hypothesis import strategies as st

from ringbearer._converter import PositiveFloat, PositiveInt
from ringbearer.deliverability import FrequencyCaps
from ringbearer.deliverability._caps import DAY
from ringbearer.deliverability._settings import FrequencyCap
from ringbearer.store import MemoryStore, NewMessage, Settle, SettleKind

T0 = 1_700_000_000.0
ANN = "ann@example.com"


def cap(
    limit: int, per_days: float, over: Literal["wait", "drop"] = "wait", category: str = "marketing"
) -> FrequencyCap:
    return FrequencyCap(category, PositiveInt(limit), PositiveFloat(per_days), over)


THREE_A_WEEK = cap(3, 7.0)


def wall() -> float:
    return T0 + trio.current_time()


def test_the_fourth_in_a_week_waits_until_the_first_leaves_the_window() -> None:
    """Three sends are allowed; the fourth is allowed once the oldest is 7 days old."""
    caps = FrequencyCaps((THREE_A_WEEK,))
    for day in (0, 1, 2):
        assert caps.check(ANN, "marketing", T0 + day * DAY) is None
        caps.note(ANN, "marketing", T0 + day * DAY)
    assert caps.check(ANN, "marketing", T0 + 3 * DAY) == T0 + 7 * DAY
    assert caps.check(ANN, "marketing", T0 + 7 * DAY - 1) == T0 + 7 * DAY
    assert caps.check(ANN, "marketing", T0 + 7 * DAY) is None


def test_caps_count_per_recipient_and_category() -> None:
    """Another recipient, or another category, is not stopped; an uncapped category never is."""
    caps = FrequencyCaps((THREE_A_WEEK, cap(1, 1.0, category="digest")))
    for n in range(3):
        caps.note(ANN, "marketing", T0 + n)
    assert caps.check(ANN, "marketing", T0 + 10) is not None
    assert caps.check("  ANN@example.com", "marketing", T0 + 10) is not None  # normalised
    assert caps.check("bob@example.com", "marketing", T0 + 10) is None
    assert caps.check(ANN, "digest", T0 + 10) is None
    for n in range(50):
        caps.note(ANN, "transactional", T0 + n)
    assert caps.check(ANN, "transactional", T0 + 60) is None
    assert caps.horizon("transactional") == 0.0


def test_a_message_is_counted_once_and_never_stops_itself() -> None:
    """Retried, the same message is not counted again, nor held back by its own first pass."""
    caps = FrequencyCaps((cap(1, 1.0),))
    caps.note(ANN, "marketing", T0, message=7)
    caps.note(ANN, "marketing", T0 + 60, message=7)
    assert caps.check(ANN, "marketing", T0 + 120, message=7) is None
    hit = caps.limiting(ANN, "marketing", T0 + 120, message=8)
    assert hit is not None and hit.sent == 1 and hit.until == T0 + DAY


def test_the_stricter_of_several_caps_decides() -> None:
    """Of two caps over, the longer wait is given; a dropping cap over wins over waiting."""
    daily = cap(1, 1.0)
    weekly = cap(2, 7.0)
    caps = FrequencyCaps((daily, weekly))
    caps.note(ANN, "marketing", T0)
    caps.note(ANN, "marketing", T0 + DAY)
    hit = caps.limiting(ANN, "marketing", T0 + DAY + 60)
    assert hit is not None and hit.cap == weekly and hit.until == T0 + 7 * DAY
    dropping = cap(1, 1.0, "drop")
    caps = FrequencyCaps((weekly, dropping))
    caps.note(ANN, "marketing", T0)
    caps.note(ANN, "marketing", T0 + 60)
    hit = caps.limiting(ANN, "marketing", T0 + 120)
    assert hit is not None and hit.cap == dropping


def test_memory_forgets_what_no_cap_counts() -> None:
    """A thousand recipients mailed once; eight days on, one more: only that one is kept."""
    caps = FrequencyCaps((THREE_A_WEEK,))
    for n in range(1000):
        caps.note(f"user{n}@example.com", "marketing", T0 + n)
    assert len(caps) == 1000
    caps.note(ANN, "marketing", T0 + 8 * DAY)
    assert len(caps) == 1


async def test_seeded_from_what_the_store_delivered(autojump_clock: object) -> None:
    """After a restart, the sends delivered within the window count; older ones do not."""
    store = MemoryStore(wall)
    await deliver(store, ANN, "marketing")
    await trio.sleep(5 * DAY)
    for _ in range(2):
        await deliver(store, ANN, "marketing")
    await deliver(store, ANN, "transactional")
    await trio.sleep(3 * DAY)  # the first send is 8 days old
    caps = await FrequencyCaps.load((THREE_A_WEEK,), store, wall())
    assert caps.check(ANN, "marketing", wall()) is None
    await deliver(store, ANN, "marketing")
    caps = await FrequencyCaps.load((THREE_A_WEEK,), store, wall())
    assert caps.check(ANN, "marketing", wall()) == T0 + 5 * DAY + 7 * DAY


async def test_take_up_counts_what_other_nodes_delivered_each_message_once(
    autojump_clock: object,
) -> None:
    """Two nodes' caps over one store: what the other node delivered counts here after a
    take-up; one this node let go itself, or read twice, counts once."""
    store = MemoryStore(wall)
    here = await FrequencyCaps.load((THREE_A_WEEK,), store, wall())
    await deliver(store, ANN, "marketing")  # by another node
    await trio.sleep(10)
    mine = await deliver(store, ANN, "marketing")
    here.note(ANN, "marketing", wall(), message=mine)  # let go by this node's gate
    assert here.check(ANN, "marketing", wall()) is None  # one of three seen
    await here.take_up(store, wall())
    await here.take_up(store, wall())  # read again: nothing counted twice
    assert here.check(ANN, "marketing", wall()) is None  # two of three
    await deliver(store, ANN, "marketing")
    await here.take_up(store, wall())
    assert here.check(ANN, "marketing", wall()) == T0 + 7 * DAY


async def deliver(store: MemoryStore, recipient: str, category: str) -> int:
    (accepted,) = await store.submit(
        [NewMessage("email", {}, category=category, recipient=recipient, domain="example.com")]
    )
    (claimed,) = await store.claim("email", 1)
    assert claimed.id == accepted.id
    await store.record(
        [Settle(claimed.id, "email", SettleKind.DELIVERED, "resend", 1, wall(), provider_id="re")]
    )
    return claimed.id


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3 * DAY), min_size=1, max_size=40),
    limit=st.integers(min_value=1, max_value=4),
    per_days=st.sampled_from([0.5, 1.0, 7.0]),
)
def test_no_window_ever_holds_more_than_the_limit(
    gaps: list[float], limit: int, per_days: float
) -> None:
    """Sending whenever the cap allows (waiting as told): every window holds at most ``limit``."""
    caps = FrequencyCaps((cap(limit, per_days),))
    now, sent = T0, []
    for gap in gaps:
        now += gap
        wait = caps.check(ANN, "marketing", now)
        if wait is not None:
            assert wait > now
            now = wait
            assert caps.check(ANN, "marketing", now) is None
        caps.note(ANN, "marketing", now)
        sent.append(now)
    window = per_days * DAY
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + window) <= limit
