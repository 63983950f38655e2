"""The deliverability role of the contract: on the in-memory fake and on SQLite, the same.

The fixtures are those of tests/test_store_contract.py: each test runs on both
stores. Scheduling and holds, provider events matched and kept once, the
suppression list, and the reads the guards and the funnel make. At the end,
what only a file can show: a version 5 file migrates keeping its rows, a
hold outlives the process, and the queries use their indexes.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringbearer._delivery import Priority
from ringbearer._errors import RequestError, StoreError
from ringbearer.deliverability import (
    EVERY_CATEGORY,
    MARKETING,
    TRANSACTIONAL,
    Channel,
    EventRecord,
    EventType,
    FunnelRow,
    MailEventRow,
    MatchedEvent,
    ProviderEvent,
    Reason,
    Suppression,
)
from ringbearer.store import (
    HELD_UNTIL,
    SCHEMA_VERSION,
    Attempt,
    Claimed,
    Deliverability,
    MemoryStore,
    NewMessage,
    SettleKind,
    SqliteStore,
    Store,
)
from ringbearer.store._mail_audit import address_hash
from ringbearer.store._schema import MIGRATIONS

from .test_store_contract import T0, Heard, Wall, settle, settled
from .test_store_contract import heard as heard  # the listener fixture
from .test_store_contract import store as store  # the two-store fixture
from .test_store_contract import wall as wall

DAY = 86_400.0
BOB = "bob@example.com"
HOLD = "domain:news.example.com"


def mail(
    n: int = 0,
    *,
    to: str = BOB,
    category: str = MARKETING,
    domain: str = "news.example.com",
    **kw: Any,
) -> NewMessage:
    return NewMessage("email", {"n": n}, category=category, recipient=to, domain=domain, **kw)


def event(
    event_id: str, type: EventType = EventType.DELIVERED, *, source: str = "resend", **kw: Any
) -> ProviderEvent:
    return ProviderEvent(source=source, event_id=event_id, type=type, at=kw.pop("at", T0), **kw)


async def deliver(
    store: Store, *messages: NewMessage, provider_ids: Sequence[str] = (), via: str = "resend"
) -> list[Claimed]:
    """Submit ``messages`` to "email", claim them and settle each delivered (with its id)."""
    await store.submit(messages)
    claimed = await store.claim("email", len(messages))
    assert len(claimed) == len(messages)
    attempt = Attempt(via, T0, 0.01, "delivered", status=200)
    ids = list(provider_ids) + [None] * len(claimed)
    await settled(
        store,
        *[
            settle(c, SettleKind.DELIVERED, integration=via, provider_id=pid, attempt=attempt)
            for c, pid in zip(claimed, ids, strict=False)
        ],
    )
    return claimed


async def hold(store: Store, count: int, key: str = HOLD) -> list[Claimed]:
    """Submit ``count`` marketing emails, claim them, and settle each HELD under ``key``."""
    await store.submit([mail(n) for n in range(count)])
    claimed = await store.claim("email", count)
    await settled(
        store,
        *[
            settle(c, SettleKind.HELD, held=key, attempts=c.attempts, reason="domain paused")
            for c in claimed
        ],
    )
    return claimed


async def kept(store: Store, *events: ProviderEvent) -> list[bool]:
    """Match ``events`` and commit them with no suppressions."""
    matched = await store.match_events(events, soft_since=0.0)
    return await store.commit_events([EventRecord(m) for m in matched])


def test_the_deliverability_role_is_exported_and_part_of_every_store() -> None:
    """``Deliverability`` is imported from ``ringbearer.store`` and is one of ``Store``'s roles."""
    assert Deliverability in Store.__mro__


# -- scheduling -------------------------------------------------------------------------------


async def test_a_message_scheduled_waits_in_the_store_until_its_time(
    store: Store, wall: Wall
) -> None:
    """``not_before`` queues it due then: no claim before, next_due says when, claimed after."""
    (a,) = await store.submit([mail(1, not_before=T0 + 3600)])
    assert await store.claim("email", 10) == []
    assert await store.next_due("email") == T0 + 3600
    assert store.counters.of("email").queued[Priority.NORMAL] == 1
    record = await store.message(a.id)
    assert record is not None and (record.status, record.next_attempt_at) == ("queued", T0 + 3600)
    wall.now = T0 + 3600
    (claimed,) = await store.claim("email", 10)
    assert claimed.id == a.id


