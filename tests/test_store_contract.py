"""One contract for every store: each test runs on the in-memory fake, on SQLite (a file)
and on PostgreSQL (a throwaway cluster).

The SQLite store is the reference; the in-memory store must behave the same
wherever a caller can tell. A wall clock the tests set stands in for time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio_asyncio

from ringbearer._delivery import Priority
from ringbearer._errors import ErrorCode, RequestError
from ringbearer.store import (
    Attempt,
    BreakerRecord,
    Claimed,
    DeadLetter,
    Event,
    KeyReused,
    MemoryStore,
    MessageRecord,
    NewMessage,
    OverrideRecord,
    Settle,
    SettleKind,
    SqliteStore,
    Store,
)
from ringbearer.store._pg._store import PostgresStore

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC


@attrs.define
class Wall:
    """A wall clock the test moves by hand."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Heard:
    """A listener that notes what it is told, and the queue depth when told."""

    store: Store | None = None
    submitted_: list[tuple[set[str], dict[str, int]]] = attrs.Factory(list)
    settled_: list[list[int]] = attrs.Factory(list)

    def submitted(self, targets: set[str]) -> None:
        assert self.store is not None
        depth = {t: self.store.counters.of(t).total_queued for t in targets}
        self.submitted_.append((set(targets), depth))

    def settled(self, settles: Sequence[Settle]) -> None:
        self.settled_.append([s.message_id for s in settles])


@pytest.fixture
def wall() -> Wall:
    return Wall()


# PostgreSQL runs on a throwaway cluster (tests/conftest.py); without PostgreSQL's
# programs its cases skip, saying why.
STORES = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path, wall: Wall) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(wall)
        return
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        async with PostgresStore.open(url, clock=wall, node="node-a") as pg:
            yield pg
        return
    async with trio_asyncio.open_loop(), SqliteStore.open(tmp_path / "rb.db", clock=wall) as db:
        yield db


@pytest.fixture
def heard(store: Store) -> Heard:
    listener = Heard(store)
    store.listener = listener
    return listener


def msg(n: int = 0, target: str = "email", **kw: Any) -> NewMessage:
    return NewMessage(target, {"n": n}, **kw)


def settle(c: Claimed, kind: SettleKind, **kw: Any) -> Settle:
    fields: dict[str, Any] = {
        "message_id": c.id,
        "target": c.target,
        "kind": kind,
        "integration": "resend",
        "attempts": c.attempts + 1,
        "next_attempt_at": T0,
        "priority": c.priority,
        "created_at": c.created_at,
    }
    fields.update(kw)
    return Settle(**fields)


async def settled(store: Store, *settles: Settle) -> None:
    await store.record(settles)
    await store.flush()


async def dead(store: Store, target: str, count: int, reason: str = "422") -> list[int]:
    """Submit ``count`` messages to ``target`` and dead-letter each after one attempt."""
    await store.submit([msg(n, target, priority=Priority.BULK) for n in range(count)])
    claimed = await store.claim(target, count)
    attempt = Attempt("resend", T0, 0.01, "permanent", status=422)
    await settled(
        store,
        *[settle(c, SettleKind.DEAD_LETTERED, reason=reason, attempt=attempt) for c in claimed],
    )
    return [c.id for c in claimed]


def kinds(events: Sequence[Event]) -> list[str]:
    return [e.kind for e in events]


def test_the_store_package_exports_each_role_and_store_is_all_of_them() -> None:
    """Callers import every role protocol from ``ringbearer.store``; ``Store`` combines them."""
    import ringbearer.store

    roles = [
        "Intake",
        "Dispatch",
        "Settling",
        "Controls",
        "AuditLog",
        "Queries",
        "DeadLetterOps",
        "Lifecycle",
    ]
    exported = [getattr(ringbearer.store, name) for name in roles]
    assert all(role in Store.__mro__ for role in exported)
    assert ringbearer.store.MessageRecord is MessageRecord
    assert issubclass(ringbearer.store.KeyReused, RequestError)


# -- intake -----------------------------------------------------------------------------------


