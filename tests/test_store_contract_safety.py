"""What comes from outside is made safe to store, on every store; the writer never dies of one op.

The contract part runs on every store (the fixture of tests/test_store_contract.py);
the writer's isolation of one failing op is tested on SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trio_asyncio

from ringbearer._errors import ErrorCode, RequestError, StoreError
from ringbearer.store import (
    Accepted,
    Attempt,
    Event,
    MemoryStore,
    NewMessage,
    Settle,
    SettleKind,
    SqliteStore,
    Store,
)
from ringbearer.store._pg._store import PostgresStore
from ringbearer.store._safe import PROVIDER_ID_MAX, REASON_MAX, safe_text

from .test_store_contract import STORES, T0, Wall, msg, settle, settled

LONE = "\ud800"  # valid JSON as "\ud800", not encodable as UTF-8


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The stores, as tests/test_store_contract.py makes them."""
    if request.param == "memory":
        yield MemoryStore(Wall())
        return
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        async with PostgresStore.open(url, clock=Wall(), node="node-a") as pg:
            yield pg
        return
    async with trio_asyncio.open_loop(), SqliteStore.open(tmp_path / "rb.db", clock=Wall()) as db:
        yield db


def test_safe_text_keeps_plain_text_and_escapes_what_a_store_cannot_hold() -> None:
    """Plain text, even non-ASCII, is untouched; surrogates and NUL become readable escapes."""
    assert safe_text("HTTP 422: adresse invalide …") == "HTTP 422: adresse invalide …"
    assert safe_text(f"bad {LONE} value") == "bad \\ud800 value"
    assert safe_text("a\x00b") == "a\\x00b"
    long = safe_text("x" * 10_000)
    assert len(long) == REASON_MAX
    escaped = safe_text(LONE * 10_000, 100)
    assert len(escaped) == 100 and escaped.endswith("…") and escaped[:-1].isascii()


async def test_a_providers_unstorable_id_and_error_are_kept_readable(store: Store) -> None:
    """A provider's lone surrogate, NUL or 10,000 characters are stored escaped and bounded."""
    await store.submit([msg(1), msg(2)])
    first, second = await store.claim("email", 2)
    attempt = Attempt("resend", T0, 0.01, "permanent", status=422, detail=f"bad {LONE}")
    await settled(
        store,
        settle(first, SettleKind.DELIVERED, provider_id=f"id-{LONE}\x00" + "9" * 1000),
        settle(
            second, SettleKind.DEAD_LETTERED, reason=f"bad {LONE}" + "!" * 5000, attempt=attempt
        ),
    )
    delivered = await store.message(first.id)
    assert delivered is not None and delivered.status == "delivered"
    assert delivered.provider_id is not None
    assert delivered.provider_id.startswith("id-\\ud800\\x00999")
    assert len(delivered.provider_id) == PROVIDER_ID_MAX
    letter = await store.dead_letter(second.id)
    assert letter is not None and letter.reason.startswith("bad \\ud800!!!")
    assert len(letter.reason) == REASON_MAX
    changed = [e for e in await store.events(message_id=second.id) if e.kind == "dead_lettered"]
    assert changed[0].detail is not None and changed[0].detail["reason"] == letter.reason


async def test_a_payload_holding_a_lone_surrogate_comes_back_unchanged(store: Store) -> None:
    """Valid JSON that is not valid UTF-8 is stored losslessly: the claim returns it unchanged."""
    payload: dict[str, Any] = {"text": f"a{LONE}b", "nested": [{"k": LONE}], "n": float("nan")}
    (accepted,) = await store.submit([NewMessage("email", payload)])
    (claimed,) = await store.claim("email", 1)
    assert claimed.id == accepted.id
    assert claimed.payload["text"] == payload["text"]
    assert claimed.payload["nested"] == payload["nested"]
    assert claimed.payload["n"] != claimed.payload["n"]  # NaN, as given


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (NewMessage("email", {}, idempotency_key=f"k-{LONE}"), "key"),
        (NewMessage("email", {}, idempotency_key="k\x00"), "key"),
        (NewMessage(f"email{LONE}", {}), "target"),
        (NewMessage("email", {}, deliver_by=2**70), "deliver_by"),
        (NewMessage("email", {}, deliver_by=float("nan")), "deliver_by"),
        (NewMessage("email", {}, deliver_by=float("inf")), "deliver_by"),
    ],
)
async def test_a_submit_the_store_cannot_hold_is_refused_naming_the_field(
    store: Store, message: NewMessage, field: str
) -> None:
    """The whole submit is refused: bad_args naming messages[i] and the field; nothing is kept."""
    with pytest.raises(RequestError) as refused:
        await store.submit([msg(1), message])
    assert refused.value.code is ErrorCode.BAD_ARGS
    assert refused.value.message.startswith(f"messages[1]: {field} ")
    assert await store.states([1, 2]) == {}
    (later,) = await store.submit([msg(3)])
    assert later.id == 1  # the refused submit took no ids; the store goes on


# -- the SQLite writer: one op's failure is that op's ----------------------------------------


@pytest.fixture
async def sqlite(tmp_path: Path) -> Any:
    async with (
        trio_asyncio.open_loop(),
        SqliteStore.open(tmp_path / "rb.db", clock=time.time) as db,
    ):
        yield db


async def _in_one_batch(db: SqliteStore, *starts: Any) -> None:
    """Run each ``start(nursery)`` while the writer is held, so their ops share one batch."""
    gate = asyncio.Event()  # a transaction runs on the asyncio side of the bridge

    async def hold(tx: object) -> None:
        await gate.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, hold)
        await trio.testing.wait_all_tasks_blocked()
        for start in starts:
            start(nursery)
            await trio.testing.wait_all_tasks_blocked()
        gate.set()