async def test_a_scheduled_message_is_not_old_before_its_time(store: Store, wall: Wall) -> None:
    """The oldest-queued age of a message never attempted counts from when it was due: one
    scheduled for next week does not look a week late, and one that waits past its time
    does look late."""
    await store.submit([mail(1, not_before=T0 + 7 * 86400)])
    ((_, since),) = (await store.oldest_queued()).items()
    assert since == T0 + 7 * 86400  # the heartbeat shows the age as 0 until then
    wall.now = T0 + 60
    await store.submit([mail(2)])
    assert await store.oldest_queued() == {("email", Priority.NORMAL): T0 + 60}


async def test_a_time_already_past_makes_a_message_due_at_once(store: Store) -> None:
    """``not_before`` in the past is now: due at its submit, and not called scheduled."""
    (a,) = await store.submit([NewMessage("email", {}, not_before=T0 - 60)])
    assert [c.id for c in await store.claim("email", 10)] == [a.id]
    (submitted,) = await store.events(message_id=a.id)
    assert submitted.detail == {"target": "email", "key": a.idempotency_key, "priority": "normal"}


async def test_the_submitted_event_names_category_and_schedule_when_set(store: Store) -> None:
    """The audit's ``submitted`` detail gains ``category`` and ``not_before``, and no address."""
    (a,) = await store.submit([mail(1, idempotency_key="k", not_before=T0 + 60)])
    (b,) = await store.submit([NewMessage("sms", {}, idempotency_key="s", category=TRANSACTIONAL)])
    (first,) = await store.events(message_id=a.id)
    (second,) = await store.events(message_id=b.id)
    assert first.detail == {
        "target": "email",
        "key": "k",
        "priority": "normal",
        "category": MARKETING,
        "not_before": T0 + 60,
    }
    assert second.detail == {
        "target": "sms",
        "key": "s",
        "priority": "normal",
        "category": TRANSACTIONAL,
    }


async def test_a_claim_carries_category_recipient_and_domain(store: Store) -> None:
    """What the gate reads before sending comes with the claim; a message without them has None."""
    await store.submit(
        [mail(1, to="ann@example.org", domain="mail.example.com"), NewMessage("email", {})]
    )
    first, second = await store.claim("email", 2)
    assert (first.category, first.recipient, first.domain) == (
        MARKETING,
        "ann@example.org",
        "mail.example.com",
    )
    assert (second.category, second.recipient, second.domain) == (None, None, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"not_before": float("nan")},
        {"not_before": HELD_UNTIL},
        {"recipient": "bob\x00@example.com"},
        {"domain": "\ud800.example.com"},
        {"category": "mark\x00eting"},
    ],
)
async def test_what_a_store_cannot_hold_is_refused_naming_the_field(
    store: Store, changes: dict[str, Any]
) -> None:
    """A NUL or lone surrogate in the new texts, or an unholdable time, refuses the submit."""
    (field,) = changes
    with pytest.raises(RequestError, match=rf"messages\[0\]: {field}"):
        await store.submit([attrs.evolve(mail(1), **changes)])
    assert await store.states([1]) == {}


# -- holds ------------------------------------------------------------------------------------


async def test_a_held_message_stays_queued_and_out_of_every_claim(
    store: Store, wall: Wall, heard: Heard
) -> None:
    """HELD: queued, not attempted, never due; claims, next_due and oldest_queued skip it."""
    claimed = await hold(store, 2)
    assert store.counters.of("email").queued[Priority.NORMAL] == 2
    assert store.counters.of("email").inflight == 0
    assert heard.settled_ == [[c.id for c in claimed]]
    wall.now = T0 + 100 * 365 * DAY
    assert await store.claim("email", 10) == []
    assert await store.next_due("email") is None
    assert await store.oldest_queued() == {}
    record = await store.message(claimed[0].id)
    assert record is not None
    assert (record.status, record.attempts, record.next_attempt_at) == ("queued", 0, HELD_UNTIL)
    assert await store.held_keys() == {HOLD: 2}


async def test_a_hold_is_audited_with_its_key(store: Store) -> None:
    """The ``held`` audit event names the hold's key and the due time beyond reach."""
    (c,) = await hold(store, 1)
    held = (await store.events(message_id=c.id, kinds=["held"]))[0]
    assert held.detail is not None
    assert (held.detail["held"], held.detail["status"], held.detail["reason"]) == (
        HOLD,
        "queued",
        "domain paused",
    )
    assert held.detail["next_attempt_at"] == HELD_UNTIL
    assert await store.events(message_id=c.id, kinds=["attempted"]) == []