async def test_submit_acknowledges_each_message_with_a_new_id_and_key(
    store: Store, heard: Heard
) -> None:
    """New messages get ascending ids and distinct keys, are queued, counted and heard of."""
    accepted = await store.submit([msg(n) for n in range(3)] + [msg(9, "slack")])
    assert [a.id for a in accepted] == [1, 2, 3, 4]
    assert len({a.idempotency_key for a in accepted}) == 4
    assert not any(a.duplicate for a in accepted)
    assert store.counters.of("email").queued[Priority.NORMAL] == 3
    assert heard.submitted_ == [({"email", "slack"}, {"email": 3, "slack": 1})]
    assert await store.states([1, 4, 99]) == {1: "queued", 4: "queued"}
    assert await store.submit([]) == []
    assert len(heard.submitted_) == 1  # nothing submitted, nothing heard


async def test_submit_writes_a_submitted_event(store: Store) -> None:
    """Each new message's first audit event names its target, key and priority."""
    (a,) = await store.submit([msg(priority=Priority.CRITICAL, idempotency_key="k1")])
    (event,) = await store.events(message_id=a.id)
    assert (event.kind, event.at, event.integration) == ("submitted", T0, None)
    assert event.detail == {"target": "email", "key": "k1", "priority": "critical"}


async def test_a_repeated_key_names_the_earlier_message(store: Store, heard: Heard) -> None:
    """The same key, target and payload again is a duplicate of the earlier message, once."""
    first = await store.submit(
        [
            NewMessage("email", {"a": 1, "b": [1, 2]}, idempotency_key="k"),
            NewMessage("email", {"b": [1, 2], "a": 1}, idempotency_key="k"),  # same, reordered
        ]
    )
    again = await store.submit([NewMessage("email", {"b": [1, 2], "a": 1}, idempotency_key="k")])
    assert [a.duplicate for a in first] == [False, True]
    assert first[0].id == first[1].id == again[0].id and again[0].duplicate
    assert again[0].idempotency_key == "k"
    assert store.counters.of("email").total_queued == 1
    assert len(heard.submitted_) == 1  # a submit of duplicates only commits nothing new


async def test_a_key_reused_for_another_target_is_refused(store: Store, heard: Heard) -> None:
    """A key held by a message to another target refuses the whole submit; nothing is kept."""
    (held,) = await store.submit([NewMessage("email", {}, idempotency_key="k")])
    with pytest.raises(KeyReused) as refused:
        await store.submit([msg(1), msg(2), NewMessage("slack", {}, idempotency_key="k")])
    assert (refused.value.index, refused.value.key, refused.value.earlier_id) == (2, "k", held.id)
    assert await store.states([2, 3, 4]) == {}
    assert store.counters.of("email").total_queued == 1
    assert store.counters.of("slack").total_queued == 0
    assert len(heard.submitted_) == 1
    assert kinds(await store.events()) == ["submitted"]
    (later,) = await store.submit([msg(3)])
    assert later.id == held.id + 1  # the refused submit took no ids


async def test_a_key_reused_for_another_payload_is_refused(store: Store) -> None:
    """Same key and target with a different payload is refused, even within one submit."""
    (held,) = await store.submit([NewMessage("email", {"to": "a"}, idempotency_key="k")])
    with pytest.raises(KeyReused) as refused:
        await store.submit([NewMessage("email", {"to": "b"}, idempotency_key="k")])
    assert (refused.value.index, refused.value.earlier_id) == (0, held.id)
    with pytest.raises(KeyReused) as within:
        await store.submit(
            [
                NewMessage("email", {"to": "c"}, idempotency_key="j"),
                NewMessage("email", {"to": "d"}, idempotency_key="j"),
            ]
        )
    assert (within.value.index, within.value.earlier_id, within.value.earlier_index) == (1, None, 0)
    assert "messages[0] of the same submit" in str(within.value)
    assert await store.states([held.id + 1, held.id + 2]) == {}  # messages[0] was not kept
    assert store.counters.of("email").total_queued == 1


async def test_key_reused_is_a_request_error_naming_index_key_and_earlier_message(
    store: Store,
) -> None:
    """The refusal is a ``key_reused`` RequestError whose message says what to fix."""
    (held,) = await store.submit([NewMessage("email", {}, idempotency_key="order-7")])
    with pytest.raises(RequestError) as refused:
        await store.submit(
            [msg(n) for n in range(3)] + [NewMessage("crm", {}, Priority.BULK, "order-7")]
        )
    assert refused.value.code is ErrorCode.KEY_REUSED
    text = str(refused.value)
    assert "messages[3]" in text and "'order-7'" in text and f"message {held.id}" in text


