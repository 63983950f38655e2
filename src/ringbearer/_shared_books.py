"""The books a node keeps in memory of tables the nodes share, taken up anew when
another node changed them: the suppressions, the consents, the erased subjects.

Submit and the gate check every message against these books, so each answer costs a
look-up, not a query; each node loads them at its start and keeps them in step with its
own changes. On a shared store the others' changes reach it here: at each beat it reads
the tables' versions (``shared_versions``, moved with every write by a trigger, seen
when the write is) and rebuilds the book of each table whose version moved since it
last did. A book's rebuild keeps what changed in it meanwhile (see each book). Its own
writes move the versions too, so a node rebuilds after them as well: the price of one
short read per beat when nothing changed.

A rebuild reads the whole table (``bench/book_rebuild.py``: about 1.3 s for 100,000
suppressions), so a book is rebuilt at most once in ``SPACING`` times its last
rebuild's length: a book that changes at every beat (a storm of bounces) costs a node
at most a tenth of its time, and a small book is still rebuilt at every beat.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs
import trio

from ._logging import fields

log = logging.getLogger("ringbearer.nodes")
SPACING = 10.0  # a rebuild waits ten times the last one's length after it


@attrs.define(eq=False)
class SharedBooks:
    versions: Callable[[], Awaitable[dict[str, int]]]
    rebuilds: Mapping[str, Callable[[], Awaitable[object]]]  # by table
    _seen: dict[str, int] = attrs.Factory(dict)  # the version each book was last rebuilt at
    _not_before: dict[str, float] = attrs.Factory(dict)  # trio time: spaced rebuilds

    async def follow(self) -> list[str]:
        """Rebuild each book whose table changed (all of them the first time), unless its
        last rebuild was too recent (the next beat looks again); which were rebuilt."""
        versions = await self.versions()
        rebuilt = []
        for name, rebuild in self.rebuilds.items():
            version = versions.get(name)
            if version is None or version == self._seen.get(name):
                continue
            began = trio.current_time()
            if began < self._not_before.get(name, began):
                continue
            size = await rebuild()
            took = trio.current_time() - began
            self._seen[name], self._not_before[name] = version, began + SPACING * took
            rebuilt.append(name)
            log.info(
                "book rebuilt from the store",
                extra=fields(table=name, size=size, seconds=round(took, 3)),
            )
        return rebuilt