async def test_an_unheld_message_is_due_beside_a_held_one(store: Store, wall: Wall) -> None:
    """Held work does not hide the rest: the other message is next due and oldest queued."""
    await hold(store, 1)
    wall.now = T0 + 10
    (a,) = await store.submit([mail(9, not_before=T0 + 30)])
    assert await store.next_due("email") == T0 + 30
    # Waiting since its time (scheduled), not since its submit.
    assert await store.oldest_queued() == {("email", Priority.NORMAL): T0 + 30}
    wall.now = T0 + 30
    assert [c.id for c in await store.claim("email", 10)] == [a.id]


async def test_release_makes_the_held_due_audits_them_and_kicks_the_dispatchers(
    store: Store, wall: Wall, heard: Heard
) -> None:
    """release_held: due at ``at``, a ``released`` event each naming who, the listener told."""
    claimed = await hold(store, 3)
    await hold(store, 1, key="domain:other.example")
    wall.now = T0 + 600
    assert await store.release_held(HOLD, at=T0 + 700, by="operator alice") == 3
    assert heard.submitted_[-1][0] == {"email"}
    assert await store.held_keys() == {"domain:other.example": 1}
    assert await store.next_due("email") == T0 + 700
    released = await store.events(kinds=["released"])
    assert sorted(e.message_id or 0 for e in released) == [c.id for c in claimed]
    assert {json.dumps(e.detail) for e in released} == {
        json.dumps({"key": HOLD, "by": "operator alice"})
    }
    assert all(e.at == T0 + 600 for e in released)
    assert await store.claim("email", 10) == []
    wall.now = T0 + 700
    again = await store.claim("email", 10)
    assert [c.id for c in again] == [c.id for c in claimed]
    assert store.counters.of("email").queued[Priority.NORMAL] == 1  # the other hold's


async def test_releasing_a_key_nothing_waits_under_changes_nothing(
    store: Store, heard: Heard
) -> None:
    """No message held under the key: zero, no event, nobody told."""
    await hold(store, 1)
    told = len(heard.submitted_)
    assert await store.release_held("domain:nobody.example", at=T0, by="ringbearer") == 0
    assert len(heard.submitted_) == told
    assert await store.events(kinds=["released"]) == []


async def test_a_released_message_settles_as_any_other(store: Store, wall: Wall) -> None:
    """Released, claimed, delivered: its hold key is gone from it and from held_keys."""
    (c,) = await hold(store, 1)
    await store.release_held(HOLD, at=T0, by="ringbearer")
    (again,) = await store.claim("email", 1)
    await settled(store, settle(again, SettleKind.DELIVERED))
    assert await store.held_keys() == {}
    (delivered,) = await store.events(message_id=c.id, kinds=["delivered"])
    assert delivered.detail is not None and "held" not in delivered.detail


# -- provider events: matching ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "reported"),
    [
        ("<20250615.1@mg.example.com>", "20250615.1@mg.example.com"),  # Mailgun's two forms
        ("20250615.1@mg.example.com", "<20250615.1@mg.example.com>"),
        ("re_0a1b2c", "re_0a1b2c"),
    ],
)
async def test_an_event_finds_its_message_by_provider_id_in_either_form(
    store: Store, stored: str, reported: str
) -> None:
    """Mailgun answers ``<id>`` and its webhooks say ``id``: either form finds the message."""
    (c,) = await deliver(
        store, mail(1, priority=Priority.BULK), provider_ids=[stored], via="mailgun"
    )
    (matched,) = await store.match_events([event("e1", provider_id=reported)], soft_since=0)
    assert matched.message is not None
    assert attrs.astuple(matched.message) == (
        c.id,
        "email",
        "mailgun",
        MARKETING,
        BOB,
        "news.example.com",
        "bulk",
    )
    assert (matched.seen, matched.soft_bounces) == (False, 0)


async def test_an_event_finds_its_message_by_key_when_the_id_is_unknown(store: Store) -> None:
    """No message has the provider id: the idempotency key the provider echoed finds it."""
    await deliver(store, mail(1, idempotency_key="order-7"), provider_ids=["re_1"])
    found, lost = await store.match_events(
        [event("e1", provider_id="re_unknown", key="order-7"), event("e2", key="nobody")],
        soft_since=0,
    )
    assert found.message is not None and found.message.message_id == 1
    assert lost.message is None


async def test_an_event_of_no_message_of_ours_is_kept_unmatched(store: Store) -> None:
    """Unmatched, it is still kept once and audited, with no message."""
    assert await kept(store, event("e1", provider_id="re_gone")) == [True]
    (audit,) = await store.events(kinds=["provider_event"])
    assert (audit.message_id, audit.integration) == (None, None)


