"""What a node pays to take up another node's change to a shared book: one rebuild of the
suppression book and of the consent book, read from PostgreSQL, at a given size.

On a shared store each node rebuilds a book whenever its table's version moved
(``_shared_books``), so this is the cost of one beat after a change. The tables are
filled straight in SQL (``--rows`` of each), then each book is read ``--runs`` times.

    python bench/book_rebuild.py [--rows 100000] [--runs 3]

It prints the time of each rebuild; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.pgcluster import cluster

from ringbearer.deliverability import SuppressionBook
from ringbearer.deliverability._settings import SuppressionRules
from ringbearer.privacy._books import ConsentBook
from ringbearer.store._pg._db import PgTx
from ringbearer.store._pg._store import PostgresStore

T0 = 1_750_000_000.0


def fill(rows: int) -> object:
    def insert(tx: PgTx) -> None:
        tx.executemany(
            "INSERT INTO suppressions (address, scope, reason, created_at, until, by, note)"
            " VALUES (%s, '*', 'manual', %s, NULL, 'bench', '')",
            ((f"s_{n:032x}", T0) for n in range(rows)),
        )
        tx.executemany(
            "INSERT INTO consents (subject, purpose, granted, source, at, by)"
            " VALUES (%s, 'marketing', 1, 'form', %s, 'bench')",
            ((f"s_{n:032x}", T0) for n in range(rows)),
        )

    return insert


async def measure(url: str, rows: int, runs: int) -> None:
    async with PostgresStore.open(url, clock=time.time, node="bench") as store:
        await store.run(fill(rows))  # type: ignore[arg-type]
        book = await SuppressionBook.load(store, SuppressionRules(), time.time())
        consent = ConsentBook.of(await store.consents())
        rebuilds: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            ("suppressions", lambda: book.rebuild(time.time())),
            ("consents", lambda: consent.rebuild(store.consents)),
        ]
        for name, rebuild in rebuilds:
            times = []
            for _ in range(runs):
                began = time.perf_counter()
                size = await rebuild()
                times.append(time.perf_counter() - began)
            print(f"{name:>13}: {size:>8,} in the book, rebuild median "
                  f"{statistics.median(times) * 1000:,.0f} ms (runs: "
                  + ", ".join(f"{t * 1000:,.0f}" for t in times) + ")")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with cluster() as url:
        trio.run(measure, url, args.rows, args.runs)


if __name__ == "__main__":
    main()