# -- dispatch -----------------------------------------------------------------------------------


async def test_claim_takes_priority_then_deadline_then_id(store: Store) -> None:
    """Critical before normal before bulk; within one, deadlines (nearest) first, then by id."""
    await store.submit([NewMessage("email", {"p": "bulk"}, Priority.BULK)])
    await store.submit([NewMessage("email", {"p": "normal"}, Priority.NORMAL)])
    await store.submit([NewMessage("email", {"p": "crit"}, Priority.CRITICAL)])
    claimed = await store.claim("email", 2)
    assert [c.payload["p"] for c in claimed] == ["crit", "normal"]
    rest = await store.claim("email", 10)
    assert [c.payload["p"] for c in rest] == ["bulk"]
    assert await store.claim("email", 10) == []
    assert store.counters.of("email").inflight == 3
    await store.submit(
        [
            msg(1, "crm"),
            msg(2, "crm", deliver_by=T0 + 3600),
            msg(3, "crm", deliver_by=T0 + 60),
            msg(4, "crm", priority=Priority.CRITICAL),
            msg(5, "crm"),
            msg(6, "crm", deliver_by=T0 + 60),
        ]
    )
    claimed = await store.claim("crm", 10)
    assert [c.payload["n"] for c in claimed] == [4, 3, 6, 2, 1, 5]
    assert claimed[1].deliver_by == T0 + 60 and claimed[4].deliver_by is None


async def test_a_claim_carries_the_message(store: Store, wall: Wall) -> None:
    """A claimed message carries its payload, key, priority, submit time and no progress."""
    (a,) = await store.submit([NewMessage("email", {"to": "x"}, Priority.BULK, "k")])
    wall.now += 5
    (c,) = await store.claim("email", 1)
    assert c == Claimed(a.id, "email", Priority.BULK, {"to": "x"}, "k", 0, T0, 0, 0, {}, None)
    assert await store.states([a.id]) == {a.id: "inflight"}


async def test_claim_takes_only_due_messages_in_its_span(store: Store, wall: Wall) -> None:
    """A span bounds the priorities; a message due later waits; next_due says when."""
    await store.submit([msg(1, priority=Priority.BULK), msg(2, priority=Priority.CRITICAL)])
    assert await store.next_due("email") == T0
    (c,) = await store.claim("email", 10, (Priority.BULK, Priority.BULK))
    assert c.payload == {"n": 1}
    (crit,) = await store.claim("email", 10, (Priority.CRITICAL, Priority.NORMAL))
    await settled(store, settle(crit, SettleKind.RETRIED, next_attempt_at=T0 + 60))
    assert await store.next_due("email") == T0 + 60
    assert await store.next_due("slack") is None
    assert await store.claim("email", 10) == []  # not due yet
    wall.now += 60
    (again,) = await store.claim("email", 10)
    assert (again.id, again.attempts) == (crit.id, 1)


async def test_each_settle_kind_sets_status_and_counters(store: Store, heard: Heard) -> None:
    """Delivered and dead-lettered leave the queue; retried, failed over, returned rejoin it."""
    await store.submit([msg(n, priority=Priority.BULK) for n in range(5)])
    claimed = await store.claim("email", 5)
    assert store.counters.of("email").inflight == 5
    ids = [c.id for c in claimed]
    settles = [
        settle(claimed[0], SettleKind.DELIVERED, provider_id="re_1"),
        settle(claimed[1], SettleKind.RETRIED, next_attempt_at=T0 + 60, reason="503"),
        settle(claimed[2], SettleKind.FAILED_OVER, route_index=1, reason="timeout"),
        settle(claimed[3], SettleKind.DEAD_LETTERED, reason="422 bad from"),
        settle(claimed[4], SettleKind.RETURNED, attempts=0),
    ]
    await settled(store, *settles)
    assert await store.states(ids) == dict(
        zip(ids, ["delivered", "queued", "queued", "dead", "queued"], strict=True)
    )
    assert store.counters.of("email").inflight == 0
    assert store.counters.of("email").queued[Priority.BULK] == 3
    assert heard.settled_ == [ids]
    for c, s in zip(claimed, settles, strict=True):
        (latest,) = await store.events(message_id=c.id, limit=1)
        assert (latest.kind, latest.integration) == (s.kind.value, "resend")
        assert latest.detail is not None and latest.detail["reason"] == s.reason
    (c,) = await store.claim("email", 1)
    assert (c.id, c.route_index) == (ids[2], 1)  # failed over: due now, on the next member


