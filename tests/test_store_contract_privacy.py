"""The privacy role of the contract: on the in-memory fake and on SQLite, the same.

Messages found by their subjects, erasure ending queued and dead ones and
wiping every payload not in flight (in flight ones are left for their settle),
erasure jobs and consent kept, retention shredding old payloads, tokens kept.
At the end, what only a file can show: the WAL is truncated by ``scrub``, and
an erased payload's bytes are gone from the file.
"""

from __future__ import annotations

from pathlib import Path

import trio_asyncio

from ringbearer.store import (
    ERASED_PAYLOAD,
    SHREDDED_PAYLOAD,
    ConsentRecord,
    ErasureRecord,
    NewMessage,
    SettleKind,
    SqliteStore,
    Store,
)

from .test_store_contract import T0, Wall, settle
from .test_store_contract import store as store  # the two-store fixture
from .test_store_contract import wall as wall

ANN, BOB = "s_" + "a" * 32, "s_" + "b" * 32
DAY = 86_400.0


def about(*subjects: str, n: int = 0, target: str = "email") -> NewMessage:
    return NewMessage(target, {"sealed": 1, "n": n}, idempotency_key=f"k{n}", subjects=subjects)


async def test_messages_are_found_by_each_of_their_subjects(store: Store) -> None:
    await store.submit([about(ANN, n=1), about(ANN, BOB, n=2), about(BOB, n=3), about(n=4)])
    ann = await store.subject_messages(ANN)
    assert [m.id for m in ann] == [1, 2]
    assert [m.id for m in await store.subject_messages(BOB)] == [2, 3]
    assert [m.id for m in await store.subject_messages(ANN, after=1)] == [2]
    assert [m.id for m in await store.subject_messages(BOB, limit=1)] == [2]
    assert ann[0].payload == {"sealed": 1, "n": 1} and ann[0].status == "queued"


async def test_erasure_ends_queued_and_dead_wipes_all_but_in_flight(
    store: Store, wall: Wall
) -> None:
    await store.submit([about(ANN, n=i) for i in range(1, 5)] + [about(BOB, n=9)])
    claimed = await store.claim("email", 3)  # 1, 2, 3 in flight; 4 queued
    first, second, _ = claimed
    await store.record(
        [settle(first, SettleKind.DELIVERED), settle(second, SettleKind.DEAD_LETTERED, reason="x")]
    )
    await store.flush()
    wall.now = T0 + 10
    result = await store.erase_messages(ANN, at=wall.now, job=7)
    assert (result.ended, result.wiped, result.in_flight) == (2, 3, 1)
    states = await store.states([1, 2, 3, 4, 5])
    assert states == {1: "delivered", 2: "erased", 3: "inflight", 4: "erased", 5: "queued"}
    payloads = {m.id: m.payload for m in await store.subject_messages(ANN)}
    assert payloads[1] == payloads[2] == payloads[4] == ERASED_PAYLOAD
    assert payloads[3] == {"sealed": 1, "n": 3}  # its settle comes first
    assert (await store.subject_messages(BOB))[0].payload == {"sealed": 1, "n": 9}
    assert store.counters.of("email").total_queued == 1  # only Bob's
    assert await store.erased_subjects() == {ANN}
    events = await store.events(kinds=["erased"])
    assert sorted(e.message_id or 0 for e in events) == [2, 4]
    assert all("erasure 7" in str((e.detail or {}).get("reason")) for e in events)
    again = await store.erase_messages(ANN, at=wall.now, job=7)
    assert (again.ended, again.wiped, again.in_flight) == (0, 0, 1)


async def test_erasure_jobs_are_kept_and_updated(store: Store) -> None:
    job = await store.save_erasure(ErasureRecord(ANN, "operator", T0))
    assert job.id is not None
    other = await store.save_erasure(ErasureRecord(BOB, "operator", T0))
    assert other.id != job.id
    job = await store.save_erasure(job.with_step("suppress", T0 + 1, note="n"))
    assert [j.id for j in await store.erasures(unfinished=True)] == [job.id, other.id]
    (kept,) = await store.erasures(subject=ANN)
    assert kept.done("suppress") and kept.steps["suppress"]["note"] == "n"
    await store.save_erasure(__import__("attrs").evolve(kept, finished_at=T0 + 2))
    assert [j.id for j in await store.erasures(unfinished=True)] == [other.id]
    assert len(await store.erasures()) == 2


