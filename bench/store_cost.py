"""The store's cost per message, and the trio-asyncio bridge's, against plain sqlite3.

For each ``synchronous`` mode and batch size (1 and 100 messages a call),
16 concurrent trio tasks:

* store: ``SqliteStore.submit`` all N messages, then ``claim`` + ``record``
  (delivered) them all; the store commits what arrives together in one
  transaction (group commit);
* plain: the same schema and SQL (the INSERT of the same rows; the claim
  UPDATE and the delivered UPDATE) with ``sqlite3`` on a worker thread via
  ``trio.to_thread.run_sync``, one transaction per call, calls serialized
  (one writer), no group commit.

Then the bare bridge: one trivial call, µs each.

    python bench/store_cost.py [--messages 20000] [--calls 5000]

It prints a table; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import trio
import trio_asyncio

from ringbearer._delivery import Priority
from ringbearer.store import SqliteStore
from ringbearer.store._model import Attempt, NewMessage, Settle, SettleKind
from ringbearer.store._schema import MIGRATIONS, statements
from ringbearer.store._sqlite._db import dumps
from ringbearer.store._sqlite._rows import SETTLE, settle_row

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import BODY

TASKS = 16
TARGET = "resend"


def delivered(message_id: int, created_at: float, now: float) -> Settle:
    return Settle(
        message_id=message_id,
        target=TARGET,
        kind=SettleKind.DELIVERED,
        integration=TARGET,
        attempts=1,
        next_attempt_at=now,
        provider_id=f"re_{message_id}",
        attempt=Attempt(TARGET, now, 0.01, "delivered", status=200),
        created_at=created_at,
    )


async def spread(total: int, batch: int, fn: Callable[[int, int], Any]) -> float:
    """Run ``fn(first, count)`` over [0, total) in chunks of ``batch`` from 16 tasks; seconds."""
    chunks = [(i, min(batch, total - i)) for i in range(0, total, batch)]

    async def worker(k: int) -> None:
        for first, count in chunks[k::TASKS]:
            await fn(first, count)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(TASKS):
            nursery.start_soon(worker, k)
    return time.perf_counter() - start


async def store_run(
    path: Path, total: int, batch: int, sync: str
) -> tuple[float, float, tuple[float, float]]:
    """Seconds to submit all, to claim + record all; messages per commit in each."""
    async with SqliteStore.open(path, clock=time.time, synchronous=sync, batch_max=1024) as store:

        async def submit(first: int, count: int) -> None:
            await store.submit(
                [
                    NewMessage(TARGET, BODY, Priority.NORMAL, f"bench-{i}")
                    for i in range(first, first + count)
                ]
            )

        submit_s = await spread(total, batch, submit)
        submit_commits = store.commits

        async def deliver(first: int, count: int) -> None:
            claimed = await store.claim(TARGET, count)
            now = time.time()
            await store.record([delivered(c.id, c.created_at, now) for c in claimed])

        deliver_s = await spread(total, batch, deliver)
        await store.flush()
        (left,) = (await store.query("SELECT COUNT(*) FROM messages WHERE status != 'delivered'"))[
            0
        ]
        assert left == 0, left
    per_commit = (total / submit_commits, total / (store.commits - submit_commits))
    return submit_s, deliver_s, per_commit


_INSERT = (
    "INSERT INTO messages (id, target, priority, payload, idempotency_key, status,"
    " next_attempt_at, created_at, updated_at, deliver_by) VALUES (?,?,?,?,?,'queued',?,?,?,?)"
)
_CLAIM = (
    "UPDATE messages SET status = 'inflight', updated_at = ? WHERE id IN ("
    " SELECT id FROM messages WHERE status = 'queued' AND target = ?"
    " AND priority BETWEEN ? AND ? AND next_attempt_at <= ?"
    " ORDER BY priority, next_attempt_at, id LIMIT ?) RETURNING id, created_at"
)


def plain_connect(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA foreign_keys = ON")
    for number, script in enumerate(MIGRATIONS, 1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    return conn


async def plain_run(path: Path, total: int, batch: int, sync: str) -> tuple[float, float]:
    conn = plain_connect(path, sync)
    lock = trio.Lock()

    def transaction(work: Callable[[], object]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        work()
        conn.execute("COMMIT")

    async def submit(first: int, count: int) -> None:
        now = time.time()
        rows = [
            (i + 1, TARGET, int(Priority.NORMAL), dumps(BODY), f"bench-{i}", now, now, now, None)
            for i in range(first, first + count)
        ]
        async with lock:
            await trio.to_thread.run_sync(transaction, lambda: conn.executemany(_INSERT, rows))

    async def deliver(first: int, count: int) -> None:
        def work() -> None:
            now = time.time()
            claimed = conn.execute(_CLAIM, (now, TARGET, 0, 9, now, count)).fetchall()
            conn.executemany(SETTLE, [settle_row(delivered(i, c, now), now) for i, c in claimed])

        async with lock:
            await trio.to_thread.run_sync(transaction, work)

    submit_s = await spread(total, batch, submit)
    deliver_s = await spread(total, batch, deliver)
    (left,) = conn.execute("SELECT COUNT(*) FROM messages WHERE status != 'delivered'").fetchone()
    assert left == 0, left
    conn.close()
    return submit_s, deliver_s


async def bridge(path: Path, calls: int) -> dict[str, float]:
    """µs per trivial call through each route, one call at a time."""
    aconn = await trio_asyncio.aio_as_trio(aiosqlite.connect)(str(path), isolation_level=None)
    conn = sqlite3.connect(path, check_same_thread=False)
    select = trio_asyncio.aio_as_trio(aconn.execute_fetchall)
    routes: dict[str, Callable[[], Any]] = {
        "aio_as_trio(aiosqlite SELECT 1)": lambda: select("SELECT 1"),
        "to_thread.run_sync(lambda: None)": lambda: trio.to_thread.run_sync(lambda: None),
        "to_thread.run_sync(sqlite3 SELECT 1)": lambda: trio.to_thread.run_sync(
            lambda: conn.execute("SELECT 1").fetchall()
        ),
    }
    result = {}
    for name, call in routes.items():
        for _ in range(calls // 10):  # warm up
            await call()
        start = time.perf_counter()
        for _ in range(calls):
            await call()
        result[name] = 1e6 * (time.perf_counter() - start) / calls
    await trio_asyncio.aio_as_trio(aconn.close)()
    conn.close()
    return result


async def main(args: argparse.Namespace) -> None:
    n = args.messages
    print(
        f"messages={n} tasks={TASKS} cores={os.cpu_count()} python={sys.version.split()[0]} "
        f"sqlite={sqlite3.sqlite_version}"
    )
    header = f"{'sync':<7}{'batch':>6}  {'phase':<16}{'store/s':>9}{'µs/msg':>8}"
    print(header + f"{'plain/s':>9}{'µs/msg':>8}{'store/plain':>12}{'msgs/commit':>13}")
    with tempfile.TemporaryDirectory(prefix="rb-store-cost-") as tmp:
        for sync in ("full", "normal"):
            for batch in (1, 100):
                base = Path(tmp) / f"{sync}-{batch}"
                store = await store_run(base.with_suffix(".store.db"), n, batch, sync)
                plain = await plain_run(base.with_suffix(".plain.db"), n, batch, sync)
                for phase, s, p, per_commit in (
                    ("submit", store[0], plain[0], store[2][0]),
                    ("claim+delivered", store[1], plain[1], store[2][1]),
                ):
                    print(
                        f"{sync:<7}{batch:>6}  {phase:<16}{n / s:>9.0f}{1e6 * s / n:>8.1f}"
                        f"{n / p:>9.0f}{1e6 * p / n:>8.1f}{p / s:>12.2f}"
                        f"{per_commit:>13.1f}"
                    )
        print()
        print(f"bridge, one call at a time, {args.calls} calls:")
        costs = await bridge(Path(tmp) / "bridge.db", args.calls)
        floor = costs["to_thread.run_sync(lambda: None)"]
        for name, us in costs.items():
            print(f"  {name:<38}{us:>8.1f} µs   x{us / floor:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=5_000)
    trio_asyncio.run(main, parser.parse_args())
