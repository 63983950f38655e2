"""The books a node keeps of tables the nodes share: rebuilt when another node changed
their table (its version moved), and a consent noted here while the rebuild read kept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio

from ringbearer._shared_books import SharedBooks
from ringbearer.privacy._books import ConsentBook
from ringbearer.store import ConsentRecord, MemoryStore

T0 = 1_750_000_000.0


@attrs.define
class Tables:
    versions: dict[str, int] = attrs.Factory(lambda: {"suppressions": 3, "consents": 7})
    rebuilt: list[str] = attrs.Factory(list)

    async def read(self) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        return dict(self.versions)

    def rebuild(self, name: str) -> Callable[[], Awaitable[int]]:
        async def rebuild() -> int:
            self.rebuilt.append(name)
            return 0

        return rebuild


async def test_each_book_is_rebuilt_once_its_version_moves() -> None:
    tables = Tables()
    books = SharedBooks(tables.read, {n: tables.rebuild(n) for n in ("suppressions", "consents")})
    assert await books.follow() == ["suppressions", "consents"]  # the first beat: all
    assert await books.follow() == []  # nothing moved
    tables.versions["consents"] += 1
    assert await books.follow() == ["consents"]
    assert tables.rebuilt == ["suppressions", "consents", "consents"]


async def test_a_failed_rebuild_is_tried_again_at_the_next_beat() -> None:
    tables, calls = Tables(), []

    async def failing() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the store went away")
        return 0

    books = SharedBooks(tables.read, {"suppressions": failing})
    with pytest.raises(OSError):
        await books.follow()
    assert await books.follow() == ["suppressions"] and len(calls) == 2


def consent(subject: str, granted: bool, at: float) -> ConsentRecord:
    return ConsentRecord(subject, "marketing", granted, "form", at, "op")


async def test_a_consent_rebuild_takes_up_the_others_and_keeps_what_was_noted_meanwhile() -> None:
    store = MemoryStore(lambda: T0)
    book = ConsentBook.of(await store.consents())
    await store.add_consent(consent("s_ann", True, T0))  # by another node
    reading, release = trio.Event(), trio.Event()

    async def slow() -> list[ConsentRecord]:
        found = await store.consents()
        reading.set()
        await release.wait()
        return found

    async with trio.open_nursery() as nursery:
        nursery.start_soon(book.rebuild, slow)
        await reading.wait()
        book.note(await store.add_consent(consent("s_ben", True, T0 + 1)))  # here, meanwhile
        book.note(await store.add_consent(consent("s_ann", False, T0 + 2)))  # withdrawn here
        release.set()
    assert book.granted("s_ben", "marketing")
    assert not book.granted("s_ann", "marketing")  # the later withdrawal, not the read
    assert await book.rebuild(store.consents) == 2
    assert not book.granted("s_ann", "marketing") and book.granted("s_ben", "marketing")


async def test_a_long_rebuild_spaces_the_next_one(autojump_clock: object) -> None:
    """A rebuild that took 1 s waits 10 s before the next: the change is not lost, only
    taken up at a later beat."""
    tables, calls = Tables(), []

    async def slow() -> int:
        calls.append(trio.current_time())
        await trio.sleep(1)
        return 0

    books = SharedBooks(tables.read, {"suppressions": slow})
    assert await books.follow() == ["suppressions"]
    tables.versions["suppressions"] += 1
    assert await books.follow() == []  # too soon after a 1 s rebuild
    await trio.sleep(5)
    assert await books.follow() == []
    await trio.sleep(5)
    assert await books.follow() == ["suppressions"] and calls[1] - calls[0] >= 10