async def test_a_settle_with_an_attempt_is_audited_as_the_triggers_write_it(store: Store) -> None:
    """An attempt is an ``attempted`` event before the settle's own, with the same details."""
    (a,) = await store.submit([msg()])
    (c,) = await store.claim("email", 1)
    attempt = Attempt("resend", T0 - 1, 0.0123456789, "delivered", status=200)
    await settled(store, settle(c, SettleKind.DELIVERED, provider_id="re_1", attempt=attempt))
    events = await store.events(message_id=a.id)
    assert kinds(events) == ["delivered", "attempted", "submitted"]
    delivered, attempted, _ = events
    assert (attempted.at, attempted.integration) == (T0 - 1, "resend")
    assert attempted.detail == {
        "attempt": 1,
        "outcome": "delivered",
        "status": 200,
        "seconds": 0.012346,
        "detail": None,
    }
    assert (delivered.at, delivered.detail) == (
        T0,
        {
            "attempts": 1,
            "status": "delivered",
            "reason": None,
            "provider_id": "re_1",
            "next_attempt_at": T0,
            "route_index": 0,
        },
    )


async def test_message_returns_the_stored_record(store: Store, wall: Wall) -> None:
    """``message`` gives the message's fields as stored, the priority as its label."""
    (a,) = await store.submit([NewMessage("email", {}, Priority.CRITICAL, "k")])
    expected = MessageRecord(
        a.id, "email", None, "critical", "k", "queued", 0, T0, None, None, T0, T0, None
    )
    assert await store.message(a.id) == expected
    (c,) = await store.claim("email", 1)
    wall.now += 10
    await settled(store, settle(c, SettleKind.DELIVERED, provider_id="re_1"))
    assert await store.message(a.id) == attrs.evolve(
        expected,
        integration="resend",
        status="delivered",
        attempts=1,
        provider_id="re_1",
        updated_at=T0 + 10,
        delivered_at=T0 + 10,
    )
    assert await store.message(999) is None


async def test_recover_inflight_queues_claimed_work_as_an_attempt(store: Store, wall: Wall) -> None:
    """Messages claimed but never settled are queued again, each counted as an attempt."""
    await store.submit([msg(n) for n in range(3)])
    taken = await store.claim("email", 2)
    wall.now += 1
    assert await store.recover_inflight() == 2
    assert store.counters.of("email").total_queued == 3
    assert store.counters.of("email").inflight == 0
    claimed = await store.claim("email", 3)
    assert sorted(c.attempts for c in claimed) == [0, 1, 1]  # interrupted: ambiguous
    assert sorted(c.member_attempts for c in claimed) == [0, 1, 1]
    recovered = await store.events(kinds=["recovered"])
    assert sorted(e.message_id or 0 for e in recovered) == sorted(c.id for c in taken)
    assert {e.at for e in recovered} == {T0 + 1}
    assert await store.recover_inflight() == 3


async def test_a_parked_claim_is_served_by_the_next_submit(store: Store, heard: Heard) -> None:
    """An idle dispatcher's parked claim takes its target's fresh messages, once."""
    handed: list[list[int]] = []
    store.park_claim("email", 2, lambda claimed: handed.append([c.id for c in claimed]))
    await store.submit([msg(target="slack")])  # another target: not served
    assert handed == []
    accepted = await store.submit([msg(n) for n in range(3)])
    assert handed == [[a.id for a in accepted[:2]]]
    assert store.counters.of("email").inflight == 2
    assert store.counters.of("email").total_queued == 1
    await store.submit([msg(4)])
    assert len(handed) == 1  # a parked claim is served once
    assert heard.submitted_[1] == ({"email"}, {"email": 1})  # heard after the claim


async def test_a_parked_claim_waits_for_work_it_may_take(store: Store) -> None:
    """A submit the parked span excludes leaves it parked; unpark withdraws it."""
    handed: list[list[int]] = []
    critical = (Priority.CRITICAL, Priority.CRITICAL)
    store.park_claim("email", 5, lambda claimed: handed.append([c.id for c in claimed]), critical)
    await store.submit([msg(1, priority=Priority.BULK)])
    assert handed == []
    (crit,) = await store.submit([msg(2, priority=Priority.CRITICAL)])
    assert handed == [[crit.id]]
    store.park_claim("email", 5, lambda claimed: handed.append([c.id for c in claimed]))
    store.unpark_claim("email")
    await store.submit([msg(3)])
    assert len(handed) == 1