async def test_one_bad_op_fails_alone_and_the_rest_of_its_batch_commits(
    sqlite: SqliteStore,
) -> None:
    """A submit SQLite cannot bind is refused to its caller; the others of its batch commit."""
    db = sqlite
    (held,) = await db.submit([NewMessage("email", {"n": 0})])
    await db.claim("email", 1)
    results: dict[str, list[Accepted] | BaseException] = {}

    def submit(name: str, message: NewMessage) -> Any:
        async def go() -> None:
            try:
                results[name] = await db.submit([message])
            except StoreError as exc:
                results[name] = exc

        return lambda nursery: nursery.start_soon(go)

    def record(nursery: trio.Nursery) -> None:
        the_settle = settle_of(held.id, SettleKind.DELIVERED, provider_id=f"p-{LONE}")
        nursery.start_soon(db.record, [the_settle])

    def event(nursery: trio.Nursery) -> None:
        db.append_event(Event("paused", time.time(), integration="email", detail={"by": LONE}))

    commits = db.commits
    await _in_one_batch(
        db,
        submit("before", NewMessage("email", {"n": 1})),
        # A value dumps cannot encode gets past admission: only the store can refuse it.
        submit("bad", NewMessage("email", {"n": object()})),
        record,
        event,
        submit("after", NewMessage("email", {"n": 2})),
    )
    await db.flush()
    bad = results["bad"]
    assert isinstance(bad, StoreError) and "TypeError" in str(bad)
    assert isinstance(results["before"], list) and isinstance(results["after"], list)
    ids = [results["before"][0].id, results["after"][0].id]
    assert await db.states(ids) == dict.fromkeys(ids, "queued")
    record_ = await db.message(held.id)
    assert record_ is not None and record_.provider_id == "p-\\ud800"
    paused = [e for e in await db.events(kinds=["paused"])]
    assert paused[0].detail == {"by": LONE}  # escaped in the file, the same value read back
    assert db.commits > commits + 1  # split in halves to find the bad op
    assert db.last_error is not None and "TypeError" in db.last_error
    (later,) = await db.submit([NewMessage("email", {"n": 3})])  # the writer is alive
    assert later.id > max(ids)


async def test_a_settle_sqlite_refuses_is_retried_made_plain(sqlite: SqliteStore) -> None:
    """A settle with a time SQLite cannot hold is stored with that time made plain, not lost."""
    db = sqlite
    (accepted,) = await db.submit([NewMessage("email", {})])
    await db.claim("email", 1)
    nan = float("nan")  # bound as NULL by sqlite3: the NOT NULL column refuses it
    await db.record([settle_of(accepted.id, SettleKind.RETRIED, next_attempt_at=nan)])
    await db.flush()
    record = await db.message(accepted.id)
    assert record is not None and record.status == "queued"
    assert record.next_attempt_at == pytest.approx(time.time(), abs=60)


async def test_an_event_no_store_can_hold_is_dropped_alone(sqlite: SqliteStore) -> None:
    """A fire-and-forget event SQLite refuses is dropped; what shared its batch is written."""
    db = sqlite

    def events(nursery: trio.Nursery) -> None:
        db.append_event(Event("paused", time.time(), message_id=2**70, integration="a"))
        db.append_event(Event("resumed", time.time(), integration="b"))

    await _in_one_batch(db, events)
    await db.flush()
    assert [e.kind for e in await db.events()] == ["resumed"]
    assert db.last_error is not None and "OverflowError" in db.last_error


async def test_a_failure_of_the_disk_still_fails_the_whole_batch(sqlite: SqliteStore) -> None:
    """sqlite3.OperationalError (the store itself) is not split: every waiting caller hears it."""
    db = sqlite

    async def full(tx: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    errors: list[BaseException] = []

    def run(fn: Any) -> Any:
        async def go() -> None:
            try:
                await db.run(fn)
            except StoreError as exc:
                errors.append(exc)

        return lambda nursery: nursery.start_soon(go)

    async def fine(tx: object) -> None:
        return None

    commits = db.commits
    await _in_one_batch(db, run(full), run(fine))
    assert len(errors) == 2 and all("refuses writes" in str(e) for e in errors)
    assert db.commits == commits + 1  # the held transaction only: no split


def settle_of(message_id: int, kind: SettleKind, **kw: Any) -> Settle:
    base = Settle(
        message_id=message_id,
        target="email",
        kind=kind,
        integration="resend",
        attempts=1,
        next_attempt_at=time.time(),
    )
    return attrs.evolve(base, **kw)


async def test_json_sqlite_cannot_read_fails_only_its_op(sqlite: SqliteStore) -> None:
    """Progress holding NaN (malformed JSON to SQLite) is refused alone; its batch-mate commits."""
    db = sqlite
    (held,) = await db.submit([NewMessage("crm", {})])
    await db.claim("crm", 1)
    results: dict[str, Any] = {}

    def save(nursery: trio.Nursery) -> None:
        async def go() -> None:
            try:
                await db.save_progress(held.id, "tave", {"contact": float("nan")})
            except StoreError as exc:
                results["progress"] = exc

        nursery.start_soon(go)

    def submit(nursery: trio.Nursery) -> None:
        async def go() -> None:
            results["submit"] = await db.submit([NewMessage("crm", {"n": 1})])

        nursery.start_soon(go)

    await _in_one_batch(db, save, submit)
    assert "malformed JSON" in str(results["progress"])
    (accepted,) = results["submit"]
    assert await db.states([accepted.id]) == {accepted.id: "queued"}