async def test_consent_is_appended_with_an_audit_event(store: Store) -> None:
    given = await store.add_consent(ConsentRecord(ANN, "marketing", True, "signup", T0, "op"))
    await store.add_consent(ConsentRecord(BOB, "analytics", True, "signup", T0, "op"))
    await store.add_consent(ConsentRecord(ANN, "marketing", False, "unsubscribe", T0 + 1, "u"))
    assert given.id is not None
    ann = await store.consents(ANN)
    assert [(c.granted, c.source) for c in ann] == [(True, "signup"), (False, "unsubscribe")]
    assert len(await store.consents()) == 3
    (event, *_) = await store.events(kinds=["consent"])
    assert event.detail == {
        "subject": ANN, "purpose": "marketing", "granted": False, "source": "unsubscribe", "by": "u"
    }  # fmt: skip


async def test_retention_shreds_old_delivered_and_dead_payloads(store: Store, wall: Wall) -> None:
    await store.submit([about(ANN, n=i) for i in range(1, 5)])
    a, b, c, _ = await store.claim("email", 4)
    await store.record(
        [
            settle(a, SettleKind.DELIVERED),
            settle(b, SettleKind.DEAD_LETTERED, reason="no"),
            settle(c, SettleKind.RETRIED, next_attempt_at=T0 + DAY),
        ]
    )
    await store.flush()
    wall.now = T0 + 40 * DAY
    assert await store.shred_payloads(delivered_before=T0 - 1, dead_before=T0 - 1) == 0
    assert await store.shred_payloads(delivered_before=T0 + DAY, dead_before=T0 - 1) == 1
    assert await store.shred_payloads(delivered_before=T0 + DAY, dead_before=T0 + DAY) == 1
    assert await store.shred_payloads(delivered_before=T0 + DAY, dead_before=T0 + DAY) == 0
    payloads = {m.id: m.payload for m in await store.subject_messages(ANN)}
    assert payloads[1] == payloads[2] == SHREDDED_PAYLOAD
    assert payloads[3] == {"sealed": 1, "n": 3} and payloads[4] == {"sealed": 1, "n": 4}


async def test_tokens_are_kept_by_integration(store: Store) -> None:
    assert await store.load_token("x") is None
    await store.save_token("x", "sealed-1")
    await store.save_token("x", "sealed-2")
    await store.save_token("linkedin", "sealed-3")
    assert await store.load_token("x") == "sealed-2"
    assert await store.load_token("linkedin") == "sealed-3"


async def test_scrub_truncates_the_wal_and_erased_bytes_leave_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rb.db"
    canary = "canary-payload-7f3e"
    async with trio_asyncio.open_loop(), SqliteStore.open(path, clock=Wall()) as db:
        await db.submit([NewMessage("email", {"box": canary}, subjects=(ANN,))])
        await db.flush()
        await db.scrub()
        assert (tmp_path / "rb.db-wal").stat().st_size == 0
        assert canary.encode() in path.read_bytes()
        await db.erase_messages(ANN, at=T0, job=1)
        await db.scrub()
        raw = _raw_bytes(tmp_path, "rb.db")
        assert canary.encode() not in raw
        assert (tmp_path / "rb.db-wal").stat().st_size == 0


async def test_a_subjects_mail_events_are_read_by_its_id(store: Store) -> None:
    from ringbearer.deliverability import Channel, EventRecord, EventType, ProviderEvent

    await store.submit([about(ANN, n=1)])
    events = [
        ProviderEvent("resend", f"ev{n}", EventType.DELIVERED, T0 + n, Channel.EMAIL, address=who)
        for n, who in enumerate([ANN, BOB, ANN])
    ]
    matched = await store.match_events(events, soft_since=T0)
    await store.commit_events([EventRecord(m) for m in matched])
    kept = await store.subject_mail_events(ANN)
    assert [(e.source, e.event, e.at) for e in kept] == [
        ("resend", "delivered", T0), ("resend", "delivered", T0 + 2)
    ]  # fmt: skip
    assert len(await store.subject_mail_events(BOB)) == 1


def _raw_bytes(folder: Path, prefix: str) -> bytes:
    """The database file and its -wal and -shm, as bytes."""
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith(prefix))