async def test_the_listener_hears_of_what_each_commit_made_durable(
    store: Store, heard: Heard
) -> None:
    """Submits and replays are heard as targets, settles as themselves, after the commit."""
    await store.submit([msg(1), msg(2, "slack")])
    assert heard.submitted_ == [({"email", "slack"}, {"email": 1, "slack": 1})]
    (c,) = await store.claim("email", 1)
    await store.record([])
    await settled(store, settle(c, SettleKind.DEAD_LETTERED, reason="422"))
    assert heard.settled_ == [[c.id]]
    await store.replay_dead([c.id])
    assert heard.submitted_[-1] == ({"email"}, {"email": 1})
    assert await store.replay_dead([c.id]) == []
    assert len(heard.submitted_) == 2  # nothing replayed, nothing heard


# -- settling: progress ---------------------------------------------------------------------


async def test_saved_progress_reaches_the_next_claim(store: Store, wall: Wall) -> None:
    """A multi-step delivery's saved steps come back with the message, for each member."""
    (a,) = await store.submit([msg(target="crm")])
    (c,) = await store.claim("crm", 1)
    await store.save_progress(a.id, "tave", {"contact": "01HX"})
    await store.save_progress(a.id, "tave", {"contact": "01HX", "job": "01HY"})
    await store.save_progress(a.id, "other", {"step": 1})
    await settled(store, settle(c, SettleKind.RETRIED, next_attempt_at=T0))
    (again,) = await store.claim("crm", 1)
    assert again.progress == {"tave": {"contact": "01HX", "job": "01HY"}, "other": {"step": 1}}
    steps = await store.events(message_id=a.id, kinds=["progressed"])
    assert [(e.integration, e.detail) for e in steps] == [
        ("other", {"progress": {"step": 1}}),
        ("tave", {"progress": {"contact": "01HX", "job": "01HY"}}),
        ("tave", {"progress": {"contact": "01HX"}}),
    ]


# -- controls and the audit log ------------------------------------------------------------


async def test_breakers_and_pauses_are_kept(store: Store) -> None:
    """A saved breaker state is read back after a flush; pauses are set and cleared."""
    store.save_breaker(BreakerRecord("resend", "open", False, T0 + 30))
    store.save_breaker(BreakerRecord("mailgun", "closed", True, 0.0))
    store.save_breaker(BreakerRecord("resend", "half_open", False, T0 + 60))
    await store.flush()
    assert await store.breakers() == {
        "resend": BreakerRecord("resend", "half_open", False, T0 + 60),
        "mailgun": BreakerRecord("mailgun", "closed", True, 0.0),
    }
    await store.set_paused("email", True)
    await store.set_paused("slack", True)
    await store.set_paused("slack", False)
    await store.set_paused("crm", False)
    assert await store.paused() == {"email"}


async def test_the_wedding_day_override_is_kept_replaced_and_cleared(store: Store) -> None:
    """None at first; the latest override set is the one kept, with or without an end;
    clearing it leaves none (the calendar rules again)."""
    assert await store.mode_override() is None
    await store.set_mode_override(OverrideRecord(True, T0 + 3600, T0))
    assert await store.mode_override() == OverrideRecord(True, T0 + 3600, T0)
    await store.set_mode_override(OverrideRecord(False, None, T0 + 5))
    assert await store.mode_override() == OverrideRecord(False, None, T0 + 5)
    await store.set_mode_override(None)
    assert await store.mode_override() is None


async def test_attempt_times_are_the_latest_attempts_of_one_integration(store: Store) -> None:
    """Attempt start times of one integration since a time, latest first, at most ``limit``."""
    await store.submit([msg(n) for n in range(4)])
    claimed = await store.claim("email", 4)
    await settled(
        store,
        *[
            settle(
                c,
                SettleKind.RETRIED,
                integration="mailgun" if n == 3 else "resend",
                attempt=Attempt("resend", T0 - 10 * n, 0.1, "retry"),
            )
            for n, c in enumerate(claimed)
        ],
    )
    assert await store.attempt_times("resend", since=T0 - 100, limit=10) == [T0, T0 - 10, T0 - 20]
    assert await store.attempt_times("resend", since=T0 - 15, limit=10) == [T0, T0 - 10]
    assert await store.attempt_times("resend", since=0, limit=1) == [T0]
    assert await store.attempt_times("mailgun", since=0, limit=10) == [T0 - 30]


