"""The suppression book: in memory for a cheap check, written through the store, reloaded."""

from __future__ import annotations

import trio

from ringbearer._delivery import Priority
from ringbearer.deliverability import (
    EventRecord,
    EventType,
    MatchedEvent,
    ProviderEvent,
    Reason,
    Suppression,
    SuppressionBook,
)
from ringbearer.deliverability._book import PAGE
from ringbearer.deliverability._rules import DAY, HOUR
from ringbearer.deliverability._settings import SuppressionRules
from ringbearer.store import MemoryStore

T0 = 1_700_000_000.0
RULES = SuppressionRules()
ANN = "ann@example.com"


def wall() -> float:
    return T0 + trio.current_time()


async def fresh() -> tuple[MemoryStore, SuppressionBook]:
    store = MemoryStore(wall)
    return store, await SuppressionBook.load(store, RULES, wall())


def manual(address: str, scope: str = "*", until: float | None = None) -> Suppression:
    return Suppression(address, scope, Reason.MANUAL, wall(), until, by="op", note="asked")


async def test_added_entries_block_at_once_and_are_kept(autojump_clock: object) -> None:
    """``add`` writes through the store (which gives the id) and blocks from when it returns."""
    store, book = await fresh()
    kept = await book.add(manual(ANN, "marketing"))
    assert kept.id is not None
    assert book.blocking(ANN, "marketing", Priority.NORMAL, wall()) == kept
    assert book.blocking(ANN, "transactional", Priority.NORMAL, wall()) is None
    assert await store.suppressions(address=ANN) == [kept]


async def test_addresses_are_matched_normalised(autojump_clock: object) -> None:
    """An entry added under one spelling blocks every case and padding of the address."""
    _, book = await fresh()
    await book.add(manual("  Ann@Example.COM"))
    assert book.blocking("ANN@example.com ", "marketing", Priority.NORMAL, wall()) is not None
    assert [s.address for s in book.entries("ann@EXAMPLE.com")] == [ANN]


async def test_a_renewal_replaces_its_entry(autojump_clock: object) -> None:
    """The same address, scope and reason again: one entry, the later one, with its id."""
    _, book = await fresh()
    first = await book.add(manual(ANN, "marketing"))
    await trio.sleep(10)
    second = await book.add(manual(ANN, "marketing"))
    assert book.entries(ANN) == [second]
    assert second.id == first.id and second.created_at == first.created_at + 10


async def test_remove_by_scope_or_all(autojump_clock: object) -> None:
    """Removed from the store and from memory: of one scope, then every one."""
    store, book = await fresh()
    await book.add(manual(ANN, "marketing"))
    await book.add(manual(ANN, "newsletter"))
    await book.add(manual(ANN, "*"))
    removed = await book.remove(ANN, scope="marketing", by="op", note="asked back")
    assert [s.scope for s in removed] == ["marketing"]
    assert sorted(s.scope for s in book.entries(ANN)) == ["*", "newsletter"]
    removed = await book.remove("ANN@example.com", scope=None, by="op")
    assert sorted(s.scope for s in removed) == ["*", "newsletter"]
    assert book.entries(ANN) == []
    assert len(book) == 0
    assert await store.suppressions(address=ANN) == []


async def test_load_reads_every_page_of_what_is_in_force(autojump_clock: object) -> None:
    """More than a page is read whole; what has ended is not loaded."""
    store = MemoryStore(wall)
    for n in range(PAGE + 5):
        await store.add_suppression(manual(f"user{n}@example.com"))
    await store.add_suppression(manual("gone@example.com", until=wall() + 60))
    await trio.sleep(61)
    book = await SuppressionBook.load(store, RULES, wall())
    assert len(book) == PAGE + 5
    assert book.blocking(f"user{PAGE + 4}@example.com", "x", Priority.NORMAL, wall()) is not None
    assert book.entries("gone@example.com") == []


async def test_applied_suppressions_block(autojump_clock: object) -> None:
    """The ingest's committed suppressions (no ids yet) are in force once applied."""
    _, book = await fresh()
    hard = Suppression(ANN, "*", Reason.HARD_BOUNCE, wall(), by="resend")
    book.applied([hard])
    assert book.blocking(ANN, "transactional", Priority.NORMAL, wall()) == hard


async def test_ended_holds_are_forgotten(autojump_clock: object) -> None:
    """A soft-bounce hold ends: it stops blocking, and memory lets the address go."""
    _, book = await fresh()
    hold = Suppression(ANN, "*", Reason.SOFT_BOUNCE, wall(), wall() + 3 * DAY, by="resend")
    book.applied([hold])
    assert len(book) == 1
    await trio.sleep(3 * DAY)
    assert book.blocking(ANN, "marketing", Priority.NORMAL, wall()) is None
    book.applied([Suppression("bob@example.com", "*", Reason.COMPLAINT, wall())])
    assert book.entries(ANN) == []
    assert len(book) == 1