async def test_callers_matching_at_once_each_get_their_own_answer(store: Store) -> None:
    """Matches asked together (SQLite answers them in one read) come back to their callers."""
    await deliver(store, *[mail(n) for n in range(10)], provider_ids=[f"re_{n}" for n in range(10)])
    answers: dict[int, list[MatchedEvent]] = {}

    async def ask(n: int) -> None:
        events = [event(f"e{n}", provider_id=f"re_{n}"), event(f"x{n}", key="nobody")]
        answers[n] = await store.match_events(events, soft_since=0)

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(ask, n)
    for n, (found, lost) in answers.items():
        assert found.event.event_id == f"e{n}" and lost.event.event_id == f"x{n}"
        assert found.message is not None and found.message.message_id == n + 1
        assert lost.message is None
    assert await store.match_events([], soft_since=0) == []
    assert await store.commit_events([]) == []


async def test_matching_is_a_read(store: Store) -> None:
    """match_events writes nothing: the same event matched twice is still unseen."""
    await deliver(store, mail(1), provider_ids=["re_1"])
    before = await store.events()
    for _ in range(2):
        (m,) = await store.match_events([event("e1", provider_id="re_1")], soft_since=0)
        assert not m.seen
    assert await store.events() == before


# -- provider events: keeping once ------------------------------------------------------------


async def test_an_event_is_kept_once_and_audited_without_its_address(store: Store) -> None:
    """Committed: a ``provider_event`` on the message, naming the event but not the address."""
    (c,) = await deliver(store, mail(1), provider_ids=["re_1"])
    ev = event("msg_1", EventType.OPENED, provider_id="re_1", address="Bob@Example.com")
    assert await kept(store, ev) == [True]
    (audit,) = await store.events(kinds=["provider_event"])
    assert (audit.message_id, audit.integration, audit.at) == (c.id, "resend", T0)
    assert audit.detail == {
        "event": "opened",
        "source": "resend",
        "event_id": "msg_1",
        "provider_id": "re_1",
    }
    (m,) = await store.match_events([ev], soft_since=0)
    assert m.seen


async def test_a_redelivered_event_writes_nothing_and_answers_false(store: Store) -> None:
    """The second commit of an event: False, and none of its record (audit, suppressions)."""
    await deliver(store, mail(1), provider_ids=["re_1"])
    (m,) = await store.match_events(
        [event("e1", EventType.HARD_BOUNCE, provider_id="re_1")], soft_since=0
    )
    first = EventRecord(m, (Suppression(BOB, EVERY_CATEGORY, Reason.HARD_BOUNCE, T0, by="resend"),))
    assert await store.commit_events([first]) == [True]
    log = await store.events()
    again = EventRecord(m, (Suppression(BOB, MARKETING, Reason.COMPLAINT, T0, by="resend"),))
    assert await store.commit_events([again, first]) == [False, False]
    assert await store.events() == log
    assert [s.reason for s in await store.suppressions()] == [Reason.HARD_BOUNCE]
    assert len(await store.mail_events(since=0)) == 1


async def test_the_same_event_twice_in_one_batch_is_kept_once(store: Store) -> None:
    """Within one commit the first is new and the second is not."""
    assert await kept(store, event("e1"), event("e2"), event("e1")) == [True, True, False]
    assert len(await store.events(kinds=["provider_event"])) == 2


async def test_event_ids_are_unique_per_source(store: Store) -> None:
    """The same id from two providers is two events."""
    assert await kept(store, event("1", source="resend"), event("1", source="mailgun")) == [
        True,
        True,
    ]


async def test_concurrent_commits_of_one_event_keep_it_once(store: Store) -> None:
    """Two webhook deliveries of one event at once (one group commit): one of them is new."""
    (m,) = await store.match_events([event("e1")], soft_since=0)
    answers: list[bool] = []

    async def commit() -> None:
        answers.extend(await store.commit_events([EventRecord(m)]))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(commit)
    assert sorted(answers) == [False, False, False, False, True]


async def test_an_events_suppressions_are_audited_with_the_address_hashed(store: Store) -> None:
    """Each suppression a new event adds: a ``suppressed`` event with who and why, hashed."""
    (c,) = await deliver(store, mail(1), provider_ids=["re_1"])
    (m,) = await store.match_events(
        [event("e1", EventType.COMPLAINED, provider_id="re_1", address=BOB)], soft_since=0
    )
    s = Suppression(BOB, MARKETING, Reason.COMPLAINT, T0, by="resend", note="spam report")
    assert await store.commit_events([EventRecord(m, (s,))]) == [True]
    audit = await store.events()
    suppressed = [e for e in audit if e.kind == "suppressed"]
    assert [(e.message_id, e.integration) for e in suppressed] == [(c.id, "resend")]
    assert suppressed[0].detail == {
        "scope": MARKETING,
        "reason": "complaint",
        "by": "resend",
        "note": "spam report",
        "until": None,
        "address_hash": address_hash(BOB),
    }
    assert BOB not in json.dumps([e.detail for e in audit]).lower()
    (listed,) = await store.suppressions(address=BOB)
    assert (listed.scope, listed.reason, listed.by) == (MARKETING, Reason.COMPLAINT, "resend")