async def test_appended_events_are_in_the_log_after_a_flush(store: Store) -> None:
    """An appended event is kept as given, with an id, once the store has flushed."""
    store.append_event(Event("paused", T0 - 5, None, "resend", {"by": "alice"}))
    await store.flush()
    (event,) = await store.events()
    assert event.id is not None
    assert attrs.evolve(event, id=None) == Event("paused", T0 - 5, None, "resend", {"by": "alice"})


async def test_events_are_newest_first_and_filtered(store: Store, wall: Wall) -> None:
    """since, message_id, kinds, before (an id cursor) and limit select; newest comes first."""
    for n in range(3):
        store.append_event(Event("paused" if n % 2 else "resumed", T0 + n, None, f"i{n}"))
        await store.flush()
    wall.now = T0 + 3
    (a,) = await store.submit([msg()])
    everything = await store.events()
    assert [e.integration for e in everything] == [None, "i2", "i1", "i0"]
    ids = [e.id or 0 for e in everything]
    assert ids == sorted(ids, reverse=True)
    assert [e.at for e in await store.events(since=T0 + 1)] == [T0 + 3, T0 + 2, T0 + 1]
    assert kinds(await store.events(message_id=a.id)) == ["submitted"]
    assert [e.integration for e in await store.events(kinds=["resumed"])] == ["i2", "i0"]
    assert await store.events(kinds=["resumed", "submitted"], limit=2) == everything[:2]
    assert await store.events(before=ids[1]) == everything[2:]
    assert await store.events(before=ids[1], limit=1) == everything[2:3]
    assert await store.events(before=ids[-1]) == []


# -- queries for the daemon's duties ------------------------------------------------------------


async def test_states_deadlines_and_oldest_queued(store: Store, wall: Wall) -> None:
    """Deadlines of open messages before a time, nearest first; oldest queued by priority."""
    await store.submit([msg(1, deliver_by=T0 + 50), msg(2, "crm", deliver_by=T0 + 10)])
    wall.now += 5
    await store.submit([msg(3, deliver_by=T0 + 50), msg(4, priority=Priority.BULK)])
    assert await store.deadlines_before(T0 + 60) == [
        (2, "crm", T0 + 10),
        (1, "email", T0 + 50),
        (3, "email", T0 + 50),
    ]
    assert await store.deadlines_before(T0 + 50) == [(2, "crm", T0 + 10)]
    assert await store.oldest_queued() == {
        ("email", Priority.NORMAL): T0,
        ("crm", Priority.NORMAL): T0,
        ("email", Priority.BULK): T0 + 5,
    }
    (c,) = await store.claim("crm", 1)
    assert await store.deadlines_before(T0 + 60) == [
        (2, "crm", T0 + 10),
        (1, "email", T0 + 50),
        (3, "email", T0 + 50),
    ]
    await settled(store, settle(c, SettleKind.DELIVERED))
    assert await store.deadlines_before(T0 + 60) == [(1, "email", T0 + 50), (3, "email", T0 + 50)]
    assert ("crm", Priority.NORMAL) not in await store.oldest_queued()
    assert await store.states([2, 4]) == {2: "delivered", 4: "queued"}
    assert await store.states([]) == {}


async def test_statistics_show_nothing_pending_after_a_flush(store: Store) -> None:
    """After a flush no operation waits for a commit."""
    await store.submit([msg()])
    await store.flush()
    assert store.statistics().pending_ops == 0


# -- dead letters ------------------------------------------------------------------------------


async def test_dead_letters_are_newest_first_by_target_with_a_cursor(store: Store) -> None:
    """Dead letters list by descending id, only a target's when asked, older than ``before``."""
    email = await dead(store, "email", 3)
    slack = await dead(store, "slack", 2)
    listed = await store.dead_letters()
    assert [d.message_id for d in listed] == [*reversed(slack), *reversed(email)]
    assert [d.message_id for d in await store.dead_letters(target="email")] == email[::-1]
    assert [d.message_id for d in await store.dead_letters(before=slack[0])] == email[::-1]
    assert [d.message_id for d in await store.dead_letters(target="slack", limit=1)] == [slack[1]]
    assert await store.dead_letters(target="crm") == []