async def test_critical_mail_tries_once_a_day_and_the_store_remembers(
    autojump_clock: object,
) -> None:
    """A critical try is noted at once in memory and durably; a restart keeps it."""
    store, book = await fresh()
    await book.add(Suppression(ANN, "*", Reason.HARD_BOUNCE, wall(), by="resend"))
    tried = book.critical_try(ANN, "transactional", Priority.CRITICAL, wall())
    assert tried is not None
    assert book.critical_try(ANN, "transactional", Priority.NORMAL, wall()) is None
    await book.note_try(tried, wall())
    assert book.blocking(ANN, "transactional", Priority.CRITICAL, wall()) is not None
    assert book.critical_try(ANN, "transactional", Priority.CRITICAL, wall()) is None
    (kept,) = await store.suppressions(address=ANN)
    assert kept.last_try_at == wall()
    reloaded = await SuppressionBook.load(store, RULES, wall())
    assert reloaded.blocking(ANN, "transactional", Priority.CRITICAL, wall()) is not None
    await trio.sleep(24 * HOUR)
    assert reloaded.blocking(ANN, "transactional", Priority.CRITICAL, wall()) is None


async def test_a_try_on_an_ingested_hard_bounce_finds_its_id(autojump_clock: object) -> None:
    """A suppression the ingest committed has no id in memory: the try looks it up."""
    store, book = await fresh()
    event = ProviderEvent("resend", "ev-1", EventType.HARD_BOUNCE, wall(), address=ANN)
    hard = Suppression(ANN, "*", Reason.HARD_BOUNCE, wall(), by="resend")
    assert await store.commit_events([EventRecord(MatchedEvent(event, None, False), (hard,))])
    book.applied([hard])
    tried = book.critical_try(ANN, "transactional", Priority.CRITICAL, wall())
    assert tried is not None and tried.id is None
    await book.note_try(tried, wall())
    (kept,) = await store.suppressions(address=ANN)
    assert kept.last_try_at == wall()
    (entry,) = book.entries(ANN)
    assert entry.id == kept.id and entry.last_try_at == wall()


async def test_a_try_on_a_removed_suppression_is_not_noted(autojump_clock: object) -> None:
    """Removed between the check and the note: it is not brought back."""
    _, book = await fresh()
    hard = await book.add(Suppression(ANN, "*", Reason.HARD_BOUNCE, wall(), by="resend"))
    await book.remove(ANN, scope=None, by="op")
    await book.note_try(hard, wall())
    assert book.entries(ANN) == []


async def test_a_rebuild_takes_up_what_another_node_added_and_removed(
    autojump_clock: object,
) -> None:
    """Two nodes' books over one store: what one adds or removes, the other's rebuild has."""
    store, here = await fresh()
    there = await SuppressionBook.load(store, RULES, wall())
    await there.add(manual(ANN, "marketing"))
    assert here.blocking(ANN, "marketing", Priority.NORMAL, wall()) is None
    assert await here.rebuild(wall()) == 1
    assert here.blocking(ANN, "marketing", Priority.NORMAL, wall()) is not None
    await there.remove(ANN, scope=None, by="op")
    assert await here.rebuild(wall()) == 0
    assert here.blocking(ANN, "marketing", Priority.NORMAL, wall()) is None


async def test_what_changes_here_while_a_rebuild_reads_is_kept(autojump_clock: object) -> None:
    """The rebuild read the store before this node's add and remove were kept: the new
    book has them all the same (the add blocks, the removed entry is gone)."""
    store, book = await fresh()
    ben = "ben@example.com"
    await book.add(manual(ben))
    reading, release = trio.Event(), trio.Event()
    read = store.suppressions

    async def slow(**kwargs: object) -> list[Suppression]:
        found = await read(**kwargs)  # type: ignore[arg-type]
        reading.set()
        await release.wait()
        return found

    store.suppressions = slow  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(book.rebuild, wall())
        await reading.wait()
        store.suppressions = read  # type: ignore[method-assign]
        await book.add(manual(ANN))
        await book.remove(ben, scope=None, by="op")
        book.applied([Suppression("cy@example.com", "*", Reason.HARD_BOUNCE, wall(), by="x")])
        release.set()
    assert book.blocking(ANN, "marketing", Priority.NORMAL, wall()) is not None
    assert book.blocking(ben, "marketing", Priority.NORMAL, wall()) is None
    assert book.blocking("cy@example.com", "transactional", Priority.NORMAL, wall()) is not None
    assert len(book) == 2