async def test_an_event_without_an_address_is_kept_under_its_messages_recipient(
    store: Store,
) -> None:
    """Twilio's callbacks name no address: the message's first recipient counts the bounce."""
    await deliver(store, mail(1, to="ann@example.org"), provider_ids=["re_1"])
    await kept(store, event("e1", EventType.SOFT_BOUNCE, provider_id="re_1"))
    (m,) = await store.match_events([event("e2", address="ann@example.org")], soft_since=0)
    assert m.soft_bounces == 1


async def test_ids_a_store_cannot_hold_are_kept_readable_and_still_dedup(store: Store) -> None:
    """A lone surrogate or NUL in a provider's ids does not break the commit or the dedup."""
    odd = event("e\ud800\x00", provider_id="re\ud800", address="x\ud800@example.com")
    assert await kept(store, odd) == [True]
    assert await kept(store, odd) == [False]


# -- soft bounces -----------------------------------------------------------------------------


async def test_soft_bounces_are_counted_per_address_within_the_window(store: Store) -> None:
    """Only the address's soft bounces at or after ``soft_since`` count, not other events."""
    bounces = [
        event("old", EventType.SOFT_BOUNCE, address=BOB, at=T0 - 40 * DAY),
        event("b1", EventType.SOFT_BOUNCE, address=BOB, at=T0 - 30 * DAY),
        event("b2", EventType.SOFT_BOUNCE, address="BOB@example.com", at=T0 - DAY),
        event("hard", EventType.HARD_BOUNCE, address=BOB, at=T0),
        event("ann", EventType.SOFT_BOUNCE, address="ann@example.org", at=T0),
    ]
    await kept(store, *bounces)
    bob, ann, nobody = await store.match_events(
        [event("n1", address=BOB), event("n2", address="ann@example.org"), event("n3")],
        soft_since=T0 - 30 * DAY,
    )
    assert (bob.soft_bounces, ann.soft_bounces, nobody.soft_bounces) == (2, 1, 0)


# -- the suppression list ---------------------------------------------------------------------


async def test_a_suppression_is_added_with_an_id_and_an_audit_event(store: Store) -> None:
    """Added: an id from the store, its address normalised, ``suppressed`` naming who."""
    given_ = Suppression(" Bob@Example.COM", MARKETING, Reason.MANUAL, T0, by="alice", note="asked")
    added = await store.add_suppression(given_)
    assert added == attrs.evolve(given_, address=BOB, id=added.id)
    assert added.id is not None
    assert await store.suppressions() == [added]
    (audit,) = await store.events(kinds=["suppressed"])
    assert audit.detail is not None
    assert (audit.detail["by"], audit.detail["address_hash"]) == ("alice", address_hash(BOB))


async def test_a_suppression_added_again_is_renewed_in_place(store: Store, wall: Wall) -> None:
    """Same address, scope and reason: one row, its id kept, its time, until, by and note new."""
    first = await store.add_suppression(
        Suppression(BOB, EVERY_CATEGORY, Reason.HARD_BOUNCE, T0, until=T0 + DAY, by="resend")
    )
    assert first.id is not None
    await store.note_suppressed_try(first.id, T0 + 5)
    renewed = await store.add_suppression(
        Suppression(BOB, EVERY_CATEGORY, Reason.HARD_BOUNCE, T0 + 9, by="mailgun", note="again")
    )
    assert (renewed.id, renewed.last_try_at) == (first.id, T0 + 5)
    (listed,) = await store.suppressions()
    assert listed == renewed
    assert (listed.created_at, listed.until, listed.by, listed.note) == (
        T0 + 9,
        None,
        "mailgun",
        "again",
    )
    other = await store.add_suppression(Suppression(BOB, MARKETING, Reason.COMPLAINT, T0))
    assert [s.id for s in await store.suppressions()] == [first.id, other.id]
    assert len(await store.events(kinds=["suppressed"])) == 3