async def test_a_dead_letter_says_why_when_and_after_what(store: Store, wall: Wall) -> None:
    """``dead_letter`` gives reason, time, attempts and payload; None if not a dead letter."""
    await store.submit([msg(1), msg(2)])
    c1, c2 = await store.claim("email", 2)
    wall.now += 7
    await settled(
        store,
        settle(c1, SettleKind.DEAD_LETTERED, reason="422 bad from", attempts=3),
        settle(c2, SettleKind.DELIVERED),
    )
    letter = DeadLetter(c1.id, "email", "resend", "422 bad from", T0 + 7, 3, {"n": 1})
    assert await store.dead_letter(c1.id) == letter
    assert await store.dead_letters() == [letter]
    assert await store.dead_letter(c2.id) is None
    assert await store.dead_letter(999) is None


async def test_count_dead_selects_as_replay_and_purge_do(store: Store, wall: Wall) -> None:
    """Counts by target, above an id, and dead-lettered before a time."""
    old = await dead(store, "email", 2)
    wall.now += 3600
    recent = await dead(store, "email", 1) + await dead(store, "slack", 1)
    assert await store.count_dead() == 4
    assert await store.count_dead(target="email") == 3
    assert await store.count_dead(after=old[1]) == 2
    assert await store.count_dead(dead_before=T0 + 1800) == 2
    assert await store.count_dead(target="slack", dead_before=T0 + 1800) == 0
    assert await store.count_dead(target="slack", after=recent[1]) == 0


async def test_replay_queues_dead_letters_again_as_fresh_work(store: Store, wall: Wall) -> None:
    """Replay resets attempts and route, keeps the key, audits ``by``; skips the rest."""
    ids = await dead(store, "email", 4)
    (fine,) = await store.submit([msg(9, "slack")])
    wall.now += 60
    assert await store.replay_dead([ids[0], fine.id, 999], by="alice") == [ids[0]]
    assert store.counters.of("email").queued[Priority.BULK] == 1
    (row,) = await store.claim("email", 10)
    assert (row.id, row.attempts, row.route_index, row.member_attempts) == (ids[0], 0, 0, 0)
    replayed = await store.events(message_id=ids[0], kinds=["replayed", "attempted"])
    assert kinds(replayed) == ["replayed", "attempted"]  # no extra 'attempted'
    assert (replayed[0].at, replayed[0].integration) == (T0 + 60, "resend")
    assert replayed[0].detail == {"by": "alice", "target": "email", "reason": "422", "attempts": 1}
    assert await store.replay_dead(after=ids[1], limit=1) == [ids[2]]
    assert await store.replay_dead(target="slack") == []
    assert await store.replay_dead() == [ids[1], ids[3]]
    assert await store.count_dead() == 0


async def test_purge_deletes_dead_letters_and_keeps_their_history(store: Store, wall: Wall) -> None:
    """Purge removes the messages (ids and key), audits ``by``; the log keeps their past."""
    ids = await dead(store, "email", 4)
    record = await store.message(ids[2])
    assert record is not None
    wall.now += 3600
    assert await store.purge_dead(dead_before=T0 - 1) == []
    assert await store.purge_dead(target="slack") == []
    assert await store.purge_dead([ids[0], 999], by="carol") == [ids[0]]
    assert await store.purge_dead(target="email", after=ids[1], limit=1, by="bob") == [ids[2]]
    assert await store.dead_letter(ids[2]) is None and await store.message(ids[2]) is None
    assert [d.message_id for d in await store.dead_letters(target="email")] == [ids[3], ids[1]]
    history = await store.events(message_id=ids[2])
    assert kinds(history) == ["purged", "dead_lettered", "attempted", "submitted"]
    assert history[0].detail == {"by": "bob", "target": "email", "reason": "422", "attempts": 1}
    assert history[0].at == T0 + 3600
    assert store.counters.of("email").queued[Priority.BULK] == 0
    (again,) = await store.submit(
        [NewMessage("slack", {"other": True}, idempotency_key=record.idempotency_key)]
    )
    assert not again.duplicate and again.id > ids[3]  # a purged id is never reused; its key is free
    assert await store.purge_dead(dead_before=T0 + 1) == [ids[1], ids[3]]
