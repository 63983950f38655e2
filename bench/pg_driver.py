"""Which PostgreSQL driver for the store: psycopg 3 (synchronous, each transaction in a trio
worker thread) against asyncpg (each transaction one asyncio coroutine through
trio-asyncio, as the SQLite store runs aiosqlite), on the store's three shapes of work:

    batch    group commit: transactions of --batch inserted rows (executemany), committed
    claim    UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 50) RETURNING
    small    one UPDATE ... RETURNING and its commit, one after another (a settle's floor)

Against a throwaway cluster (``tests/pgcluster.py``) with fsync on. Prints rows/s and
transactions/s for each driver; it does not pass or fail.

    python bench/pg_driver.py [--rounds 3] [--batch 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.pgcluster import cluster

SCHEMA = """
DROP TABLE IF EXISTS m;
CREATE TABLE m (id BIGSERIAL PRIMARY KEY, status TEXT NOT NULL, payload TEXT NOT NULL,
                attempts INT NOT NULL DEFAULT 0);
CREATE INDEX m_queued ON m (id) WHERE status = 'queued';
"""
CLAIM = (
    "UPDATE m SET status = 'inflight' WHERE id IN (SELECT id FROM m WHERE status = 'queued'"
    " ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED) RETURNING id"
)
SMALL = "UPDATE m SET attempts = attempts + 1 WHERE id = {} RETURNING attempts"
PAYLOAD = '{"to": "guest@example.com", "subject": "Timeline", "text": "' + "x" * 200 + '"}'


class Psycopg:
    name = "psycopg 3 in a thread"

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)

    async def tx(self, work: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with self.conn.transaction():
                return work(self.conn)

        return await trio.to_thread.run_sync(run)

    async def batch(self, rows: int) -> None:
        sql = "INSERT INTO m (status, payload) VALUES ('queued', %s)"
        await self.tx(lambda c: c.cursor().executemany(sql, [(PAYLOAD,)] * rows))

    async def claim(self) -> int:
        return int(await self.tx(lambda c: len(c.execute(CLAIM).fetchall())))

    async def small(self, i: int) -> None:
        await self.tx(lambda c: c.execute(SMALL.format(i)).fetchone())

    async def close(self) -> None:
        self.conn.close()


class Asyncpg:
    name = "asyncpg via trio-asyncio"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str) -> Asyncpg:
        import asyncpg  # type: ignore[import-untyped]

        return cls(await trio_asyncio.aio_as_trio(asyncpg.connect)(url))

    async def tx(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            async with self.conn.transaction():
                return await work(self.conn)

        return await trio_asyncio.aio_as_trio(run)()

    async def batch(self, rows: int) -> None:
        sql = "INSERT INTO m (status, payload) VALUES ('queued', $1)"
        await self.tx(lambda c: c.executemany(sql, [(PAYLOAD,)] * rows))

    async def claim(self) -> int:
        return len(await self.tx(lambda c: c.fetch(CLAIM)))

    async def small(self, i: int) -> None:
        await self.tx(lambda c: c.fetchrow(SMALL.format(i)))

    async def close(self) -> None:
        await trio_asyncio.aio_as_trio(self.conn.close)()


async def measure(driver: Any, batches: int, batch: int, smalls: int) -> dict[str, float]:
    began = time.perf_counter()
    for _ in range(batches):
        await driver.batch(batch)
    inserted = batches * batch / (time.perf_counter() - began)
    began, claimed = time.perf_counter(), 0
    while got := await driver.claim():
        claimed += got
    claims = claimed / (time.perf_counter() - began)
    began = time.perf_counter()
    for i in range(1, smalls + 1):
        await driver.small(i)
    small = smalls / (time.perf_counter() - began)
    return {"rows inserted/s": inserted, "rows claimed/s": claims, "small tx/s": small}


async def main(rounds: int, batch: int) -> None:
    import psycopg

    with cluster() as url:
        results: dict[str, list[dict[str, float]]] = {}
        async with trio_asyncio.open_loop():
            for _ in range(rounds):
                for make in (lambda: _sync(Psycopg, url), lambda: Asyncpg.open(url)):
                    with psycopg.connect(url, autocommit=True) as c:
                        c.execute(SCHEMA)
                    driver = await make()
                    results.setdefault(driver.name, []).append(
                        await measure(driver, 40, batch, 2000)
                    )
                    await driver.close()
    for name, runs in results.items():
        line = ", ".join(f"{key} {statistics.median(r[key] for r in runs):,.0f}" for key in runs[0])
        print(f"{name:<26} {line}  (median of {len(runs)})")


async def _sync(cls: Any, url: str) -> Any:
    return cls(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    trio.run(main, args.rounds, args.batch)