async def test_remove_takes_one_scope_or_all_and_audits_each(store: Store) -> None:
    """remove_suppression: of ``scope``, or every one of the address; each ``unsuppressed``."""
    for scope, reason in ((MARKETING, Reason.UNSUBSCRIBE), ("*", Reason.HARD_BOUNCE)):
        await store.add_suppression(Suppression(BOB, scope, reason, T0))
    ann = await store.add_suppression(Suppression("ann@example.org", "*", Reason.MANUAL, T0))
    (gone,) = await store.remove_suppression("BOB@example.com", scope=MARKETING, by="alice")
    assert (gone.scope, gone.reason) == (MARKETING, Reason.UNSUBSCRIBE)
    (rest,) = await store.remove_suppression(BOB, by="bob", note="fixed mailbox")
    assert rest.reason is Reason.HARD_BOUNCE
    assert await store.suppressions() == [ann]
    assert await store.remove_suppression(BOB, by="bob") == []
    audit = await store.events(kinds=["unsuppressed"])
    assert [e.detail for e in reversed(audit)] == [
        {
            "scope": MARKETING,
            "reason": "unsubscribe",
            "by": "alice",
            "note": "",
            "address_hash": address_hash(BOB),
        },
        {
            "scope": "*",
            "reason": "hard_bounce",
            "by": "bob",
            "note": "fixed mailbox",
            "address_hash": address_hash(BOB),
        },
    ]


async def test_expired_suppressions_are_left_out_when_asked_at_a_time(store: Store) -> None:
    """``active_at``: those with ``until`` after it or none; without it, every one."""
    held = await store.add_suppression(
        Suppression(BOB, "*", Reason.SOFT_BOUNCE, T0, until=T0 + 3 * DAY)
    )
    forever = await store.add_suppression(Suppression(BOB, MARKETING, Reason.UNSUBSCRIBE, T0))
    assert await store.suppressions(address=BOB, active_at=T0 + DAY) == [held, forever]
    assert await store.suppressions(address=BOB, active_at=T0 + 3 * DAY) == [forever]
    assert await store.suppressions(active_at=T0 + 4 * DAY) == [forever]
    assert await store.suppressions(address=BOB) == [held, forever]


async def test_suppressions_page_by_id(store: Store) -> None:
    """``after`` and ``limit`` page through the list in id order; a removed id is not reused."""
    added = [
        await store.add_suppression(Suppression(f"u{n}@example.com", "*", Reason.MANUAL, T0))
        for n in range(5)
    ]
    ids = [s.id or 0 for s in added]
    assert [s.id for s in await store.suppressions(after=ids[1], limit=2)] == ids[2:4]
    await store.remove_suppression("u4@example.com", by="alice")
    again = await store.add_suppression(Suppression("u9@example.com", "*", Reason.MANUAL, T0))
    assert (again.id or 0) > ids[4]


async def test_a_critical_try_is_noted_on_its_suppression(store: Store) -> None:
    """note_suppressed_try keeps when critical mail last passed a hard bounce."""
    s = await store.add_suppression(Suppression(BOB, "*", Reason.HARD_BOUNCE, T0))
    assert s.id is not None and s.last_try_at is None
    await store.note_suppressed_try(s.id, T0 + DAY)
    (listed,) = await store.suppressions(address=BOB)
    assert listed.last_try_at == T0 + DAY


# -- the guards' and the funnel's reads -------------------------------------------------------


async def test_mail_events_are_the_email_events_since_a_time_oldest_first(store: Store) -> None:
    """The reputation guard's seed: email events at or after ``since``, by time; no SMS."""
    (c,) = await deliver(store, mail(1), provider_ids=["re_1"])
    await kept(
        store,
        event("late", EventType.COMPLAINED, provider_id="re_1", at=T0 + 20),
        event("early", provider_id="re_1", at=T0 + 10),
        event("old", provider_id="re_1", at=T0 - DAY),
        event("sms", EventType.UNDELIVERED, source="twilio", channel=Channel.SMS, at=T0 + 15),
    )
    assert await store.mail_events(since=T0) == [
        MailEventRow(T0 + 10, EventType.DELIVERED, "resend", "news.example.com", c.id),
        MailEventRow(T0 + 20, EventType.COMPLAINED, "resend", "news.example.com", c.id),
    ]


async def test_marketing_sends_are_the_deliveries_of_a_category(store: Store, wall: Wall) -> None:
    """The caps' seed: (recipient, delivered_at, message id) of delivered mail of the
    category, since a time."""
    (ann,) = await deliver(store, mail(1, to="ann@example.org"))
    wall.now = T0 + 60
    bob, bob_tx, _ = await deliver(
        store, mail(2), mail(3, category=TRANSACTIONAL), NewMessage("email", {})
    )
    await store.submit([mail(4)])  # queued, not delivered
    assert await store.marketing_sends(category=MARKETING, since=T0) == [
        ("ann@example.org", T0, ann.id),
        (BOB, T0 + 60, bob.id),
    ]
    assert await store.marketing_sends(category=MARKETING, since=T0 + 1) == [(BOB, T0 + 60, bob.id)]
    assert await store.marketing_sends(category=TRANSACTIONAL, since=T0) == [
        (BOB, T0 + 60, bob_tx.id)
    ]


async def test_the_funnel_counts_sends_acceptances_and_events(store: Store, wall: Wall) -> None:
    """Per integration and sending domain: submitted since, delivered, and each event's count."""
    wall.now = T0 - DAY
    await deliver(store, mail(0), provider_ids=["re_old"])  # before since: not counted
    wall.now = T0
    await deliver(store, mail(1), mail(2), mail(3), provider_ids=["re_1", "re_2", "re_3"])
    await deliver(store, mail(4, domain="shop.example.com"), provider_ids=["mg_4"], via="mailgun")
    await store.submit([mail(5), NewMessage("email", {})])  # queued: its target, no domain
    await kept(
        store,
        event("a", provider_id="re_1"),
        event("b", provider_id="re_2"),
        event("c", EventType.OPENED, provider_id="re_1"),
        event("d", EventType.OPENED, provider_id="re_1"),
        event("e", EventType.COMPLAINED, provider_id="re_2"),
        event("f", EventType.HARD_BOUNCE, provider_id="mg_4", source="mailgun"),
        event("g", provider_id="re_old"),
    )
    news = FunnelRow(
        "resend", "news.example.com", 3, 3, {"delivered": 2, "opened": 2, "complained": 1}
    )
    assert await store.funnel(since=T0) == [
        FunnelRow("email", "news.example.com", 1, 0, {}),
        FunnelRow("mailgun", "shop.example.com", 1, 1, {"hard_bounce": 1}),
        news,
    ]
    assert await store.funnel(since=T0, domain="news.example.com") == [
        FunnelRow("email", "news.example.com", 1, 0, {}),
        news,
    ]
    assert await store.funnel(since=T0 + 1) == []


# -- both stores alike, whatever the order of commits -----------------------------------------

_ids = st.sampled_from(["a", "b", "c", "d"])
_batches = st.lists(
    st.lists(st.tuples(st.sampled_from(["resend", "mailgun"]), _ids), max_size=5), max_size=5
)
_example = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=_batches)
async def test_each_event_is_new_exactly_once_on_either_store(
    tmp_path: Path, batches: list[list[tuple[str, str]]]
) -> None:
    """Any sequence of batches: an event is new at its first commit only, on both stores."""
    expected: list[list[bool]] = []
    seen: set[tuple[str, str]] = set()
    for batch in batches:
        expected.append([])
        for key in batch:
            expected[-1].append(key not in seen)
            seen.add(key)
    async with _both(tmp_path / f"e{next(_example)}") as stores:
        for found in [await _commit_all(s, batches) for s in stores]:
            assert found == expected


async def _commit_all(store: Store, batches: list[list[tuple[str, str]]]) -> list[list[bool]]:
    answers = []
    for batch in batches:
        records = [EventRecord(MatchedEvent(event(i, source=src), None, False)) for src, i in batch]
        answers.append(await store.commit_events(records))
    return answers


@asynccontextmanager
async def _both(folder: Path) -> AsyncIterator[tuple[Store, Store]]:
    """A fresh store of each kind (the SQLite one makes its folder)."""
    async with trio_asyncio.open_loop(), SqliteStore.open(folder / "rb.db", clock=Wall()) as db:
        yield MemoryStore(Wall()), db


# -- SQLite files -----------------------------------------------------------------------------


def _version_5_file(db: Path) -> None:
    """A file as the first five migrations left it: a queued message, a delivered one, an alert."""
    conn = sqlite3.connect(db)
    for number, script in enumerate(MIGRATIONS[:5], 1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.executemany(
        "INSERT INTO messages (target, priority, payload, idempotency_key, status,"
        " next_attempt_at, created_at, updated_at, provider_id, delivered_at, integration)"
        " VALUES ('email', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ('{"n": 1}', "k1", "queued", T0, T0, T0, None, None, None),
            ('{"n": 2}', "k2", "delivered", T0, T0, T0, "<m2@mg.example.com>", T0, "mailgun"),
        ],
    )
    conn.execute(
        "INSERT INTO alerts (key, severity, summary, opened_at, chain, escalated_at, level,"
        " sent, last_sent_at, external) VALUES ('k', 'critical', 's', 1, '[]', 1, 0, '[]', 1, 0)"
    )
    conn.commit()
    conn.close()


async def test_a_version_5_file_migrates_keeping_its_rows(tmp_path: Path) -> None:
    """Migration 6 adds the columns and tables; messages, events and alerts of a v5 file stay."""
    db = tmp_path / "rb.db"
    _version_5_file(db)
    async with trio_asyncio.open_loop(), SqliteStore.open(db, clock=Wall()) as store:
        assert [e.kind for e in await store.events()] == ["submitted", "submitted"]
        assert len(await store.open_alerts()) == 1
        (claimed,) = await store.claim("email", 10)
        assert (claimed.payload, claimed.category, claimed.recipient) == ({"n": 1}, None, None)
        (m,) = await store.match_events(
            [event("e1", provider_id="m2@mg.example.com")], soft_since=0
        )
        assert m.message is not None and (m.message.message_id, m.message.category) == (2, None)
        assert await store.commit_events([EventRecord(m)]) == [True]
        (a,) = await store.submit([mail(3, not_before=T0 + 5)])
        (submitted,) = await store.events(message_id=a.id)
        assert submitted.detail is not None and submitted.detail["not_before"] == T0 + 5
        assert await store.held_keys() == {}
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
    assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 3
    conn.close()


async def test_a_hold_and_a_schedule_outlive_the_process(tmp_path: Path) -> None:
    """In the file, not in memory: after a restart the held wait and the scheduled come due."""
    db = tmp_path / "rb.db"
    wall = Wall()
    async with trio_asyncio.open_loop(), SqliteStore.open(db, clock=wall) as store:
        await hold(store, 2)
        await store.submit([mail(7, not_before=T0 + 3600)])
    async with trio_asyncio.open_loop(), SqliteStore.open(db, clock=wall) as store:
        assert store.counters.of("email").queued[Priority.NORMAL] == 3
        assert await store.held_keys() == {HOLD: 2}
        assert await store.next_due("email") == T0 + 3600
        wall.now = T0 + 3600
        assert [c.payload for c in await store.claim("email", 10)] == [{"n": 7}]
        assert await store.release_held(HOLD, at=T0, by="operator") == 2
        assert len(await store.claim("email", 10)) == 2


async def test_a_match_the_store_cannot_read_fails_alone(tmp_path: Path) -> None:
    """Asked with others, one bad ask hears why; the asks beside it are answered."""
    async with trio_asyncio.open_loop(), SqliteStore.open(tmp_path / "rb.db", clock=Wall()) as db:
        answers: list[object] = []

        async def ask(soft_since: Any) -> None:
            try:
                answers.append(
                    await db.match_events([event("e1", address=BOB)], soft_since=soft_since)
                )
            except StoreError as exc:
                answers.append(exc)

        async with trio.open_nursery() as nursery:
            for soft_since in (0.0, object(), 0.0):  # an object SQLite cannot bind
                nursery.start_soon(ask, soft_since)
        assert sorted(type(a).__name__ for a in answers) == ["StoreError", "list", "list"]
        assert (await db.match_events([event("e2")], soft_since=0))[0].seen is False


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT id FROM messages WHERE provider_id IN ('a', '<a>')", "messages_provider_id"),
        (
            "SELECT COUNT(*) FROM mail_events WHERE address = 'a' AND event = 'soft_bounce'"
            " AND at >= 0",
            "mail_events_address",
        ),
        ("SELECT 1 FROM mail_events WHERE source = 'a' AND event_id = 'b'", "autoindex"),
        ("SELECT id FROM suppressions WHERE address = 'a'", "suppressions_address"),
        ("SELECT at FROM mail_events WHERE at >= 0 ORDER BY at, id", "mail_events_at"),
    ],
)
async def test_the_deliverability_reads_use_their_indexes(
    tmp_path: Path, sql: str, index: str
) -> None:
    """Matching, counting and listing each use an index, not a scan of the table."""
    async with trio_asyncio.open_loop(), SqliteStore.open(tmp_path / "rb.db", clock=Wall()) as db:
        plan = str(await db.query(f"EXPLAIN QUERY PLAN {sql}"))
        assert index in plan, plan


async def test_the_message_holding_a_key_is_found_by_it(store: Store) -> None:
    """``holding_key``: the id of the message that holds a key, or None for a key never used."""
    (a,) = await store.submit([mail(1, idempotency_key="held-key")])
    assert await store.holding_key("held-key") == a.id
    assert await store.holding_key("never-used") is None
